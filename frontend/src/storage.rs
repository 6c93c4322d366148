//! localStorage, as JSON values under fixed keys. Every failure (no storage, quota, bad JSON) reads as
//! "nothing stored": persistence is best effort and never breaks the chat.

use serde::{Serialize, de::DeserializeOwned};

/// Where a guest's [`crate::store::Store`] is saved (a signed-in user's key adds the name, see
/// [`crate::auth::Identity::store_key`]).
pub const STORE_KEY: &str = "chat.store.v1";
/// Where a guest's reconnect token from the server is saved.
pub const TOKEN_KEY: &str = "chat.token";

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The value stored under `key`, if any and if it parses.
pub fn load<T: DeserializeOwned>(key: &str) -> Option<T> {
    let text = local_storage()?.get_item(key).ok()??;
    serde_json::from_str(&text).ok()
}

/// Stores `value` under `key`.
pub fn save<T: Serialize + ?Sized>(key: &str, value: &T) {
    if let (Some(storage), Ok(text)) = (local_storage(), serde_json::to_string(value)) {
        // A full or disabled storage only loses persistence.
        let _ = storage.set_item(key, &text);
    }
}

/// Forgets `key`.
pub fn remove(key: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(key);
    }
}
