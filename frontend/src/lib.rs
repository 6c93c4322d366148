//! The browser client of the chat: a Leptos (client-side rendered) page over one WebSocket.
//!
//! Module map, following one message from the input box to the socket:
//!
//! - [`components`]: the view. [`components::Composer`] turns the typed text into a
//!   [`Connection::send`] call; [`components::MessageList`] and [`components::StatusBar`] only read signals.
//! - [`connection`]: the only code that touches the WebSocket. [`Connection::send`] puts the message in the
//!   outbox and hands it to the connection task, which writes it to the socket when open, resends it after
//!   every reconnect, and marks it sent when the server's `ack` arrives.
//! - [`store`]: pure per-room state (ordered, deduplicated log; outbox), unit-tested natively.
//! - [`storage`]: localStorage as JSON.
//!
//! Wire types all come from the `shared` crate.

pub mod components;
pub mod connection;
pub mod storage;
pub mod store;

use components::{Composer, MessageList, StatusBar};
use connection::{ChatState, Connection, ConnectionConfig};
use leptos::prelude::*;
use shared::RoomId;

/// The whole page: loads the saved store, starts the connection, and keeps the store saved.
#[component]
pub fn App() -> impl IntoView {
    let state = ChatState::new(storage::load(storage::STORE_KEY).unwrap_or_default());
    let connection = Connection::start(ConnectionConfig::for_page(), state);
    provide_context(connection);
    // Syncs the store to localStorage after every change (the outside world, hence an Effect).
    Effect::new(move || state.store.with(|s| storage::save(storage::STORE_KEY, s)));
    view! {
        <div class="app">
            <StatusBar />
            <main class="room">
                <MessageList room=RoomId::lobby() />
                <Composer room=RoomId::lobby() />
            </main>
        </div>
    }
}
