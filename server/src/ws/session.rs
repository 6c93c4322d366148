//! One WebSocket connection, from welcome to close.
//!
//! A session is a single task that owns its socket and selects over:
//! - inbound frames: each takes from the connection's frame budget (over it: a `rate_limited` error with
//!   `retry_after_ms`, and a close with 4029 for a client that keeps ignoring those), then is decoded
//!   once ([`shared::decode_client`]); `chat` goes to the [`crate::relay`], `join` replays history and
//!   subscribes, `create`, `invite` and `remove` change rooms through [`crate::access`], `leave`
//!   unsubscribes, `history` answers a page of older messages, `read` keeps an account's read mark,
//!   `typing` is announced to the room's other users on every node (never stored; so is who is there,
//!   see [`crate::presence`]), `ping` gets `pong`,
//!   anything invalid gets an `error` and changes nothing;
//! - its [`crate::mailbox`]: room deliveries and acks, written in batches with one flush;
//! - an account's list of rooms: sent after the welcome (`rooms`), added to by every `join`, taken
//!   from by `leave`, so the rooms and what was read follow the user to another browser;
//! - heartbeats: a WebSocket Ping every `ping_interval`; a peer silent for `ping_timeout` is closed (4000);
//! - the node's shutdown (1001), the token's expiry and the session being signed out (4501).
//!
//! **Nothing waits on the peer without a deadline.** Every write and flush runs under `ping_timeout` and
//! is abandoned the moment shutdown, expiry or sign-out fires; a peer that accepts no bytes for that long
//! is dropped (its socket closed, its memory freed), and the close frame itself gets a short deadline. A
//! replay reads and writes one page at a time, each page bounded by the mailbox's byte budget and flushed
//! before the next is read, so a stuck reader holds at most one page.
//!
//! **Recovery without gaps or duplicates.** On `join {room, since}` the session subscribes to the room
//! *first*, then replays history after `since` page by page straight to the socket, remembering the last
//! `seq` it wrote for the room. Live deliveries that arrived meanwhile wait in the mailbox; when the
//! session reads them, any with a `seq` it already wrote is dropped. Anything stored before the
//! subscription is in the replay, anything stored after it is in the mailbox, and the overlap is removed.
//! When the node still holds every frame the client missed ([`crate::recent`]), the replay writes those
//! instead of reading history; it ends at the last `seq` delivered, and the overlap is removed the same way.
//!
//! **Writing.** Every frame the session sends goes into the connection's write buffer
//! ([`crate::ws::io`]): a room message's frame as it was encoded once for all its recipients, the
//! session's own frames encoded straight into the buffer. tungstenite reads frames and writes only its
//! control frames (a pong, the close frame), which go into the same buffer whole.
//!
//! The session is generic over the socket (a `Stream` + `Sink` of tungstenite WebSocket messages that
//! also takes frames, [`Frames`]), so its logic does not depend on a real network connection.

use crate::{
    access::AccessError,
    history::{HistoryError, NewMessage, PageLimit, StoredMessage},
    hub::{ConnId, Hub},
    limits::{TokenBucket, client_key},
    mailbox::{Mailbox, MailboxReceiver, Outbound, Published},
    node::Node,
    relay::AppendRequest,
    ws::io::Frames,
};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use rustc_hash::FxHashMap;
use shared::{
    ClientMessage, ClientMsgId, ErrorCode, RoomId, Seq, ServerMessage, Timestamp, UserName, close,
};
use std::{
    collections::HashSet,
    future::Future,
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll, Waker, ready},
    time::{Duration, Instant},
};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::{
    Error as WsError, Message, Utf8Bytes, error::ProtocolError, protocol::CloseFrame,
};
use tokio_util::sync::CancellationToken;

/// Messages read from history per page of a replay (pages are bounded in bytes too).
const REPLAY_PAGE: usize = 256;
/// Rooms one connection may be in at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 100;
/// How long a closing session waits for the close frame to be written and for the peer's reply.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Mailbox items written before one flush.
const WRITE_BATCH: usize = 64;
/// The least time between two `typing` notices a connection's are passed on.
const TYPING_FLOOR: Duration = Duration::from_secs(1);
/// What a `join` costs from the frame budget: it may replay a whole page of history.
const JOIN_COST: f64 = 5.0;

/// Who is on the other end.
#[derive(Debug)]
pub struct Peer {
    /// This connection's id.
    pub conn: ConnId,
    /// The client's address (through a trusted proxy).
    pub addr: IpAddr,
    /// The name this connection speaks as.
    pub user: UserName,
    /// A guest token for the next connection (sent in the welcome); accounts have their own.
    pub token: Option<String>,
    /// When the account token expires: the session is closed with 4501 then.
    pub expires_at: Option<Timestamp>,
    /// Cancelled when the session this connection signed in with is revoked (closed with 4501), and
    /// when the node shuts down (a child of its shutdown token; closed with 1001).
    pub revoked: CancellationToken,
    /// This connection's mailbox, also given to [`crate::sessions`] so that it can reach the connection.
    pub mailbox: (Mailbox, MailboxReceiver),
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The peer closed or vanished.
    PeerGone,
    /// We close with this code.
    Closed(u16, &'static str),
    /// Writing failed.
    WriteFailed,
    /// The peer accepted no bytes within the write deadline.
    Stuck,
}

/// A frame for the connection's write buffer ([`Frames`]).
#[derive(Debug)]
enum Out {
    /// A room message, its frame encoded once for every recipient.
    Shared(Arc<Published>),
    /// A frame for this connection alone, by its text.
    Own(Utf8Bytes),
    /// A WebSocket Ping.
    Ping,
}

/// A mailbox item that could not be written without waiting.
#[derive(Debug)]
enum Pending {
    /// A frame the write buffer had no room for yet.
    Queue(Out),
    /// The connection was taken out of this room: say so (`left`).
    Left(RoomId),
    /// The account's list of rooms changed: send it again.
    Relist,
}

/// What ends a session from outside, checked during every wait, writes included.
#[derive(Debug, Clone)]
struct Stops {
    /// Cancelled by a sign-out or by the node's shutdown (see [`Peer::revoked`]): one token to watch.
    revoked: CancellationToken,
    /// The node's shutdown, read to tell the two apart.
    shutdown: CancellationToken,
    expires: Option<tokio::time::Instant>,
}

/// Why a session whose account token expired ends.
const EXPIRED: End = End::Closed(close::UNAUTHORIZED, "session expired: sign in again");

impl Stops {
    /// Completes with the reason to stop as soon as there is one.
    async fn fired(&self) -> End {
        let expiry = async {
            match self.expires {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.revoked.cancelled() => self.why_revoked(),
            () = expiry => EXPIRED,
        }
    }

    /// Why [`Stops::revoked`] was cancelled.
    fn why_revoked(&self) -> End {
        if self.shutdown.is_cancelled() {
            End::Closed(close::GOING_AWAY, "server shutting down")
        } else {
            End::Closed(close::UNAUTHORIZED, "signed out: sign in again")
        }
    }
}

/// Runs one socket operation under the write deadline, abandoning it when the session must stop.
async fn guarded(
    op: impl Future<Output = Result<(), WsError>>,
    stops: &Stops,
    deadline: Duration,
) -> Result<(), End> {
    tokio::select! {
        end = stops.fired() => Err(end),
        done = tokio::time::timeout(deadline, op) => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::WriteFailed),
            Err(_) => Err(End::Stuck),
        },
    }
}

struct Session<S> {
    socket: S,
    node: Node,
    conn: ConnId,
    user: UserName,
    addr: IpAddr,
    mailbox: Mailbox,
    /// Joined rooms and the last `seq` written to the socket for each (`None`: nothing yet, deliver all).
    /// Looked up for every delivery, so with a fast hash (SipHash was 5% of the CPU at 1.8M deliveries a
    /// second); a connection is in at most [`MAX_ROOMS_PER_CONNECTION`], so a hash flood cannot hurt.
    rooms: FxHashMap<RoomId, Option<Seq>>,
    /// When this connection last announced typing.
    last_typing: Option<Instant>,
    /// For an account: the rooms in its list as far as this session knows (a `join` adds to the list, a
    /// `leave` takes off). `None` for a guest, which has no list.
    listed: Option<HashSet<RoomId>>,
    last_heard: Instant,
    /// This connection's frame budget.
    frames: TokenBucket,
    /// Frames refused for the budget since the last one accepted.
    strikes: u32,
    stops: Stops,
    /// How long one write or flush may take.
    write_deadline: Duration,
}

/// Serves one upgraded connection until it closes. The session is set up before the returned future
/// starts, so that the future holds the session once rather than also the socket and peer it was made
/// from (an `async fn` keeps its arguments' space for its whole life: 0.5 KB per connection).
pub fn run<S>(socket: S, node: Node, peer: Peer) -> impl Future<Output = ()>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Frames + Unpin,
{
    let conn = peer.conn;
    let (mailbox, rx) = peer.mailbox;
    node.metrics.connections.inc();
    let started = Instant::now();
    // A connection's coming and its leaving are logged at debug level (a close the server decides on, at
    // info); `/metrics` counts them (`connections`, `disconnects` by reason). Two lines per connection
    // took 8% of the CPU at 10,000 connections a second.
    tracing::debug!(conn, user = %peer.user, peer = %peer.addr, "connected");
    let config = &node.config;
    let frames = TokenBucket::new(config.rate_limit, config.rate_burst);
    let expires = peer.expires_at.map(|at| {
        let ms = at.unix_ms().saturating_sub(crate::now().unix_ms()).max(0) as u64;
        tokio::time::Instant::now() + Duration::from_millis(ms)
    });
    let stops = Stops {
        revoked: peer.revoked,
        shutdown: node.shutdown.clone(),
        expires,
    };
    let write_deadline = config.ping_timeout;
    let mut session = Session {
        socket,
        conn,
        user: peer.user,
        addr: peer.addr,
        mailbox,
        rooms: FxHashMap::default(),
        // Guests get a token for their next connection; accounts have their own.
        listed: peer.token.is_none().then(HashSet::new),
        last_typing: None,
        last_heard: Instant::now(),
        frames,
        strikes: 0,
        stops,
        write_deadline,
        node,
    };
    let token = peer.token;
    async move {
        let end = session.serve(rx, token).await;
        session.finish(end, started);
    }
}

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Frames + Unpin,
{
    /// After the session ended for `end`: leaves its rooms, counts and logs the end.
    fn finish(&self, end: End, started: Instant) {
        let conn = self.conn;
        for room in self.rooms.keys() {
            self.node.hub.leave(room, conn);
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let metrics = &self.node.metrics;
        metrics.connections.dec();
        metrics.disconnect(match &end {
            End::Closed(code, _) => code.to_string(),
            End::PeerGone => "peer_gone".into(),
            End::WriteFailed => "write_failed".into(),
            End::Stuck => "stuck".into(),
        });
        match end {
            End::PeerGone => tracing::debug!(conn, duration_ms, "disconnected"),
            End::Closed(code, why) => tracing::info!(conn, duration_ms, code, why, "disconnected"),
            End::WriteFailed => tracing::info!(conn, duration_ms, "disconnected: write failed"),
            End::Stuck => tracing::info!(
                conn,
                duration_ms,
                "disconnected: the peer accepted nothing before the write deadline"
            ),
        }
    }

    async fn serve(&mut self, mut rx: MailboxReceiver, token: Option<String>) -> End {
        let end = self.serve_until_end(&mut rx, token).await;
        // Free what was queued for this connection before lingering over the close.
        drop(rx);
        match end {
            End::Closed(code, reason) => self.close(code, reason).await,
            End::Stuck => {
                // Try to say why, briefly; a peer that reads nothing will not see it.
                let _ = tokio::time::timeout(CLOSE_LINGER, self.socket.close()).await;
            }
            End::PeerGone | End::WriteFailed => {}
        }
        end
    }

    async fn serve_until_end(&mut self, rx: &mut MailboxReceiver, token: Option<String>) -> End {
        // Boxed: sent once, the greeting's state would otherwise widen every idle connection's future.
        if let Err(end) = Box::pin(self.greet(token)).await {
            return end;
        }

        let config = &self.node.config;
        let (ping_every, timeout) = (config.ping_interval, config.ping_timeout);
        // One timer for the three times the session watches: the next ping, the heartbeat deadline
        // (`timeout` after the peer was last heard) and the account token's expiry. The loop wakes for
        // every delivery and polls what it waits on each time, so it waits on as little as it can.
        let mut next_ping = tokio::time::Instant::now() + ping_every;
        let expires = self.stops.expires;
        let first = self.next_timer(next_ping, timeout);
        let timer = sleep_until(first);
        tokio::pin!(timer);
        // Made once, not per event.
        let revoked = self.stops.revoked.clone();
        let stopped = revoked.cancelled();
        tokio::pin!(stopped);

        loop {
            let step = tokio::select! {
                () = &mut stopped => Err(self.stops.why_revoked()),
                inbound = self.socket.next() => self.on_inbound(inbound).await,
                item = rx.recv() => match item {
                    Some(item) => self.write_mailbox(item, rx).await,
                    None => Err(End::PeerGone),
                },
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if expires.is_some_and(|at| now >= at) {
                        Err(EXPIRED)
                    } else if Instant::now() >= self.last_heard + timeout {
                        // `select!` polls in random order: on a busy node the timer can come first
                        // while the peer's answer already waits unread. Read it before calling the
                        // peer silent.
                        match self.socket.next().now_or_never() {
                            Some(inbound) => self.on_inbound(inbound).await.map(|()| {
                                timer.as_mut().reset(self.next_timer(next_ping, timeout));
                            }),
                            None => Err(End::Closed(close::HEARTBEAT_TIMEOUT, "no answer to pings")),
                        }
                    } else {
                        let pinged = if now >= next_ping {
                            // As an interval that delays missed ticks: a ping every `ping_every` at most.
                            next_ping = now + ping_every;
                            self.ping().await
                        } else {
                            Ok(())
                        };
                        timer.as_mut().reset(self.next_timer(next_ping, timeout));
                        pinged
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// What the socket gave: a frame (handled), its end, or a read error.
    async fn on_inbound(&mut self, inbound: Option<Result<Message, WsError>>) -> Result<(), End> {
        match inbound {
            None => Err(End::PeerGone),
            Some(Ok(frame)) => {
                self.last_heard = Instant::now();
                // Boxed: handling a request (a join's replay above all) needs a large future, and
                // inline it would make every idle connection's task that large.
                Box::pin(self.on_frame(frame)).await
            }
            Some(Err(e)) => Err(read_error_end(&e)),
        }
    }

    /// The welcome (with `token`, a guest's for its next connection), the lobby, and an account's rooms.
    async fn greet(&mut self, token: Option<String>) -> Result<(), End> {
        let welcome = ServerMessage::Status {
            message: "Welcome to the chat!".into(),
            user: Some(self.user.clone()),
            token,
            protocol: Some(shared::PROTOCOL_VERSION),
            app: self.node.app_version.clone(),
        };
        self.send(&welcome).await?;
        self.subscribe(RoomId::lobby(), None);
        self.send_room_list().await
    }

    /// When the session's one timer is next due: the earliest of the next ping, the heartbeat deadline
    /// and the token's expiry.
    fn next_timer(
        &self,
        next_ping: tokio::time::Instant,
        timeout: Duration,
    ) -> tokio::time::Instant {
        let heard = tokio::time::Instant::from_std(self.last_heard + timeout);
        let soonest = next_ping.min(heard);
        self.stops.expires.map_or(soonest, |at| soonest.min(at))
    }

    /// Sends a close frame (with a deadline) and lingers briefly for the peer's reply, so the close frame
    /// is read before the TCP connection goes away (closing a socket with unread input resets it, and the
    /// peer would see 1006).
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from_static(reason),
        };
        let sent =
            tokio::time::timeout(CLOSE_LINGER, self.socket.send(Message::Close(Some(frame))));
        if !matches!(sent.await, Ok(Ok(()))) {
            return; // the peer is gone or reads nothing
        }
        if code == close::MESSAGE_TOO_BIG {
            // The rest of the oversized frame is still unread and must not be read into memory: just give
            // the peer a moment to read the close frame.
            tokio::time::sleep(CLOSE_LINGER / 4).await;
            return;
        }
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(frame)) = self.socket.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Takes `cost` from the frame budget; `Err` is how long to wait.
    fn take_frame_budget(&mut self, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        if self.frames.try_take_n(cost, now) {
            Ok(())
        } else {
            Err(self
                .frames
                .wait_for(cost, now)
                .max(Duration::from_millis(1)))
        }
    }

    /// Refuses a frame for the budget; a client that keeps sending regardless is closed.
    async fn rate_limited(
        &mut self,
        wait: Duration,
        id: Option<ClientMsgId>,
        room: Option<RoomId>,
    ) -> Result<(), End> {
        self.strikes += 1;
        let config = &self.node.config;
        let tolerance = (4 * config.rate_burst).max(100);
        if self.strikes > tolerance {
            return Err(End::Closed(
                close::RATE_LIMITED,
                "too many frames after rate_limited errors",
            ));
        }
        self.send(&ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message: "too many messages; send it again after retry_after_ms".into(),
            id,
            room,
            retry_after_ms: Some(wait.as_millis().max(1) as u64),
        })
        .await
    }

    /// Handles one inbound frame. `Err` ends the session.
    async fn on_frame(&mut self, frame: Message) -> Result<(), End> {
        self.node.metrics.frames_in.inc();
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                if let Err(wait) = self.take_frame_budget(1.0) {
                    return self.rate_limited(wait, None, None).await;
                }
                let refusal = ServerMessage::error(
                    ErrorCode::BinaryUnsupported,
                    "binary frames are not supported; send JSON text",
                );
                return self.send(&refusal).await;
            }
            Message::Close(_) => return Err(End::PeerGone),
            // Control frames cost nothing to answer (tungstenite queues one pong for many pings); a
            // raw `Frame` is only ever written, never read.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        let decoded = shared::decode_client(text.as_str());
        let cost = match &decoded {
            Ok(ClientMessage::Join { .. } | ClientMessage::History { .. }) => JOIN_COST,
            _ => 1.0,
        };
        if let Err(wait) = self.take_frame_budget(cost) {
            let (id, room) = match decoded {
                Ok(ClientMessage::Chat { id, room, .. }) => (id, Some(room.unwrap_or_default())),
                Ok(
                    ClientMessage::Join { room, .. }
                    | ClientMessage::Create { room, .. }
                    | ClientMessage::Leave { room }
                    | ClientMessage::Invite { room, .. }
                    | ClientMessage::Remove { room, .. }
                    | ClientMessage::History { room, .. }
                    | ClientMessage::Read { room, .. }
                    | ClientMessage::Typing { room },
                ) => (None, Some(room)),
                Ok(ClientMessage::Ping) => (None, None),
                Err(e) => (e.id, None),
            };
            return self.rate_limited(wait, id, room).await;
        }
        self.strikes = 0;
        let message = match decoded {
            Ok(m) => m,
            Err(e) => {
                return self
                    .send(&ServerMessage::refusal(e.code, e.message, e.id, None))
                    .await;
            }
        };
        match message {
            ClientMessage::Chat { text, room, id } => {
                let room = room.unwrap_or_default();
                self.chat(room, text, id).await
            }
            ClientMessage::Join { room, since } => {
                if !self.allowed(&room).await? {
                    return self.forbidden(room).await;
                }
                self.join(room, since).await
            }
            ClientMessage::Typing { room } => {
                self.typing(room).await;
                Ok(())
            }
            ClientMessage::Read { room, seq } => {
                if self.listed.as_ref().is_some_and(|l| l.contains(&room)) {
                    let history = &self.node.history;
                    if let Err(e) = history.mark_read(self.user.clone(), room, seq).await {
                        tracing::error!(conn = self.conn, error = %e, "storing a read mark failed");
                    }
                }
                Ok(())
            }
            ClientMessage::History { room, before } => {
                if !self.allowed(&room).await? {
                    return self.forbidden(room).await;
                }
                self.history(room, before).await
            }
            ClientMessage::Create { room, private } => {
                match self.node.access.create(&room, &self.user, private).await {
                    Ok(()) => {
                        tracing::info!(conn = self.conn, %room, private, "room created");
                        self.send(&ServerMessage::Created {
                            room: room.clone(),
                            private,
                        })
                        .await?;
                        self.join(room, None).await
                    }
                    Err(AccessError::Exists) => {
                        self.refuse(ErrorCode::RoomExists, "that room name is taken", room)
                            .await
                    }
                    Err(e) => self.unavailable(room, &e).await,
                }
            }
            ClientMessage::Invite { room, user } => {
                let Some(user) = self.account(&user).await? else {
                    return self
                        .refuse(ErrorCode::UnknownUser, "no account has that name", room)
                        .await;
                };
                match self.node.access.invite(&room, &self.user, &user).await {
                    Ok(()) => {
                        self.invited(&room, &user).await;
                        self.send(&ServerMessage::Invited { room, user }).await
                    }
                    Err(AccessError::Forbidden | AccessError::Exists) => {
                        self.refuse(
                            ErrorCode::Forbidden,
                            "only members of a private room can invite to it",
                            room,
                        )
                        .await
                    }
                    Err(e) => self.unavailable(room, &e).await,
                }
            }
            ClientMessage::Remove { room, user } => {
                let user = self.account(&user).await?.unwrap_or(user);
                match self.node.access.remove(&room, &self.user, &user).await {
                    Ok(()) => {
                        // Off their list too, so that their next connection does not ask for it.
                        self.store_listed(&user, &room, false).await;
                        self.send(&ServerMessage::Removed { room, user }).await
                    }
                    Err(AccessError::Forbidden | AccessError::Exists) => {
                        self.refuse(
                            ErrorCode::Forbidden,
                            "only the owner of a private room can remove members",
                            room,
                        )
                        .await
                    }
                    Err(e) => self.unavailable(room, &e).await,
                }
            }
            ClientMessage::Leave { room } => {
                if self.rooms.remove(&room).is_some() {
                    self.node.hub.leave(&room, self.conn);
                }
                self.list(&room, false).await;
                self.send(&ServerMessage::Left { room }).await
            }
            ClientMessage::Ping => self.send(&ServerMessage::Pong).await,
        }
    }

    /// A chat: checked here (room access, the user's and the address's budgets), then to the relay.
    async fn chat(
        &mut self,
        room: RoomId,
        text: shared::ChatText,
        id: Option<ClientMsgId>,
    ) -> Result<(), End> {
        if !self.allowed(&room).await? {
            let refusal = ServerMessage::refusal(
                ErrorCode::Forbidden,
                "this room is private",
                id,
                Some(room),
            );
            return self.send(&refusal).await;
        }
        let limits = &self.node.limits;
        let now = Instant::now();
        let address = client_key(self.addr);
        if let Err(wait) = limits.user_chats.take(&self.user, now) {
            self.frames.give_back(1.0);
            return self.rate_limited(wait, id, Some(room)).await;
        }
        if let Err(wait) = limits.address_chats.take(&address, now) {
            limits.user_chats.give_back(&self.user, 1.0, now);
            self.frames.give_back(1.0);
            return self.rate_limited(wait, id, Some(room)).await;
        }
        let request = AppendRequest {
            message: NewMessage {
                room,
                sender: self.user.clone(),
                text,
                client_id: id.clone(),
                origin: self.conn,
            },
            reply: self.mailbox.clone(),
            accepted: Instant::now(),
        };
        if self.node.relay.submit(request).await.is_err() {
            let refusal = ServerMessage::refusal(
                ErrorCode::Unavailable,
                "the server is shutting down; send it again",
                id,
                None,
            );
            return self.send(&refusal).await;
        }
        Ok(())
    }

    /// Whether this user may use `room` (a storage failure is said to the client and counts as no).
    async fn allowed(&mut self, room: &RoomId) -> Result<bool, End> {
        match self.node.access.allowed(room, &self.user).await {
            Ok(allowed) => Ok(allowed),
            Err(e) => {
                self.unavailable(room.clone(), &e).await?;
                Ok(false)
            }
        }
    }

    /// The account called `name` (in any case), as registered.
    async fn account(&mut self, name: &UserName) -> Result<Option<UserName>, End> {
        match self.node.accounts.find(name).await {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::error!(conn = self.conn, error = %e, "looking up an account failed");
                Ok(None)
            }
        }
    }

    async fn forbidden(&mut self, room: RoomId) -> Result<(), End> {
        self.refuse(ErrorCode::Forbidden, "this room is private", room)
            .await
    }

    async fn unavailable(
        &mut self,
        room: RoomId,
        error: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), End> {
        tracing::error!(conn = self.conn, %room, error = %error, "room request failed");
        self.refuse(ErrorCode::Unavailable, "try again later", room)
            .await
    }

    /// Sends an `error` about a refused request concerning `room`.
    async fn refuse(&mut self, code: ErrorCode, message: &str, room: RoomId) -> Result<(), End> {
        self.send(&ServerMessage::refusal(code, message, None, Some(room)))
            .await
    }

    fn subscribe(&mut self, room: RoomId, last_sent: Option<Seq>) {
        if !self.rooms.contains_key(&room) {
            self.node
                .hub
                .join(&room, self.conn, &self.user, &self.mailbox);
        }
        self.rooms.insert(room, last_sent);
    }

    /// Subscribes to `room`, replays what came after `since`, then says `joined`.
    async fn join(&mut self, room: RoomId, since: Option<Seq>) -> Result<(), End> {
        if !self.rooms.contains_key(&room) && self.rooms.len() >= MAX_ROOMS_PER_CONNECTION {
            let message =
                format!("a connection can be in at most {MAX_ROOMS_PER_CONNECTION} rooms");
            return self.refuse(ErrorCode::BadField, &message, room).await;
        }
        // Subscribe before reading, so nothing stored from now on is missed (see the module docs). Until
        // the replay sets it, deliveries are not filtered.
        self.subscribe(room.clone(), None);
        // The room may have become private between the check and the subscription; the change evicted
        // whoever was subscribed then, and this check catches whoever subscribed after.
        if !self.allowed(&room).await? {
            self.rooms.remove(&room);
            self.node.hub.leave(&room, self.conn);
            return self.forbidden(room).await;
        }
        let Some(since) = since else {
            return self.join_at_the_newest_page(room).await;
        };
        if let Some((frames, head)) = self.node.sequencer.replay(&room, since) {
            return self.replay_recent(room, frames, head).await;
        }
        let history = Arc::clone(&self.node.history);
        let limit = PageLimit {
            messages: REPLAY_PAGE,
            bytes: self.node.config.queue_bytes,
        };
        let mut cursor = since;
        let mut first_page = true;
        let head = loop {
            let page = match history.read_since(room.clone(), cursor, limit).await {
                Ok(page) => page,
                Err(e) => return self.join_failed(room, &e).await,
            };
            if first_page {
                first_page = false;
                // A client ahead of the server's head saw history this server no longer has; from here on
                // it gets everything after the head.
                cursor = cursor.min(page.head);
                if since < page.head && since + 1 < page.first_retained {
                    let notice = ServerMessage::refusal(
                        ErrorCode::HistoryTruncated,
                        format!(
                            "messages {}..{} of {room} are no longer kept; replaying from {}",
                            since + 1,
                            page.first_retained - 1,
                            page.first_retained
                        ),
                        None,
                        Some(room.clone()),
                    );
                    self.feed(&notice).await?;
                }
            }
            let Some(last) = page.messages.last().map(|m| m.seq) else {
                break page.head;
            };
            for stored in page.messages {
                self.feed(&stored.into_frame()).await?;
            }
            cursor = last;
            self.rooms.insert(room.clone(), Some(cursor));
            // One page at a time on the wire: the next is read only once this one is written.
            self.flush().await?;
            if cursor >= page.head {
                break page.head;
            }
        };
        self.joined(room, head.max(cursor)).await
    }

    /// A `join` without `since`: the room's newest page, then `joined`. The page is read in one go (it is
    /// bounded like a replay page); whatever is stored after it comes through the subscription.
    async fn join_at_the_newest_page(&mut self, room: RoomId) -> Result<(), End> {
        let limit = PageLimit {
            messages: shared::JOIN_PAGE,
            bytes: self.node.config.queue_bytes,
        };
        let recent = self
            .node
            .sequencer
            .newest(&room, limit.messages, limit.bytes);
        if let Some((frames, head)) = recent {
            return self.replay_recent(room, frames, head).await;
        }
        let page = match self
            .node
            .history
            .read_before(room.clone(), Seq::MAX, limit)
            .await
        {
            Ok(page) => page,
            Err(e) => return self.join_failed(room, &e).await,
        };
        for stored in page.messages {
            self.feed(&stored.into_frame()).await?;
        }
        self.joined(room, page.head).await
    }

    /// Ends a `join` with frames the node still held ([`crate::recent`]), as they were delivered: no read,
    /// no serialization; at most a page of them, flushed with `joined`.
    async fn replay_recent(
        &mut self,
        room: RoomId,
        frames: Vec<Arc<Published>>,
        head: Seq,
    ) -> Result<(), End> {
        self.node.metrics.frames_out.inc_by(frames.len() as u64);
        for published in frames {
            self.queue(Out::Shared(published)).await?;
        }
        self.joined(room, head).await
    }

    /// Tells `room`'s other users that this one is typing, on every node: only in a room this connection
    /// joined, and at most once a second per connection (clients send one every few seconds).
    async fn typing(&mut self, room: RoomId) {
        let now = Instant::now();
        if !self.rooms.contains_key(&room)
            || self
                .last_typing
                .is_some_and(|at| now.duration_since(at) < TYPING_FLOOR)
        {
            return;
        }
        self.last_typing = Some(now);
        let node = &self.node;
        node.hub
            .announce(&room, &Hub::typing_frame(&room, &self.user), &self.user);
        if let Some(broker) = &node.broker
            && let Err(e) = broker.typing(&room, &self.user).await
        {
            tracing::debug!(conn = self.conn, error = %e, "announcing typing to other nodes failed");
        }
    }

    /// Sends an account its list of rooms, always as the frame after the welcome. When the list cannot
    /// be read it is sent empty (logged): clients only add the rooms listed, never drop others.
    async fn send_room_list(&mut self) -> Result<(), End> {
        if self.listed.is_none() {
            return Ok(());
        }
        let rooms = match self.node.history.rooms_of(self.user.clone()).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(conn = self.conn, error = %e, "reading the user's rooms failed");
                Vec::new()
            }
        };
        self.listed = Some(rooms.iter().map(|r| r.room.clone()).collect());
        self.send(&ServerMessage::Rooms { rooms }).await
    }

    /// `user` was just invited to `room`: the room goes into their list, and their connections (on
    /// every node) send them the list again, so the room shows up for them at once.
    async fn invited(&mut self, room: &RoomId, user: &UserName) {
        if !self.store_listed(user, room, true).await {
            return;
        }
        self.node.sessions.relist(user);
        if let Some(broker) = &self.node.broker
            && let Err(e) = broker.relist(user).await
        {
            tracing::debug!(conn = self.conn, error = %e, "telling other nodes of an invitation failed");
        }
    }

    /// Puts `room` in an account's list (`keep`) or takes it off, when that changes the list.
    async fn list(&mut self, room: &RoomId, keep: bool) {
        let Some(listed) = &mut self.listed else {
            return;
        };
        let changed = if keep {
            listed.insert(room.clone())
        } else {
            listed.remove(room)
        };
        if changed {
            self.store_listed(&self.user, room, keep).await;
        }
    }

    /// Puts `room` in `user`'s stored list of rooms (`keep`) or takes it off; a failure is logged.
    /// Whether it was stored.
    async fn store_listed(&self, user: &UserName, room: &RoomId, keep: bool) -> bool {
        let stored = self
            .node
            .history
            .keep_room(user.clone(), room.clone(), keep)
            .await;
        if let Err(e) = &stored {
            tracing::error!(conn = self.conn, %room, %user, keep, error = %e, "updating a user's list of rooms failed");
        }
        stored.is_ok()
    }

    /// A `join` whose history could not be read: said to the client, which joins again later.
    async fn join_failed(&mut self, room: RoomId, error: &HistoryError) -> Result<(), End> {
        tracing::error!(conn = self.conn, %room, error = %error, "reading history failed");
        self.refuse(
            ErrorCode::Unavailable,
            "history is unavailable right now; join again later",
            room,
        )
        .await
    }

    /// Ends a `join`: deliveries up to `head` are duplicates of what was just replayed, from here on.
    async fn joined(&mut self, room: RoomId, head: Seq) -> Result<(), End> {
        self.list(&room, true).await;
        self.rooms.insert(room.clone(), Some(head));
        let node = &self.node;
        node.sequencer.joined(&room, head);
        node.hub.want_presence(&room, self.conn);
        let presence = crate::presence::for_joiner(&node.hub, node.broker.as_deref(), &room).await;
        self.send(&ServerMessage::Joined { room, head }).await?;
        self.node.metrics.frames_out.inc();
        self.queue(Out::Own(presence)).await?;
        self.flush().await
    }

    /// Sends a WebSocket Ping (its answer, a Pong, counts as hearing from the peer).
    async fn ping(&mut self) -> Result<(), End> {
        self.queue(Out::Ping).await?;
        self.flush().await
    }

    /// Answers a `history` request with the page of `room` before `before`.
    async fn history(&mut self, room: RoomId, before: Seq) -> Result<(), End> {
        let limit = PageLimit {
            messages: shared::HISTORY_PAGE,
            bytes: self.node.config.queue_bytes / 2,
        };
        let page = match self
            .node
            .history
            .read_before(room.clone(), before, limit)
            .await
        {
            Ok(page) => page,
            Err(e) => return self.unavailable(room, &e).await,
        };
        let more = page
            .messages
            .first()
            .is_some_and(|m| m.seq > page.first_retained);
        let messages = page
            .messages
            .into_iter()
            .map(StoredMessage::into_entry)
            .collect();
        self.send(&ServerMessage::History {
            room,
            before,
            messages,
            more,
        })
        .await
    }

    /// Writes a mailbox item and whatever else is already waiting, then flushes once.
    async fn write_mailbox(
        &mut self,
        first: Outbound,
        rx: &mut MailboxReceiver,
    ) -> Result<(), End> {
        let mut next = Some(first);
        let (mut taken, mut frames) = (0, 0);
        while let Some(item) = next.take() {
            // Boxed: rare, and inline its state would widen every idle connection's future.
            let wait = (self.write_now(item, &mut frames)?)
                .map(|pending| Box::pin(self.write_pending(pending)));
            if let Some(wait) = wait {
                wait.await?;
            }
            taken += 1;
            if taken < WRITE_BATCH {
                next = rx.try_recv();
            }
        }
        self.node.metrics.frames_out.inc_by(frames);
        self.flush().await
    }

    /// Writes a mailbox item if that needs no waiting (the usual case: a delivery, with room in the
    /// write buffer); what is left to do otherwise. Counts a frame it queues in `frames`.
    fn write_now(&mut self, item: Outbound, frames: &mut u64) -> Result<Option<Pending>, End> {
        let frame = match item {
            Outbound::Overflow => {
                return Err(End::Closed(
                    close::TRY_AGAIN_LATER,
                    "too slow: outgoing queue overflowed",
                ));
            }
            Outbound::Direct(text) => Out::Own(text),
            Outbound::Evicted(room) => {
                return Ok(self.rooms.remove(&room).map(|_| Pending::Left(room)));
            }
            Outbound::Relist => return Ok(Some(Pending::Relist)),
            Outbound::Delivery(published) => {
                let Some(last) = self.rooms.get_mut(&published.room) else {
                    return Ok(None); // left the room since it was queued
                };
                if last.is_some_and(|l| published.seq <= l) {
                    return Ok(None); // already written by a replay
                }
                *last = Some(published.seq);
                Out::Shared(published)
            }
        };
        *frames += 1;
        Ok(self.queue_now(frame)?.map(Pending::Queue))
    }

    /// Does what [`Session::write_now`] could not without waiting.
    async fn write_pending(&mut self, pending: Pending) -> Result<(), End> {
        match pending {
            Pending::Queue(out) => self.queue_when_ready(out).await,
            Pending::Left(room) => self.feed(&ServerMessage::Left { room }).await,
            Pending::Relist => self.send_room_list().await,
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.feed(message).await?;
        self.flush().await
    }

    async fn feed(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.count(message);
        self.queue(Out::Own(message.to_json().into())).await
    }

    /// Counts a frame this session writes itself (mailbox batches are counted per batch).
    fn count(&self, message: &ServerMessage) {
        let metrics = &self.node.metrics;
        metrics.frames_out.inc();
        if let ServerMessage::Error { code, .. } = message {
            metrics.error(*code);
        }
    }

    /// Queues `out` in the connection's write buffer. Only a full buffer waits, under the write deadline
    /// ([`guarded`]): the usual write, with room in the buffer, arms no timer and registers no waiter.
    async fn queue(&mut self, out: Out) -> Result<(), End> {
        if let Some(out) = self.queue_now(out)? {
            // The buffer is full. Boxed: the wait's state would otherwise widen every idle connection's
            // future, and a write waits only when the peer reads slowly.
            Box::pin(self.queue_when_ready(out)).await?;
        }
        Ok(())
    }

    /// Queues `out` if the write buffer has room now; gives it back if not.
    fn queue_now(&mut self, out: Out) -> Result<Option<Out>, End> {
        match Self::poll_room(&mut self.socket, &mut Context::from_waker(Waker::noop())) {
            Poll::Pending => Ok(Some(out)),
            Poll::Ready(Err(_)) => Err(End::WriteFailed),
            Poll::Ready(Ok(())) => {
                self.push(out);
                Ok(None)
            }
        }
    }

    /// Queues `out` once the write buffer has room, under the write deadline.
    async fn queue_when_ready(&mut self, out: Out) -> Result<(), End> {
        self.wait_for(Self::poll_room).await?;
        self.push(out);
        Ok(())
    }

    /// Copies `out`'s frame into the write buffer.
    fn push(&mut self, out: Out) {
        match out {
            Out::Shared(published) => self.socket.push_frame(&published.frame),
            Out::Own(text) => self.socket.push_text(text.as_str().as_bytes()),
            Out::Ping => self.socket.push_ping(),
        }
    }

    /// Writes out the write buffer: at once when the socket takes it all, else under the write deadline.
    async fn flush(&mut self) -> Result<(), End> {
        let flushed = Self::poll_flush(&mut self.socket, &mut Context::from_waker(Waker::noop()));
        match flushed {
            Poll::Ready(done) => done.map_err(|_| End::WriteFailed),
            // Boxed, as in `queue`.
            Poll::Pending => Box::pin(self.wait_for(Self::poll_flush)).await,
        }
    }

    /// Ready once a frame may be queued: the buffer has room (else it is written out first), and a
    /// frame tungstenite was refused by a full buffer through `start_send` (the close frame) has gone
    /// in before it. A pong tungstenite holds because the buffer was full when it read a ping goes in
    /// whole at its next write, after frames queued meanwhile: control frames may come between
    /// messages.
    fn poll_room(socket: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(socket.poll_ready_unpin(cx))?;
        if socket.has_room() {
            Poll::Ready(Ok(()))
        } else {
            socket.poll_flush_unpin(cx)
        }
    }

    fn poll_flush(socket: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        socket.poll_flush_unpin(cx)
    }

    /// Drives `step` on the socket until it is done, under the write deadline ([`guarded`]).
    async fn wait_for(
        &mut self,
        mut step: impl FnMut(&mut S, &mut Context<'_>) -> Poll<Result<(), WsError>>,
    ) -> Result<(), End> {
        let socket = &mut self.socket;
        let until_done = std::future::poll_fn(|cx| step(socket, cx));
        guarded(until_done, &self.stops, self.write_deadline).await
    }
}

/// How to end a session whose read failed: with the close code that names the peer's fault, or
/// quietly when the connection is simply gone.
fn read_error_end(error: &WsError) -> End {
    match error {
        WsError::Capacity(_) => End::Closed(close::MESSAGE_TOO_BIG, "message too big"),
        WsError::Utf8(_) => End::Closed(close::INVALID_PAYLOAD, "text frames must be UTF-8"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::PeerGone,
        WsError::Protocol(_) => End::Closed(close::PROTOCOL_ERROR, "WebSocket protocol error"),
        _ => End::PeerGone,
    }
}
