//! localStorage, as JSON values under fixed keys (and a guest's token as plain text). Persistence is best effort and never breaks the chat: no
//! storage or a full one reads as "nothing stored" and loses only persistence. A stored value that cannot
//! be read (e.g. saved by an incompatible version) also reads as "nothing stored", but is first copied,
//! once, to `KEY.unreadable` and reported on the console, so that saving over it loses nothing.

use serde::{Serialize, de::DeserializeOwned};

/// Where a guest's [`crate::store::Store`] is saved (a signed-in user's key adds the name, see
/// [`crate::auth::Identity::store_key`]).
pub const STORE_KEY: &str = "chat.store.v1";
/// Where a guest's reconnect token from the server is saved.
pub const TOKEN_KEY: &str = "chat.token";

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The value stored under `key`, if any and if it parses (see the module docs for one that does not).
pub fn load<T: DeserializeOwned>(key: &str) -> Option<T> {
    let storage = local_storage()?;
    let text = storage.get_item(key).ok()??;
    match crate::json::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            let backup = format!("{key}.unreadable");
            if storage.get_item(&backup).ok().flatten().is_none() {
                let _ = storage.set_item(&backup, &text);
            }
            // Display, not Debug: Debug's string escaping would add its code to the wasm.
            web_sys::console::warn_1(
                &format!(
                    "localStorage \"{key}\" could not be read ({e}); a copy is kept as \"{backup}\""
                )
                .into(),
            );
            None
        }
    }
}

/// The text stored under `key` (a guest's token). Earlier builds stored it as a JSON string: its
/// quotes are dropped (a token never contains one).
pub fn load_text(key: &str) -> Option<String> {
    let text = local_storage()?.get_item(key).ok()??;
    Some(text.trim_matches('"').to_owned())
}

/// Stores `text` under `key` as it is.
pub fn save_text(key: &str, text: &str) {
    if let Some(storage) = local_storage() {
        // A full or disabled storage only loses persistence.
        let _ = storage.set_item(key, text);
    }
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
