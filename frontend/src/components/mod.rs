//! The view. [`ChatView`] starts a [`crate::connection::Connection`] and provides it through the Leptos
//! context to the components inside it, which read [`crate::connection::ChatState`] and send through the
//! connection; [`SignIn`] is the form shown without a session. [`crate::App`] chooses between them.

pub mod activity;
pub mod chat;
pub mod composer;
pub mod message_list;
pub mod rooms;
pub mod sign_in;
pub mod status_bar;

pub use activity::Activity;
pub use chat::ChatView;
pub use composer::Composer;
pub use message_list::MessageList;
pub use rooms::RoomList;
pub use sign_in::SignIn;
pub use status_bar::StatusBar;

use crate::connection::Connection;

/// The [`Connection`] that [`ChatView`] provides to the components inside it. Leptos's `expect_context`
/// would do the same, but its panic message formats the type's name with `Debug`, which links string
/// escaping into the wasm (about 0.3 KB of a first visit).
fn connection() -> Connection {
    leptos::prelude::use_context().expect("ChatView provides the connection")
}
