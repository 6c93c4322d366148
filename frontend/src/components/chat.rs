//! The chat screen for one identity: starts its [`Connection`], keeps its store saved under the identity's
//! own key, and turns what the connection reports into "the session is gone" for the app.

use super::{Composer, MessageList, StatusBar};
use crate::api;
use crate::auth::{Identity, session_lost};
use crate::connection::{ChatState, ConnState, Connection, ConnectionConfig};
use crate::storage;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::RoomId;

/// After this many consecutive attempts that never opened, ask `GET /api/session` whether the session still
/// exists (a refused upgrade, HTTP 401, cannot be told apart from a network failure in a browser).
const RECHECK_AFTER: u32 = 2;

/// The chat as `identity`. The header offers "Sign in" to a guest (`on_sign_in`) and "Sign out" to an
/// account (`on_signed_out`, after `POST /api/logout`); `on_session_lost` runs when the server ended the
/// session (close code 4501) or no longer knows it. The connection closes when this view goes away.
#[component]
pub fn ChatView(
    identity: Identity,
    on_sign_in: Callback<()>,
    on_signed_out: Callback<()>,
    on_session_lost: Callback<()>,
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
    // Syncs the store to localStorage after every change (the outside world, hence an Effect).
    Effect::new(move || state.store.with(|s| storage::save(&store_key, s)));

    // The server ended the session: the connection has stopped; the app shows the sign-in screen.
    Effect::new(move || {
        if state.status.get() == ConnState::Unauthorized {
            on_session_lost.run(());
        }
    });
    // Attempts keep failing before the socket opens: ask the server whether the session is still there.
    let checked = identity.clone();
    let stopper = connection.clone();
    Effect::new(move || {
        if state.failed_opens.get() < RECHECK_AFTER {
            return;
        }
        let (identity, connection) = (checked.clone(), stopper.clone());
        spawn_local(async move {
            // No answer (server down) proves nothing: keep reconnecting.
            let answer = api::session().await;
            if answer.is_ok_and(|info| session_lost(&identity, &info)) {
                connection.close();
                on_session_lost.run(());
            }
        });
    });
    let closer = connection.clone();
    on_cleanup(move || closer.close());

    let signed_in = identity.account().is_some();
    let sign_out = move |_| {
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
                {if signed_in {
                    view! {
                        <button class="account" type="button" data-testid="logout" on:click=sign_out>
                            "Sign out"
                        </button>
                    }
                        .into_any()
                } else {
                    view! {
                        <button
                            class="account"
                            type="button"
                            data-testid="sign-in"
                            on:click=move |_| on_sign_in.run(())
                        >
                            "Sign in"
                        </button>
                    }
                        .into_any()
                }}
            </StatusBar>
            <main class="room">
                <MessageList room=RoomId::lobby() />
                <Composer room=RoomId::lobby() />
            </main>
        </div>
    }
}
