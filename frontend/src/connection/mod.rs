//! The connection to the chat server: the only code that touches the WebSocket.
//!
//! [`Connection::start`] spawns one task ([`task`]) that owns the socket until [`Connection::close`], a
//! terminal close code, or the end of the view whose signals it writes. The view hands it work through
//! commands on a channel ([`Connection::send`], [`Connection::close`]) and reads the results from the
//! signals in [`ChatState`], which the task updates, or from [`Connection::watch`]. The task only reports
//! facts about the connection (its [`ConnState`], including [`ConnState::Unauthorized`] when the server ends
//! the session, and [`ChatState::failed_opens`]); what they mean for the session is decided by the chat
//! view (`components::chat`), which asks the app to change screens.
//!
//! - [`backoff`]: reconnect delays (exponential, full jitter).
//! - [`state`]: [`ConnState`], shown in the status bar.
//! - `socket`: one `web_sys::WebSocket` as a stream of events.
//! - `task`: the state machine: connect, join rooms, flush the outbox, heartbeat, back off, reconnect.

mod backoff;
mod socket;
mod state;
mod task;

pub use backoff::Backoff;
pub use state::ConnState;

use crate::here::Here;
use crate::store::{Outgoing, Store};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use leptos::prelude::*;
use shared::{ChatText, ClientMessage, ClientMsgId, RoomId, Timestamp, UserName};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Timers, backoff and where to connect. Tests use small values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:8080/ws` (a guest token is appended as `?token=`).
    pub url: String,
    /// The localStorage key of a guest's reconnect token. `None` for a signed-in user, who is identified
    /// by the session cookie alone (the server prefers `?token=` over the cookie, so a leftover guest token
    /// must not be sent).
    pub token_key: Option<String>,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// How often to send `ping`.
    pub ping_interval: Duration,
    /// How long after a `ping` the connection may stay silent before it counts as dead.
    pub pong_timeout: Duration,
    /// How long the handshake may take before the attempt counts as failed.
    pub open_timeout: Duration,
    /// How long a connection must stay open before the attempt counter starts again from 1.
    pub stable_after: Duration,
}

impl ConnectionConfig {
    /// The defaults for `url`: backoff 0.5 s doubling to 30 s, ping every 10 s, dead when nothing arrives
    /// within 10 s of a ping (so between 10 and 20 s after the last frame), handshake timeout 10 s, stable
    /// after 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token_key: Some(crate::storage::TOKEN_KEY.to_owned()),
            backoff: Backoff::default(),
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(10),
            stable_after: Duration::from_secs(10),
        }
    }

    /// The defaults for `/ws` on the page's own host (`wss://` when the page came over HTTPS).
    pub fn for_page() -> Self {
        let location = web_sys::window().map(|w| w.location());
        let get = |f: fn(&web_sys::Location) -> Result<String, _>| {
            location.as_ref().and_then(|l| f(l).ok())
        };
        let scheme = if get(web_sys::Location::protocol).as_deref() == Some("https:") {
            "wss"
        } else {
            "ws"
        };
        let host = get(web_sys::Location::host).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        Self::new(format!("{scheme}://{host}/ws"))
    }
}

/// Everything the connection task publishes to the view.
#[derive(Debug, Clone, Copy)]
pub struct ChatState {
    /// The connection's state.
    pub status: RwSignal<ConnState>,
    /// The name the server gave this connection, once known.
    pub user: RwSignal<Option<UserName>>,
    /// Rooms and outbox (saved).
    pub store: RwSignal<Store>,
    /// Who is in each room and who is typing (never saved).
    pub here: RwSignal<Here>,
    /// A notice for the user (e.g. history was truncated), if any.
    pub notice: RwSignal<Option<String>>,
    /// Consecutive connection attempts that failed before the socket opened (0 once one opens). A refused
    /// upgrade (HTTP 401 for a missing or expired session) looks like this to a browser.
    pub failed_opens: RwSignal<u32>,
    /// The server now serves another build of the app than the one this page started with.
    pub outdated: RwSignal<bool>,
    /// The room shown.
    pub current: RwSignal<RoomId>,
    /// A room the user asked to join or create: shown once the server has let them in (`joined`).
    pub opening: StoredValue<Option<RoomId>>,
}

impl ChatState {
    /// Fresh signals around `store` (typically the one loaded from localStorage).
    pub fn new(store: Store) -> Self {
        Self {
            status: RwSignal::new(ConnState::Connecting),
            user: RwSignal::new(None),
            store: RwSignal::new(store),
            here: RwSignal::new(Here::default()),
            notice: RwSignal::new(None),
            failed_opens: RwSignal::new(0),
            outdated: RwSignal::new(false),
            current: RwSignal::new(RoomId::lobby()),
            opening: StoredValue::new(None),
        }
    }
}

/// What the view (or a test) asks of the task.
#[derive(Debug)]
enum Command {
    /// A message just added to the outbox: send it now if the socket is open.
    Send(Outgoing),
    /// A frame to send now if the socket is open (dropped otherwise; see [`Connection::frame`]).
    Frame(ClientMessage),
    /// The browser came back online: stop waiting and reconnect now.
    Online,
    /// Close the socket and stop.
    Close,
}

/// Subscribers to every state change, in order (the signal only holds the latest one).
type Watchers = Arc<Mutex<Vec<UnboundedSender<ConnState>>>>;

/// A handle on the running connection task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Connection {
    state: ChatState,
    commands: UnboundedSender<Command>,
    watchers: Watchers,
}

impl Connection {
    /// Spawns the task that connects to `config.url` and keeps reconnecting, publishing into `state`.
    pub fn start(config: ConnectionConfig, state: ChatState) -> Self {
        let (commands, receiver) = unbounded();
        let watchers = Watchers::default();
        let task = task::Task::new(config, state, commands.clone(), watchers.clone());
        // Not `leptos::task::spawn_local`: the task must also run where no Leptos executor was set up (tests).
        wasm_bindgen_futures::spawn_local(task.run(receiver));
        Self {
            state,
            commands,
            watchers,
        }
    }

    /// The signals this connection updates.
    pub fn state(&self) -> ChatState {
        self.state
    }

    /// Queues `text` for `room` as a new pending message (persisted with the outbox) and sends it at once if
    /// the socket is open; otherwise it goes out after the next (re)connect. A message whose frame is larger
    /// than the server accepts ([`shared::DEFAULT_MAX_MESSAGE_BYTES`]; the server would close the connection
    /// on every resend) is never queued: it shows as failed at once.
    pub fn send(&self, room: RoomId, text: ChatText) {
        let message = Outgoing {
            id: new_message_id(),
            room,
            text,
            created: Timestamp::from_unix_ms(js_sys::Date::now() as i64),
        };
        if message.to_message().to_json().len() > shared::DEFAULT_MAX_MESSAGE_BYTES {
            self.state.store.update(|s| s.refuse(message));
            return;
        }
        self.state.store.update(|s| s.queue(message.clone()));
        let _ = self.commands.unbounded_send(Command::Send(message));
    }

    /// Asks for the page of `room` just before `before` (its messages are added to the store when it
    /// arrives).
    pub fn load_older(&self, room: RoomId, before: shared::Seq) {
        self.frame(ClientMessage::History { room, before });
    }

    /// Sends `message` if the socket is open. A request made while disconnected is dropped: what it
    /// asks for is either asked again by the view (pages, read marks) or redone after the reconnect
    /// (every room in the store is joined again).
    pub fn frame(&self, message: ClientMessage) {
        let _ = self.commands.unbounded_send(Command::Frame(message));
    }

    /// Hides the current notice.
    pub fn dismiss_notice(&self) {
        self.state.notice.set(None);
    }

    /// Every state the connection enters from now on, in order (for observers that must not miss any).
    pub fn watch(&self) -> UnboundedReceiver<ConnState> {
        let (tx, rx) = unbounded();
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Closes the socket and stops the task; the state becomes [`ConnState::Closed`] (unless it already
    /// stopped as [`ConnState::Unauthorized`]).
    pub fn close(&self) {
        let _ = self.commands.unbounded_send(Command::Close);
    }
}

/// A fresh message id: the time in milliseconds (12 hex digits) and 32 random bits (8 more).
///
/// Ids that grow with time keep the server's dedupe index appending at the end of the room's part
/// instead of writing a page for each sender. The random part keeps two tabs sending in the same
/// millisecond apart.
fn new_message_id() -> ClientMsgId {
    let now_ms = js_sys::Date::now() as u64;
    let random = (js_sys::Math::random() * 4_294_967_296.0) as u32;
    ClientMsgId::new(format!("{now_ms:012x}{random:08x}")).expect("20 hex digits are a valid id")
}
