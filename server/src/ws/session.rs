//! One WebSocket connection, from welcome to close.
//!
//! A session is a single task that owns its socket and selects over four things:
//! - inbound frames: decoded once ([`shared::decode_client`]); `chat` goes to the [`crate::relay`], `join`
//!   replays history and subscribes, `leave` unsubscribes, `ping` gets `pong`, anything invalid gets an
//!   `error` and changes nothing;
//! - its [`crate::mailbox`]: room deliveries and acks, written in batches with one flush;
//! - heartbeats: a WebSocket Ping every `ping_interval`; a peer silent for `ping_timeout` is closed (4000);
//! - the node's shutdown signal: close with 1001.
//!
//! **Recovery without gaps or duplicates.** On `join {room, since}` the session subscribes to the room
//! *first*, then replays history after `since` page by page straight to the socket, remembering the last
//! `seq` it wrote for the room. Live deliveries that arrived meanwhile wait in the mailbox; when the
//! session reads them, any with a `seq` it already wrote is dropped. Anything stored before the
//! subscription is in the replay, anything stored after it is in the mailbox, and the overlap is removed.
//!
//! The session is generic over the socket (any `Stream` + `Sink` of axum WebSocket messages), so its logic
//! does not depend on a real network connection.

use crate::limits::TokenBucket;
use crate::{
    history::NewMessage,
    hub::ConnId,
    mailbox::{Mailbox, MailboxReceiver, Outbound, mailbox},
    node::Node,
    relay::AppendRequest,
};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shared::{
    ClientMessage, ClientMsgId, ErrorCode, RoomId, Seq, ServerMessage, Timestamp, UserName, close,
};
use std::{collections::HashMap, net::SocketAddr, time::Instant};
use tokio::time::{MissedTickBehavior, interval_at, sleep_until};

/// Messages read from history per page of a replay.
const REPLAY_PAGE: usize = 256;
/// Rooms one connection may be in at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 100;
/// How long a closing session waits for the peer's close reply.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Mailbox items written before one flush.
const WRITE_BATCH: usize = 64;

/// Who is on the other end.
#[derive(Debug)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// The name this connection speaks as.
    pub user: UserName,
    /// A guest token for the next connection (sent in the welcome); accounts have their own.
    pub token: Option<String>,
    /// When the account token expires: the session is closed with 4501 then.
    pub expires_at: Option<Timestamp>,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The peer closed or vanished.
    PeerGone,
    /// We closed with this code.
    Closed(u16, &'static str),
    /// Writing failed.
    WriteFailed,
}

struct Session<S> {
    socket: S,
    node: Node,
    conn: ConnId,
    user: UserName,
    mailbox: Mailbox,
    /// Joined rooms and the last `seq` written to the socket for each (`None`: nothing yet, deliver all).
    rooms: HashMap<RoomId, Option<Seq>>,
    last_heard: Instant,
    /// This connection's message rate.
    rate: TokenBucket,
}

/// Serves one upgraded connection until it closes.
pub async fn run<S>(socket: S, node: Node, peer: Peer)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let conn = node.next_conn_id();
    let (mailbox, rx) = mailbox(node.config.queue_bytes);
    let started = Instant::now();
    tracing::info!(conn, user = %peer.user, peer = %peer.addr, "connected");
    let rate = TokenBucket::new(node.config.rate_limit, node.config.rate_burst);
    let mut session = Session {
        socket,
        node,
        conn,
        user: peer.user,
        mailbox,
        rooms: HashMap::new(),
        last_heard: Instant::now(),
        rate,
    };
    let end = session.serve(rx, peer.token, peer.expires_at).await;
    for room in session.rooms.keys() {
        session.node.hub.leave(room, conn);
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    match end {
        End::PeerGone => tracing::info!(conn, duration_ms, "disconnected"),
        End::Closed(code, why) => tracing::info!(conn, duration_ms, code, why, "disconnected"),
        End::WriteFailed => tracing::info!(conn, duration_ms, "disconnected: write failed"),
    }
}

impl<S> Session<S>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    async fn serve(
        &mut self,
        mut rx: MailboxReceiver,
        token: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> End {
        let welcome = ServerMessage::Status {
            message: "Welcome to the chat!".into(),
            user: Some(self.user.clone()),
            token,
        };
        if self.send(&welcome).await.is_err() {
            return End::WriteFailed;
        }
        self.subscribe(RoomId::lobby(), None);

        let config = &self.node.config;
        let (ping_every, timeout) = (config.ping_interval, config.ping_timeout);
        let mut ping = interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = sleep_until(tokio::time::Instant::from_std(self.last_heard + timeout));
        tokio::pin!(deadline);
        let shutdown = self.node.shutdown.clone();
        let expiry = async move {
            match expires_at {
                Some(at) => {
                    let ms = at.unix_ms().saturating_sub(crate::now().unix_ms()).max(0) as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);

        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => Err(End::Closed(close::GOING_AWAY, "server shutting down")),
                _ = &mut expiry => Err(End::Closed(close::UNAUTHORIZED, "session expired: sign in again")),
                inbound = self.socket.next() => match inbound {
                    None => Err(End::PeerGone),
                    Some(Ok(frame)) => {
                        self.last_heard = Instant::now();
                        self.on_frame(frame).await
                    }
                    Some(Err(e)) => Err(read_error_end(&e)),
                },
                item = rx.recv() => match item {
                    Some(item) => self.write_mailbox(item, &mut rx).await,
                    None => Err(End::PeerGone),
                },
                _ = ping.tick() => self.write(Message::Ping(Default::default()), true).await,
                _ = &mut deadline => {
                    let due = self.last_heard + timeout;
                    if Instant::now() >= due {
                        Err(End::Closed(close::HEARTBEAT_TIMEOUT, "no answer to pings"))
                    } else {
                        deadline.as_mut().reset(tokio::time::Instant::from_std(due));
                        Ok(())
                    }
                }
            };
            if let Err(end) = step {
                if let End::Closed(code, reason) = end {
                    self.close(code, reason).await;
                }
                return end;
            }
        }
    }

    /// Sends a close frame and lingers briefly for the peer's reply, so the close frame is read before the
    /// TCP connection goes away (closing a socket with unread input resets it, and the peer would see 1006).
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // Best effort: the peer may already be gone.
        if self.socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
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

    /// Handles one inbound frame. `Err` ends the session.
    async fn on_frame(&mut self, frame: Message) -> Result<(), End> {
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let refusal = ServerMessage::error(
                    ErrorCode::BinaryUnsupported,
                    "binary frames are not supported; send JSON text",
                );
                return self.send(&refusal).await;
            }
            Message::Close(_) => return Err(End::PeerGone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let message = match shared::decode_client(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                let refusal = ServerMessage::Error {
                    code: e.code,
                    message: e.message,
                    id: e.id,
                    room: None,
                };
                return self.send(&refusal).await;
            }
        };
        match message {
            ClientMessage::Chat { text, room, id } => {
                let room = room.unwrap_or_default();
                if !self.node.access.allowed(&room, &self.user) {
                    return self
                        .refuse(ErrorCode::Forbidden, "this room is private", id, Some(room))
                        .await;
                }
                if !self.within_rate() {
                    return self
                        .refuse(
                            ErrorCode::RateLimited,
                            "too many messages; send it again later",
                            id,
                            Some(room),
                        )
                        .await;
                }
                let request = AppendRequest {
                    message: NewMessage {
                        room,
                        sender: self.user.clone(),
                        text,
                        client_id: id.clone(),
                    },
                    origin: self.conn,
                    reply: self.mailbox.clone(),
                };
                if self.node.relay.submit(request).await.is_err() {
                    let refusal = ServerMessage::Error {
                        code: ErrorCode::Unavailable,
                        message: "the server is shutting down; send it again".into(),
                        id,
                        room: None,
                    };
                    return self.send(&refusal).await;
                }
                Ok(())
            }
            ClientMessage::Join {
                room,
                since,
                private,
            } => {
                if private && !self.node.access.is_private(&room) {
                    if let Err(refusal) = self.create_private(&room).await {
                        return self.send(&refusal).await;
                    }
                } else if !self.node.access.allowed(&room, &self.user) {
                    return self
                        .refuse(
                            ErrorCode::Forbidden,
                            "this room is private",
                            None,
                            Some(room),
                        )
                        .await;
                }
                self.join(room, since).await
            }
            ClientMessage::Invite { room, user } => {
                match self.node.access.invite(&room, &self.user, &user).await {
                    Ok(()) => self.send(&ServerMessage::Invited { room, user }).await,
                    Err(crate::access::AccessError::Forbidden) => {
                        self.refuse(
                            ErrorCode::Forbidden,
                            "only members of a private room can invite to it",
                            None,
                            Some(room),
                        )
                        .await
                    }
                    Err(e) => {
                        tracing::error!(conn = self.conn, error = %e, "invite failed");
                        self.refuse(
                            ErrorCode::Unavailable,
                            "the invitation could not be stored; try again",
                            None,
                            Some(room),
                        )
                        .await
                    }
                }
            }
            ClientMessage::Leave { room } => {
                if self.rooms.remove(&room).is_some() {
                    self.node.hub.leave(&room, self.conn);
                }
                self.send(&ServerMessage::Left { room }).await
            }
            ClientMessage::Ping => self.send(&ServerMessage::Pong).await,
        }
    }

    /// Takes a message's worth from this connection's and this user's rate buckets, or from neither.
    fn within_rate(&mut self) -> bool {
        let now = Instant::now();
        if !self.rate.try_take(now) {
            return false;
        }
        if !self.node.user_rates.try_take(&self.user, now) {
            self.rate.give_back();
            return false;
        }
        true
    }

    /// Sends an `error` about a refused request.
    async fn refuse(
        &mut self,
        code: ErrorCode,
        message: &str,
        id: Option<ClientMsgId>,
        room: Option<RoomId>,
    ) -> Result<(), End> {
        self.send(&ServerMessage::Error {
            code,
            message: message.into(),
            id,
            room,
        })
        .await
    }

    /// Makes `room` private with this user as its only member, if it is new: no history, nobody in it.
    async fn create_private(&mut self, room: &RoomId) -> Result<(), ServerMessage> {
        let refusal = |code, message: &str| ServerMessage::Error {
            code,
            message: message.into(),
            id: None,
            room: Some(room.clone()),
        };
        let head = match self.node.history.read_since(room.clone(), 0, 0).await {
            Ok(page) => page.head,
            Err(e) => {
                tracing::error!(conn = self.conn, error = %e, "reading history failed");
                return Err(refusal(ErrorCode::Unavailable, "try again later"));
            }
        };
        if head > 0 || self.node.hub.member_count(room) > 0 {
            return Err(refusal(
                ErrorCode::Forbidden,
                "only a new room can be made private; this one is public",
            ));
        }
        self.node
            .access
            .create_private(room, &self.user)
            .await
            .map_err(|e| {
                tracing::error!(conn = self.conn, error = %e, "creating a private room failed");
                refusal(ErrorCode::Unavailable, "try again later")
            })
    }

    fn subscribe(&mut self, room: RoomId, last_sent: Option<Seq>) {
        if !self.rooms.contains_key(&room) {
            self.node.hub.join(&room, self.conn, &self.mailbox);
        }
        self.rooms.insert(room, last_sent);
    }

    /// Subscribes to `room`, replays what came after `since`, then says `joined`.
    async fn join(&mut self, room: RoomId, since: Option<Seq>) -> Result<(), End> {
        if !self.rooms.contains_key(&room) && self.rooms.len() >= MAX_ROOMS_PER_CONNECTION {
            let refusal = ServerMessage::Error {
                code: ErrorCode::BadField,
                message: format!("a connection can be in at most {MAX_ROOMS_PER_CONNECTION} rooms"),
                id: None,
                room: Some(room),
            };
            return self.send(&refusal).await;
        }
        // Subscribe before reading, so nothing stored from now on is missed (see the module docs). Until
        // the replay sets it, deliveries are not filtered.
        self.subscribe(room.clone(), None);
        let history = std::sync::Arc::clone(&self.node.history);
        let mut cursor = since.unwrap_or(0);
        let mut head;
        let mut first_page = true;
        loop {
            let limit = if since.is_some() { REPLAY_PAGE } else { 0 };
            let page = match history.read_since(room.clone(), cursor, limit).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(conn = self.conn, %room, error = %e, "reading history failed");
                    let refusal = ServerMessage::Error {
                        code: ErrorCode::Unavailable,
                        message: "history is unavailable right now; join again later".into(),
                        id: None,
                        room: Some(room),
                    };
                    return self.send(&refusal).await;
                }
            };
            head = page.head;
            let Some(since) = since else { break };
            if first_page {
                first_page = false;
                // A client ahead of the server's head saw history this server no longer has; from here on
                // it gets everything after the head.
                cursor = cursor.min(head);
                if since < head && since + 1 < page.first_retained {
                    let notice = ServerMessage::Error {
                        code: ErrorCode::HistoryTruncated,
                        message: format!(
                            "messages {}..{} of {room} are no longer kept; replaying from {}",
                            since + 1,
                            page.first_retained - 1,
                            page.first_retained
                        ),
                        id: None,
                        room: Some(room.clone()),
                    };
                    self.feed(&notice).await?;
                }
            }
            let full = page.messages.len() == REPLAY_PAGE;
            for stored in page.messages {
                cursor = stored.seq;
                self.feed(&stored.into_frame()).await?;
            }
            self.rooms.insert(room.clone(), Some(cursor));
            if !full {
                break;
            }
        }
        self.send(&ServerMessage::Joined {
            room,
            head: head.max(cursor),
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
        let mut written = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Overflow => {
                    return Err(End::Closed(
                        close::TRY_AGAIN_LATER,
                        "too slow: outgoing queue overflowed",
                    ));
                }
                Outbound::Direct(frame) => self.write(Message::Text(frame), false).await?,
                Outbound::Delivery(published) => {
                    let Some(last) = self.rooms.get_mut(&published.room) else {
                        continue; // left the room since it was queued
                    };
                    if last.is_some_and(|l| published.seq <= l) {
                        continue; // already written by a replay
                    }
                    *last = Some(published.seq);
                    self.write(Message::Text(published.frame.clone()), false)
                        .await?;
                }
            }
            written += 1;
            if written < WRITE_BATCH {
                next = rx.try_recv();
            }
        }
        self.socket.flush().await.map_err(|_| End::WriteFailed)
    }

    async fn send(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.write(Message::Text(message.to_json().into()), true)
            .await
    }

    async fn feed(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.write(Message::Text(message.to_json().into()), false)
            .await
    }

    async fn write(&mut self, message: Message, flush: bool) -> Result<(), End> {
        let result = if flush {
            self.socket.send(message).await
        } else {
            self.socket.feed(message).await
        };
        result.map_err(|_| End::WriteFailed)
    }
}

/// How to end a session whose read failed: with the close code that names the peer's fault, or
/// quietly when the connection is simply gone.
fn read_error_end(error: &axum::Error) -> End {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        match e.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => {
                return End::Closed(close::MESSAGE_TOO_BIG, "message too big");
            }
            Some(tungstenite::Error::Utf8(_)) => {
                return End::Closed(close::INVALID_PAYLOAD, "text frames must be UTF-8");
            }
            Some(tungstenite::Error::Protocol(_)) => {
                return End::Closed(close::PROTOCOL_ERROR, "WebSocket protocol error");
            }
            _ => source = e.source(),
        }
    }
    End::PeerGone
}
