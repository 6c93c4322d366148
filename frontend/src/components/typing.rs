//! Who is typing in the room, under its messages (`data-testid="typing-indicator"`).

use crate::connection::Connection;
use leptos::prelude::*;
use shared::RoomId;

/// "ann is typing…", "ann and bob are typing…", or nothing; announced politely to screen readers.
#[component]
pub fn Typing(room: RoomId) -> impl IntoView {
    let here = expect_context::<Connection>().state().here;
    let line = move || here.with(|h| h.typing_line(&room));
    view! {
        <p class="typing" data-testid="typing-indicator" aria-live="polite">
            {line}
        </p>
    }
}
