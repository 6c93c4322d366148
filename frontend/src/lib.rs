//! The browser client of the chat: a Leptos (client-side rendered) page over one WebSocket, behind a
//! sign-in screen.
//!
//! Module map, following the page from its start to one message on the socket:
//!
//! - [`App`] asks [`api::session`] who is signed in and picks the [`auth::Screen`]: the
//!   [`components::SignIn`] form, or the [`components::ChatView`] as an account or a guest. It alone
//!   changes screens, also when the chat shown reports that its session is gone.
//! - [`components`]: the view. [`components::Composer`] turns the typed text into a
//!   [`connection::Connection::send`] call; [`components::MessageList`] reads signals and asks for older
//!   pages; [`components::StatusBar`] only reads signals.
//! - [`connection`]: the only code that touches the WebSocket. [`connection::Connection::send`] puts the
//!   message in the outbox and hands it to the connection task, which writes it to the socket when open,
//!   resends it after every reconnect, and marks it sent when the server's `ack` arrives.
//! - [`auth`]: who we are and the decisions about sessions (pure, unit-tested natively); [`api`]: the
//!   `/api` HTTP calls.
//! - [`store`]: pure per-room state (ordered, deduplicated log; outbox; the room list and read marks),
//!   saved to localStorage, unit-tested natively; [`here`]: who is in each room and who is typing
//!   (ephemeral, never saved).
//! - [`storage`]: localStorage as JSON; [`json`]: reading JSON through the browser's parser.
//! - [`text`]: message text cut into plain runs and web links, and mentions (pure, unit-tested
//!   natively); [`notify`]: browser notifications for mentions while the page is in the background;
//!   [`timer`]: `setTimeout` as a future.
//!
//! Wire types all come from the `shared` crate.

pub mod api;
pub mod auth;
pub mod components;
pub mod connection;
pub mod here;
pub mod json;
pub mod notify;
pub mod storage;
pub mod store;
pub mod text;
pub mod timer;

use auth::{EXPIRED, Identity, Screen, initial_screen};
use components::{ChatView, SignIn};
use leptos::prelude::*;
use leptos::task::spawn_local;

/// How long to wait before asking `GET /api/session` again when the server did not answer.
const SESSION_RETRY_MS: u32 = 2_000;

/// The whole page: decides between the sign-in screen and the chat, from the server's session answer and
/// from what the chat reports.
#[component]
pub fn App() -> impl IntoView {
    let screen = RwSignal::new(Screen::Loading);
    let allow_anonymous = RwSignal::new(false);
    let unreachable = RwSignal::new(false);
    spawn_local(async move {
        loop {
            match api::session().await {
                Ok(info) => {
                    allow_anonymous.set(info.allow_anonymous);
                    screen.set(initial_screen(&info));
                    return;
                }
                Err(_) => {
                    unreachable.set(true);
                    let _ = timer::sleep(SESSION_RETRY_MS).await;
                }
            }
        }
    });

    let to_sign_in = move |notice: Option<String>| screen.set(Screen::SignIn { notice });
    let on_signed_in = Callback::new(move |name| screen.set(Screen::Chat(Identity::Account(name))));
    let on_guest = Callback::new(move |()| screen.set(Screen::Chat(Identity::Guest)));
    let on_sign_in = Callback::new(move |()| to_sign_in(None));
    let on_signed_out = Callback::new(move |()| to_sign_in(None));
    // Only the chat that is shown ends: a late report from a closed one (e.g. another identity's) is ignored,
    // so that it cannot clear the cookie of the current session.
    let shown =
        move |identity: &Identity| screen.with_untracked(|s| s == &Screen::Chat(identity.clone()));
    let on_session_lost = Callback::new(move |identity: Identity| {
        if !shown(&identity) {
            return;
        }
        spawn_local(async move {
            // First clears a cookie the server no longer accepts, so that it is not sent again (and cannot
            // clear the cookie of a sign-in that follows).
            let _ = api::logout().await;
            if shown(&identity) {
                to_sign_in(Some(EXPIRED.to_owned()));
            }
        });
    });

    move || match screen.get() {
        Screen::Loading => view! {
            <div class="app">
                <p class="loading" role="status">
                    {move || {
                        if unreachable.get() {
                            "Cannot reach the server; retrying…"
                        } else {
                            "Loading…"
                        }
                    }}
                </p>
            </div>
        }
        .into_any(),
        Screen::SignIn { notice } => view! {
            <SignIn notice allow_anonymous=allow_anonymous.get_untracked() on_signed_in on_guest />
        }
        .into_any(),
        Screen::Chat(identity) => view! {
            <ChatView identity on_sign_in on_signed_out on_session_lost />
        }
        .into_any(),
    }
}
