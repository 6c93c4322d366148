//! The room's activity, one quiet line between its messages and the composer: who is typing
//! (`typing-indicator`) and who is in the room (`presence-list`, a `presence-user` per name).

use leptos::prelude::*;
use shared::RoomId;

/// "ann is typing…" (or nothing), announced politely to screen readers; then "3 here: ann, bob, cat"
/// (a crowd: its count, and the names the server lists).
#[component]
pub fn Activity(room: RoomId) -> impl IntoView {
    let here = super::connection().state().here;
    let line = {
        let room = room.clone();
        move || here.with(|h| h.typing_line(&room))
    };
    let present = move || here.with(|h| h.presence_html(&room));
    view! {
        <div class="activity">
            <p class="typing" data-testid="typing-indicator" aria-live="polite">
                {line}
            </p>
            <p class="presence" data-testid="presence-list" inner_html=present></p>
        </div>
    }
}
