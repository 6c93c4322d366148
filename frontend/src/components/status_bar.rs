//! The header: connection state, current user, the account buttons, the offline banner, the offer to
//! reload after a deploy, and any notice from the server.

use crate::connection::ConnState;
use leptos::prelude::*;

/// Shows the connection state (`data-testid="connection-status"`), who we are (`current-user`), then
/// `children` (the sign-in or sign-out button).
#[component]
pub fn StatusBar(children: Children) -> impl IntoView {
    let connection = super::connection();
    let state = connection.state();
    let dismiss = Callback::new(move |()| connection.dismiss_notice());
    let class = move || match state.status.get() {
        ConnState::Open => "status status-open",
        ConnState::Connecting | ConnState::Reconnecting { .. } => "status status-waiting",
        ConnState::Closed | ConnState::Unauthorized => "status status-closed",
    };
    view! {
        <header class="status-bar">
            <h1>"Chat"</h1>
            <span class=class data-testid="connection-status" role="status">
                {move || state.status.get().to_string()}
            </span>
            <span class="user" data-testid="current-user">
                {move || state.user.get().map_or_else(String::new, |u| u.to_string())}
            </span>
            {children()}
        </header>
        // After a deploy, the offer to reload (this page's code is older than the server's app); while
        // the connection is being re-established, what happens to what the user types.
        {move || {
            let (id, text, reload) = if state.outdated.get() {
                ("update-banner", "A new version of the chat is available.", true)
            } else if matches!(state.status.get(), ConnState::Reconnecting { .. }) {
                (
                    "offline-banner",
                    "You are offline. What you write is kept on this device and sent when the connection is back.",
                    false,
                )
            } else {
                return None;
            };
            Some(
                view! {
                    <p class="offline" data-testid=id role="status">
                        {text}
                        {reload
                            .then(|| {
                                view! {
                                    <button on:click=|_| {
                                        if let Some(w) = web_sys::window() {
                                            let _ = w.location().reload();
                                        }
                                    }>"Reload"</button>
                                }
                            })}
                    </p>
                },
            )
        }}
        {move || {
            state
                .notice
                .get()
                .map(|text| {
                    view! {
                        <p class="notice" data-testid="notice">
                            {text}
                            <button class="dismiss" on:click=move |_| dismiss.run(())>
                                "×"
                            </button>
                        </p>
                    }
                })
        }}
    }
}
