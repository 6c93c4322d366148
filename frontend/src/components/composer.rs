//! The input box and Send button.

use leptos::prelude::*;
use shared::{ChatText, ClientMessage, RoomId};

/// Sends what is typed to `room`: Enter sends, Shift+Enter starts a new line. While the user types, the
/// room is told so every few seconds ([`shared::TYPING_EVERY_MS`]).
///
/// Send (button or Enter) is enabled whenever the text is not blank, connected or not: a message typed
/// while the server is down goes into the outbox, shows as pending, and is sent after the reconnect. (One
/// issue asked for Send disabled while disconnected, a later one for pending messages while the server is
/// down; the later one wins, and the offline banner says what happens to what is typed.)
#[component]
pub fn Composer(room: RoomId) -> impl IntoView {
    let connection = super::connection();
    let text = RwSignal::new(String::new());
    let valid = move || text.with(|t| ChatText::new(t.as_str()).ok());
    // When the room was last told that we are typing (`Date.now()` milliseconds).
    let told = StoredValue::new(f64::MIN);
    let on_input = {
        let (connection, room) = (connection.clone(), room.clone());
        move |ev: leptos::ev::Event| {
            text.set(event_target_value(&ev));
            let now = js_sys::Date::now();
            if now - told.get_value() >= f64::from(shared::TYPING_EVERY_MS) && valid().is_some() {
                told.set_value(now);
                connection.frame(ClientMessage::Typing { room: room.clone() });
            }
        }
    };
    let submit = move || {
        if let Some(message) = valid() {
            connection.send(room.clone(), message);
            text.set(String::new());
        }
    };
    let on_submit = {
        let submit = submit.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            submit();
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        // Not while an input method is composing (Enter then picks a candidate).
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            submit();
        }
    };
    view! {
        <form class="composer" on:submit=on_submit>
            <textarea
                data-testid="message-input"
                placeholder="Write a message…"
                aria-label="Message (Enter sends, Shift+Enter for a new line)"
                rows="1"
                // UTF-16 units, so at most 12 000 bytes of UTF-8: a frame under the server's limit.
                // `Connection::send` checks the frame itself anyway.
                maxlength="4000"
                prop:value=move || text.get()
                on:input=on_input
                on:keydown=on_keydown
            ></textarea>
            <button type="submit" data-testid="send-button" disabled=move || valid().is_none()>
                "Send"
            </button>
        </form>
    }
}
