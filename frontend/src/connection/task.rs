//! The connection task: one loop that connects, runs a session while the socket is open, then backs off
//! and connects again, until told to stop ([`Command::Close`]), the server closes with a code that forbids
//! reconnecting, or the view that owned the signals is gone (checked before each attempt and after each
//! open, since a view dropped without `close` never ends the command channel: the task holds a sender).
//!
//! A session: on open, `join` every known room from its last seq, then resend the whole outbox (same ids,
//! so the server deduplicates); then handle frames, send commands' messages, and `ping` every
//! `ping_interval`. If nothing at all arrives within `pong_timeout` after a ping, the connection is dead.
//!
//! A chat the server did not take for a passing reason (`rate_limited`, `unavailable`, ...) stays pending in
//! the outbox; new messages are then held (they wait in the outbox too) and, after the error's
//! `retry_after_ms` (or [`RETRY_AFTER`] when it names none), the outbox is sent again in the order it was
//! typed, so the server stores it in that order. The outbox goes out [`OUTBOX_WINDOW`] messages at a time,
//! the next window a retry later, so a long outbox after an outage is paced by the server's budget
//! instead of flooding it (the server closes a client that ignores `rate_limited`). A `join` refused for
//! the budget is sent again with the retry. Only a permanent refusal marks a chat failed. A close with [`UNAUTHORIZED`] ends the task as
//! [`ConnState::Unauthorized`]; attempts that never open are counted in
//! [`ChatState::failed_opens`](super::ChatState::failed_opens) for the chat view to judge.

use super::socket::{Socket, SocketEvent};
use super::{ChatState, Command, ConnState, ConnectionConfig, Watchers};
use crate::storage;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::future::{Fuse, FusedFuture};
use futures::{FutureExt, StreamExt, select_biased};
use leptos::prelude::*;
use shared::close::{HEARTBEAT_TIMEOUT, UNAUTHORIZED, should_reconnect};
use shared::{ClientMessage, ErrorCode, ServerMessage, Timestamp};
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

/// How long to hold new messages after the server asked to send one again later without saying when,
/// before the outbox is resent; also the pace of a long outbox, one window per retry.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most outbox messages sent at once (the server's default burst is 20 frames).
const OUTBOX_WINDOW: usize = 10;

/// How a session ended.
enum End {
    /// Stop for good, ending in this state.
    Stop(ConnState),
    /// The connection was lost; reconnect after a delay.
    Lost {
        /// Whether the socket opened at all.
        opened: bool,
        /// Whether it stayed open for `stable_after`.
        stable: bool,
    },
}

/// What woke a session up.
enum Step {
    Socket(SocketEvent),
    Command(Option<Command>),
    Ping,
    Dead,
    Retry,
}

/// The task's state across connections.
pub(super) struct Task {
    config: ConnectionConfig,
    state: ChatState,
    commands: UnboundedSender<Command>,
    watchers: Watchers,
    /// Rooms whose `join` the server refused for its budget in this session: joined again on retry.
    rejoin: Vec<shared::RoomId>,
    /// The app version of the first welcome (see [`ChatState::outdated`]).
    app: Option<String>,
    /// Rooms the server listed that this store did not have: joined after the frame is handled.
    joins_due: Vec<shared::RoomId>,
}

impl Task {
    /// A task publishing into `state`; `commands` feeds its own receiver (for the `online` listener).
    pub(super) fn new(
        config: ConnectionConfig,
        state: ChatState,
        commands: UnboundedSender<Command>,
        watchers: Watchers,
    ) -> Self {
        Self {
            config,
            state,
            commands,
            watchers,
            rejoin: Vec::new(),
            app: None,
            joins_due: Vec::new(),
        }
    }

    /// Runs until [`Command::Close`], a terminal close code, or the view's signals are disposed (see the
    /// module docs).
    pub(super) async fn run(mut self, mut commands: UnboundedReceiver<Command>) {
        let online_tx = self.commands.clone();
        let on_online = Closure::<dyn FnMut()>::new(move || {
            let _ = online_tx.unbounded_send(Command::Online);
        });
        let window = web_sys::window();
        if let Some(w) = &window {
            let _ =
                w.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
        }
        let mut failures = 0u32;
        let mut never_opened = 0u32;
        let last = loop {
            // The view that owned the signals is gone without `close` (e.g. dropped): stop.
            if self.state.store.is_disposed() {
                break ConnState::Closed;
            }
            self.set_status(ConnState::Connecting);
            let end = match Socket::connect(&self.url()) {
                Ok(socket) => self.session(socket, &mut commands).await,
                Err(_) => End::Lost {
                    opened: false,
                    stable: false,
                },
            };
            let (opened, stable) = match end {
                End::Stop(last) => break last,
                End::Lost { opened, stable } => (opened, stable),
            };
            if stable {
                failures = 0;
            }
            if opened {
                never_opened = 0;
            } else {
                never_opened += 1;
                self.state.failed_opens.set(never_opened);
            }
            failures += 1;
            let delay = self
                .config
                .backoff
                .delay(failures - 1, js_sys::Math::random());
            self.set_status(ConnState::Reconnecting {
                attempt: failures,
                delay_ms: millis(delay),
            });
            let mut wait = sleep(delay);
            let stop = loop {
                select_biased! {
                    _ = wait => break false,
                    command = commands.next() => match command {
                        Some(Command::Online) => break false,
                        // (`None` cannot happen: the task holds a sender.)
                        Some(Command::Close) | None => break true,
                        // Already in the outbox: it goes out after the next open.
                        Some(Command::Send(_)) => {}
                        // Not connected: dropped (see `Connection::frame`).
                        Some(Command::Frame(_)) => {}
                    },
                }
            };
            if stop {
                break ConnState::Closed;
            }
        };
        if let Some(w) = &window {
            let _ =
                w.remove_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
        }
        self.set_status(last);
    }

    /// One connection attempt, from the handshake to the close.
    async fn session(
        &mut self,
        mut socket: Socket,
        commands: &mut UnboundedReceiver<Command>,
    ) -> End {
        let lost = |opened, stable| End::Lost { opened, stable };
        let mut handshake = sleep(self.config.open_timeout);
        loop {
            select_biased! {
                event = socket.next().fuse() => match event {
                    SocketEvent::Open => break,
                    SocketEvent::Closed(code) if !should_reconnect(code) => return stop(code),
                    SocketEvent::Closed(_) => return lost(false, false),
                    SocketEvent::Text(_) => {}
                },
                command = commands.next() => if let Some(Command::Close) | None = command {
                    return End::Stop(ConnState::Closed);
                },
                _ = handshake => return lost(false, false),
            }
        }

        let opened_at = js_sys::Date::now();
        let stable = |config: &ConnectionConfig| {
            js_sys::Date::now() - opened_at >= config.stable_after.as_millis() as f64
        };
        // The view that owned the signals is gone (e.g. signed out before `close` arrived): stop.
        let Some(joins) = self.state.store.try_with_untracked(|s| s.joins()) else {
            socket.close(1000);
            return End::Stop(ConnState::Closed);
        };
        self.state.failed_opens.set(0);
        self.set_status(ConnState::Open);
        for frame in joins {
            socket.send(&frame);
        }
        self.rejoin.clear();
        let mut ping = sleep(self.config.ping_interval);
        let mut dead = Fuse::terminated();
        // Running while new messages are held (the server asked to send one again later, or more of the
        // outbox waits for its turn).
        let mut retry = Fuse::terminated();
        if self.send_outbox(&socket) {
            retry = sleep(RETRY_AFTER);
        }
        loop {
            let step = select_biased! {
                event = socket.next().fuse() => Step::Socket(event),
                command = commands.next() => Step::Command(command),
                _ = ping => Step::Ping,
                _ = dead => Step::Dead,
                _ = retry => Step::Retry,
            };
            match step {
                Step::Socket(SocketEvent::Text(text)) => {
                    dead = Fuse::terminated();
                    if let Some(wait) = self.handle(&text)
                        && retry.is_terminated()
                    {
                        retry = sleep(wait);
                    }
                    for room in std::mem::take(&mut self.joins_due) {
                        socket.send(&ClientMessage::Join { room, since: None });
                    }
                }
                Step::Socket(SocketEvent::Open) => {}
                Step::Socket(SocketEvent::Closed(code)) if !should_reconnect(code) => {
                    return stop(code);
                }
                Step::Socket(SocketEvent::Closed(_)) => return lost(true, stable(&self.config)),
                Step::Command(Some(Command::Send(message))) => {
                    // While held, it waits in the outbox for the retry.
                    if retry.is_terminated() {
                        socket.send(&message.to_message());
                    }
                }
                Step::Command(Some(Command::Frame(message))) => socket.send(&message),
                Step::Command(Some(Command::Online)) => {}
                Step::Command(Some(Command::Close) | None) => {
                    socket.close(1000);
                    return End::Stop(ConnState::Closed);
                }
                Step::Retry => {
                    for room in std::mem::take(&mut self.rejoin) {
                        let since = self
                            .state
                            .store
                            .try_with_untracked(|s| s.since(&room))
                            .flatten();
                        socket.send(&ClientMessage::Join { room, since });
                    }
                    if self.send_outbox(&socket) {
                        retry = sleep(RETRY_AFTER);
                    }
                }
                Step::Ping => {
                    socket.send(&ClientMessage::Ping);
                    ping = sleep(self.config.ping_interval);
                    if dead.is_terminated() {
                        dead = sleep(self.config.pong_timeout);
                    }
                }
                Step::Dead => {
                    socket.close(HEARTBEAT_TIMEOUT);
                    return lost(true, stable(&self.config));
                }
            }
        }
    }

    /// Applies one frame from the server to the signals. Returns how long to wait when the server asked
    /// to send one of our chats (or joins) again later.
    fn handle(&mut self, text: &str) -> Option<Duration> {
        // A frame this version cannot read (a newer server's) is skipped.
        let Ok(message) = crate::json::from_str::<ServerMessage>(text) else {
            return None;
        };
        let store = self.state.store;
        match message {
            ServerMessage::Status {
                user, token, app, ..
            } => {
                // The first welcome tells which build of the app this page belongs to.
                match (&self.app, app) {
                    (Some(seen), Some(now)) if *seen != now => self.state.outdated.set(true),
                    (None, now) => self.app = now,
                    _ => {}
                }
                if let (Some(token), Some(key)) = (token, &self.config.token_key) {
                    storage::save_text(key, &token);
                }
                if user.is_some() {
                    self.state.user.set(user);
                }
            }
            ServerMessage::Error {
                code: ErrorCode::HistoryTruncated,
                room,
                ..
            } => {
                let room = room.map_or_else(String::new, |r| format!(" in {r}"));
                self.state.notice.set(Some(format!(
                    "Older messages{room} are no longer available."
                )));
            }
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                id: None,
                room: Some(room),
                retry_after_ms,
                ..
            } => {
                // A join refused for the budget: join again with the retry.
                self.rejoin.push(room);
                return Some(retry_after_ms.map_or(RETRY_AFTER, Duration::from_millis));
            }
            ServerMessage::Error {
                code,
                message,
                id: Some(id),
                retry_after_ms,
                ..
            } => match code {
                // Refused for good: sending it again would be refused again.
                ErrorCode::BadField
                | ErrorCode::InvalidJson
                | ErrorCode::InvalidMessage
                | ErrorCode::UnknownType
                | ErrorCode::Forbidden => {
                    store.update(|s| s.fail(&id));
                }
                // Not stored this time (`rate_limited`, `unavailable`, or a code this version does not
                // know): it stays pending in the outbox, to be sent again with the whole outbox.
                _ => {
                    self.state.notice.set(Some(message));
                    return Some(retry_after_ms.map_or(RETRY_AFTER, Duration::from_millis));
                }
            },
            ServerMessage::Error { message, .. } => self.state.notice.set(Some(message)),
            ServerMessage::Typing {
                room,
                user,
                expires_ms,
            } => {
                let here = self.state.here;
                here.update(|h| h.typing(&room, &user, Some(now() + i64::from(expires_ms))));
                // The notice lapses unless another comes: drop what is over when this one would end.
                crate::timer::after(expires_ms, move || {
                    let now = now();
                    if here.try_with_untracked(|h| h.lapsed(now)) == Some(true) {
                        let _ = here.try_update(|h| h.lapse(now));
                    }
                });
            }
            ServerMessage::Presence { room, count, users } => {
                let now = Timestamp::from_unix_ms(now());
                let me = self.state.user.get_untracked();
                self.state
                    .here
                    .update(|h| h.presence(&room, count, users, me.as_ref(), now));
            }
            ServerMessage::Invited { room, user } => self
                .state
                .notice
                .set(Some(format!("{user} can now join {room}."))),
            ServerMessage::Removed { room, user } => self
                .state
                .notice
                .set(Some(format!("{user} is no longer in {room}."))),
            ServerMessage::Created { private: false, .. } | ServerMessage::Pong => {}
            // The rest changes the store: one update for each.
            message => {
                let me = self.state.user.get_untracked();
                self.besides_the_store(&message, me.as_ref());
                let joins = store.try_update(|s| s.apply(message, me.as_ref()));
                self.joins_due.extend(joins.unwrap_or_default());
            }
        }
        None
    }

    /// What a frame for the store means for the rest of the page: a sender stops typing, a mention may
    /// notify, a room the user was removed from stops being shown, a room the user asked for is shown.
    fn besides_the_store(&self, message: &ServerMessage, me: Option<&shared::UserName>) {
        if let ServerMessage::Chat {
            sender,
            room,
            text,
            timestamp,
            ..
        } = message
        {
            // Whoever sent a message is no longer typing it (and nothing is written when they
            // were not).
            if self
                .state
                .here
                .with_untracked(|h| h.typists(room).contains(&sender))
            {
                self.state.here.update(|h| h.typing(room, sender, None));
            }
            if let Some(me) = me
                && sender != me
                && crate::text::mentions(text.as_str(), me.as_str())
            {
                let (sender, room) = (sender.as_str(), room.as_str());
                crate::notify::mention(sender, room, text.as_str(), timestamp.unix_ms());
            }
        }
        // Out of the room shown (removed from it): the lobby shows instead.
        if let ServerMessage::Left { room } = message
            && self.state.current.get_untracked() == *room
        {
            self.state.current.set(shared::RoomId::lobby());
        }
        // The room the user asked for is in: show it.
        if let ServerMessage::Joined { room, .. } = message
            && self.state.opening.with_value(|o| o.as_ref() == Some(room))
        {
            self.state.opening.set_value(None);
            self.state.current.set(room.clone());
        }
    }

    /// Sends the oldest [`OUTBOX_WINDOW`] messages of the outbox (same ids: the server stores each
    /// message once); returns whether more wait.
    fn send_outbox(&self, socket: &Socket) -> bool {
        // A store that is gone (the view was closed) has nothing left to send.
        self.state
            .store
            .try_with_untracked(|s| {
                let outbox = s.outbox();
                for message in outbox.iter().take(OUTBOX_WINDOW) {
                    socket.send(&message.to_message());
                }
                outbox.len() > OUTBOX_WINDOW
            })
            .unwrap_or(false)
    }

    /// The configured URL with the stored guest token, if any.
    fn url(&self) -> String {
        let url = &self.config.url;
        let token = self
            .config
            .token_key
            .as_deref()
            .and_then(storage::load_text);
        match token {
            Some(token) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}token={}", js_sys::encode_uri_component(&token))
            }
            None => url.clone(),
        }
    }

    /// Publishes a new state to the signal and to every watcher.
    fn set_status(&self, status: ConnState) {
        self.state.status.set(status);
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| w.unbounded_send(status).is_ok());
    }
}

/// How a session ends after a close code that forbids reconnecting.
fn stop(code: u16) -> End {
    End::Stop(if code == UNAUTHORIZED {
        ConnState::Unauthorized
    } else {
        ConnState::Closed
    })
}

fn millis(d: Duration) -> u32 {
    d.as_millis().try_into().unwrap_or(u32::MAX)
}

fn sleep(d: Duration) -> Fuse<wasm_bindgen_futures::JsFuture> {
    crate::timer::sleep(millis(d)).fuse()
}

/// The browser's clock, in milliseconds since the epoch.
fn now() -> i64 {
    js_sys::Date::now() as i64
}
