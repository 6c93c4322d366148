//! The view: three components that read [`crate::connection::ChatState`] and send through
//! [`crate::connection::Connection`], both taken from the Leptos context set up by [`crate::App`].

pub mod composer;
pub mod message_list;
pub mod status_bar;

pub use composer::Composer;
pub use message_list::MessageList;
pub use status_bar::StatusBar;
