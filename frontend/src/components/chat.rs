//! The chat screen for one identity: starts its [`Connection`], keeps its store saved under the identity's
//! own key, and turns what the connection reports into decisions about the session ([`watch_session`]):
//! the session is gone (the app then shows the sign-in screen), or a guest's stored token is bad.

use super::{Activity, Composer, MessageList, RoomList, StatusBar};
use crate::auth::{FailingOpens, Identity, RECHECK_AFTER, after_failed_opens};
use crate::connection::{ChatState, ConnState, Connection, ConnectionConfig};
use crate::storage;
use crate::store::Store;
use crate::{api, notify};
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::{ClientMessage, RoomId};

/// The chat as `identity`. The header offers "Sign in" to a guest (`on_sign_in`) and "Sign out" to an
/// account (`on_signed_out`, after `POST /api/logout`); `on_session_lost` gets `identity` when the server
/// ended the session (close code 4501) or no longer knows it. The connection closes when this view goes
/// away.
#[component]
pub fn ChatView(
    identity: Identity,
    on_sign_in: Callback<()>,
    on_signed_out: Callback<()>,
    on_session_lost: Callback<Identity>,
) -> impl IntoView {
    let store_key = identity.store_key();
    let state = ChatState::new(storage::load(&store_key).unwrap_or_default());
    // Until the welcome frame arrives, an account already knows its name.
    state.user.set(identity.account().cloned());
    let config = ConnectionConfig {
        token_key: identity.token_key(),
        ..ConnectionConfig::for_page()
    };
    let connection = Connection::start(config, state);
    provide_context(connection.clone());
    // Syncs the store to localStorage after every change (the outside world, hence an Effect). Another tab
    // of the same user saves under the same key: its pending messages are kept (see `Store::merged_with`).
    Effect::new(move || {
        state.store.with(|s| {
            let stored: Store = storage::load(&store_key).unwrap_or_default();
            storage::save(&store_key, &s.merged_with(&stored));
        });
    });
    // Subscribed before the task first runs, so no state is missed.
    let states = connection.watch();
    spawn_local(watch_session(
        identity.clone(),
        connection.clone(),
        states,
        on_session_lost,
    ));
    let closer = connection.clone();
    on_cleanup(move || closer.close());

    // The room shown.
    let current = state.current;
    // What is shown counts as read: the open room's read mark follows its newest message, sent to the
    // server at most once a second (a busy room would otherwise spend the frame budget on it), and a
    // room's mark is set when the user leaves it for another (what it showed was seen).
    let read_due = StoredValue::new(false);
    let shown = StoredValue::new(None::<RoomId>);
    Effect::new({
        let connection = connection.clone();
        move || {
            let room = current.get();
            state.store.track();
            if let Some(left) = shown.get_value().filter(|left| *left != room) {
                mark_read(state, &connection, left);
            }
            shown.set_value(Some(room));
            if read_due.get_value() {
                return;
            }
            read_due.set_value(true);
            let connection = connection.clone();
            // What is shown when the second is over: the room open then, up to its newest message.
            crate::timer::after(1_000, move || {
                read_due.set_value(false);
                if let Some(room) = current.try_get_untracked() {
                    mark_read(state, &connection, room);
                }
            });
        }
    });

    let signed_in = identity.account().is_some();
    let undecided = RwSignal::new(notify::undecided());
    // An account signs out (`POST /api/logout`); a guest is offered the sign-in screen.
    let account_button = move |_| {
        if !signed_in {
            on_sign_in.run(());
            return;
        }
        connection.close();
        spawn_local(async move {
            // Even if the request fails, this page stops using the session.
            let _ = api::logout().await;
            on_signed_out.run(());
        });
    };
    view! {
        <div class="app">
            <StatusBar>
                // Until the user decides: the offer of notifications for mentions.
                {move || {
                    undecided
                        .get()
                        .then(|| {
                            view! {
                                <button
                                    class="account"
                                    type="button"
                                    data-testid="notify-mentions"
                                    on:click=move |_| {
                                        notify::ask();
                                        undecided.set(false);
                                    }
                                >
                                    "Notify me of mentions"
                                </button>
                            }
                        })
                }}
                <button
                    class="account"
                    type="button"
                    data-testid=if signed_in { "logout" } else { "sign-in" }
                    on:click=account_button
                >
                    {if signed_in { "Sign out" } else { "Sign in" }}
                </button>
            </StatusBar>
            <div class="layout">
                <RoomList />
                {move || {
                    let room = current.get();
                    view! {
                        <main class="room">
                            <MessageList room=room.clone() />
                            <Activity room=room.clone() />
                            <Composer room />
                        </main>
                    }
                }}
            </div>
        </div>
    }
}

/// Raises `room`'s read mark to its newest message and tells the server, if there is anything new. The
/// store is looked at first, so that one with nothing new is not touched (and saved).
fn mark_read(state: ChatState, connection: &Connection, room: RoomId) {
    let unread = state
        .store
        .with_untracked(|s| s.rooms().iter().any(|l| l.room == room && l.unread > 0));
    let read = unread
        .then(|| state.store.try_update(|s| s.read_up_to(&room)).flatten())
        .flatten();
    if let Some(seq) = read {
        connection.frame(ClientMessage::Read { room, seq });
    }
}

/// Follows `states` (from `connection.watch()`) until the connection stops: reports a session the server
/// ended to `on_session_lost`; after [`RECHECK_AFTER`] or more attempts in a row that never opened, asks
/// `GET /api/session` after each one and acts on [`after_failed_opens`]: stops the connection and reports
/// the session lost, or forgets the guest token.
async fn watch_session(
    identity: Identity,
    connection: Connection,
    mut states: UnboundedReceiver<ConnState>,
    on_session_lost: Callback<Identity>,
) {
    let failed_opens = connection.state().failed_opens;
    // Whether the server answered the check after an earlier failed attempt of this run.
    let mut answered = false;
    while let Some(status) = states.next().await {
        match status {
            ConnState::Unauthorized => {
                on_session_lost.run(identity);
                return;
            }
            ConnState::Closed => return,
            ConnState::Open => answered = false,
            ConnState::Reconnecting { .. }
                if failed_opens.try_get_untracked().unwrap_or(0) >= RECHECK_AFTER =>
            {
                let answer = api::session().await.ok();
                match after_failed_opens(&identity, answer.as_ref(), answered) {
                    FailingOpens::KeepTrying => {}
                    FailingOpens::DropGuestToken => {
                        if let Some(key) = identity.token_key() {
                            storage::remove(&key);
                        }
                    }
                    FailingOpens::SessionLost => {
                        connection.close();
                        on_session_lost.run(identity);
                        return;
                    }
                }
                answered = answer.is_some();
            }
            ConnState::Connecting | ConnState::Reconnecting { .. } => {}
        }
    }
}
