//! The messages themselves. Unknown fields are ignored in both directions, so either side can add fields
//! without breaking the other; optional fields are left out when absent.

use crate::{ChatText, ClientMsgId, RoomId, Seq, Timestamp, UserName};
use serde::{Deserialize, Serialize};

/// A frame the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Post `text` to `room` (default `lobby`), e.g. `{"type":"chat","text":"hi","room":"lobby","id":"k1"}`.
    ///
    /// With an `id`, the server answers [`ServerMessage::Ack`] once the message is durably stored, and a
    /// repeated `id` from the same user in the same room is acknowledged again with the original `seq` but not
    /// stored or relayed twice. Any `timestamp` the client adds is ignored: the server assigns time.
    Chat {
        /// What to say.
        text: ChatText,
        /// Where to say it; `lobby` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        /// The client's id for this message, for acknowledgement and deduplication. Any id works; ids
        /// that grow with time (the web client's start with the time in milliseconds) are the cheapest
        /// for the server to store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Subscribe to `room`, e.g. `{"type":"join","room":"dev","since":41}`.
    ///
    /// The server first replays every stored message with `seq > since` in order, then sends
    /// [`ServerMessage::Joined`], then live messages follow with no gap and no duplicate. Without `since`
    /// it replays the room's newest [`JOIN_PAGE`] messages (older ones come with [`Self::History`]).
    /// Joining a room already joined replays again. A public room needs
    /// no creating: joining it is enough. `join` never creates a private room (see [`Self::Create`]); a
    /// private room answers `forbidden` to everyone but its members.
    Join {
        /// The room to join.
        room: RoomId,
        /// The last `seq` this client has seen in the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Seq>,
    },
    /// Create `room` and join it, e.g. `{"type":"create","room":"team","private":true}`.
    ///
    /// Answered by [`ServerMessage::Created`] then [`ServerMessage::Joined`], or by an `error` with code
    /// [`ErrorCode::RoomExists`] when the name is taken (the room has history, members online, or was
    /// created before). A private room's creator is its owner and only member; members add others with
    /// [`Self::Invite`], the owner removes them with [`Self::Remove`].
    Create {
        /// The new room's name.
        room: RoomId,
        /// Only members may join, read or post in a private room.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
    },
    /// Stop receiving `room`'s messages, e.g. `{"type":"leave","room":"dev"}`.
    Leave {
        /// The room to leave.
        room: RoomId,
    },
    /// Add `user` to the private `room`; only a member may invite, and only an existing account:
    /// `{"type":"invite","room":"team","user":"bob"}` (answered by [`ServerMessage::Invited`], or an
    /// `error` with [`ErrorCode::Forbidden`] or [`ErrorCode::UnknownUser`]). The room goes into the
    /// invited user's list, which each of their connections is sent again ([`ServerMessage::Rooms`]).
    Invite {
        /// The private room.
        room: RoomId,
        /// Who to add.
        user: UserName,
    },
    /// Remove `user` from the private `room`; only its owner may: `{"type":"remove","room":"team","user":"bob"}`.
    /// The removed user's connections stop receiving the room at once (each gets
    /// [`ServerMessage::Left`]); the owner gets [`ServerMessage::Removed`].
    Remove {
        /// The private room.
        room: RoomId,
        /// Who to remove.
        user: UserName,
    },
    /// Ask for the page of `room`'s history just before `before` (older messages, for scrolling back):
    /// `{"type":"history","room":"dev","before":951}`, answered by [`ServerMessage::History`] with at most
    /// [`HISTORY_PAGE`] messages. Needs the same access as a `join`; nothing is subscribed.
    History {
        /// The room.
        room: RoomId,
        /// Only messages with a smaller `seq`.
        before: Seq,
    },
    /// The user is typing in `room` (a room this connection joined): `{"type":"typing","room":"dev"}`.
    /// The server tells the room's other users ([`ServerMessage::Typing`]); never stored. Clients send it
    /// at most every [`TYPING_EVERY_MS`] while the user types; the server drops notices closer together
    /// than a second.
    Typing {
        /// The room.
        room: RoomId,
    },
    /// The user has seen `room` up to `seq`: `{"type":"read","room":"dev","seq":42}`. For accounts the
    /// server keeps the highest such `seq` per room (see [`ServerMessage::Rooms`]); no answer.
    Read {
        /// The room.
        room: RoomId,
        /// The newest `seq` seen.
        seq: Seq,
    },
    /// An application-level heartbeat (browsers cannot see WebSocket pings): the server answers
    /// [`ServerMessage::Pong`] at once.
    Ping,
}

/// One of a user's rooms in [`ServerMessage::Rooms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room.
    pub room: RoomId,
    /// The newest `seq` the user has read there (see [`ClientMessage::Read`]).
    pub last_read: Seq,
    /// The room's newest `seq`; `head - last_read` messages are unread.
    pub head: Seq,
    /// Only members may use it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// How often a client sends [`ClientMessage::Typing`] while its user keeps typing.
pub const TYPING_EVERY_MS: u32 = 3_000;

/// The most names a [`ServerMessage::Presence`] lists.
pub const PRESENCE_NAMES: usize = 50;

/// How many of a room's newest messages a `join` without `since` replays.
pub const JOIN_PAGE: usize = 50;

/// The most messages one [`ServerMessage::History`] page holds (a page is bounded in bytes too).
pub const HISTORY_PAGE: usize = 50;

/// One stored message in a [`ServerMessage::History`] page: a `chat` frame without its room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its position in the room.
    pub seq: Seq,
    /// Who said it.
    pub sender: UserName,
    /// What was said.
    pub text: ChatText,
    /// When the server stored it.
    pub timestamp: Timestamp,
    /// The sender's client id, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientMsgId>,
}

/// A frame the server sends.
///
/// Read through `ServerFrame`, one flat set of optional fields, instead of serde's derive for an
/// internally tagged enum: the same JSON is accepted, for a fifth of the code in the browser's wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "ServerFrame")]
pub enum ServerMessage {
    /// Sent once, first, on every connection:
    /// `{"type":"status","message":"Welcome to the chat!","user":"guest-1a2b","token":"..."}`.
    Status {
        /// Human-readable text.
        message: String,
        /// The name this connection speaks as; every `chat` it sends is relayed with this `sender`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserName>,
        /// A token that identifies this user on the next connection (`GET /ws?token=...`), so that a
        /// reconnecting guest keeps its name and its message ids keep deduplicating.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The protocol version the server speaks ([`crate::PROTOCOL_VERSION`]); absent from servers
        /// older than version 2. During a rolling deploy, nodes of two adjacent versions serve side by
        /// side: a client that sees a version newer than its own can offer a reload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// Which build of the web app the server serves (opaque; absent without one). A page that saw
        /// another value in an earlier welcome is older than the app now deployed: it offers a reload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
    },
    /// A stored chat message, relayed to every connection in `room` except the one that sent it, and
    /// replayed after a `join` with `since`:
    /// `{"type":"chat","sender":"ann","text":"hi","timestamp":"2026-11-25T10:40:31.123Z","room":"lobby","seq":7}`.
    Chat {
        /// Who said it, as authenticated by the server.
        sender: UserName,
        /// What was said.
        text: ChatText,
        /// When the server stored it.
        timestamp: Timestamp,
        /// The room it belongs to.
        room: RoomId,
        /// Its position in the room.
        seq: Seq,
        /// The sender's client id, if it gave one (lets the sender's other tabs recognise their own messages).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// The message with client id `id` is durably stored as `seq` in `room`. Sent to the sender only.
    Ack {
        /// The client id the sender gave.
        id: ClientMsgId,
        /// The room the message is stored in.
        room: RoomId,
        /// Its position in the room.
        seq: Seq,
    },
    /// The end of a `join`'s replay: from here on, the room's messages arrive live. `head` is the room's
    /// newest `seq` when the join happened; a client whose last seen `seq` is above it is looking at history
    /// the server no longer has and should forget it.
    Joined {
        /// The room joined.
        room: RoomId,
        /// The room's newest `seq` at the join.
        head: Seq,
    },
    /// `user` is now a member of the private `room` (the answer to an `invite`).
    Invited {
        /// The room.
        room: RoomId,
        /// The new member.
        user: UserName,
    },
    /// `user` is no longer a member of the private `room` (the answer to a `remove`).
    Removed {
        /// The room.
        room: RoomId,
        /// The removed member.
        user: UserName,
    },
    /// `room` was created (the answer to a `create`); a [`ServerMessage::Joined`] follows.
    Created {
        /// The new room.
        room: RoomId,
        /// Whether only members may use it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
    },
    /// The connection no longer receives `room`: the answer to a `leave`, or sent unasked when this user
    /// was removed from a private room.
    Left {
        /// The room left.
        room: RoomId,
    },
    /// Something the client sent was refused, or a `join` could not replay everything asked for. The
    /// connection stays open: `{"type":"error","code":"unknown_type","message":"..."}`.
    Error {
        /// A stable, machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail; wording may change.
        message: String,
        /// The client id of the chat message concerned, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
        /// The room concerned, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        /// With [`ErrorCode::RateLimited`]: how long to wait before sending again, in milliseconds. A
        /// client that keeps sending without waiting is closed with [`crate::close::RATE_LIMITED`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The answer to [`ClientMessage::History`]: the newest messages of `room` with `seq < before`, oldest
    /// first, e.g. `{"type":"history","room":"dev","before":951,"messages":[...],"more":true}`.
    History {
        /// The room.
        room: RoomId,
        /// The `before` asked for.
        before: Seq,
        /// The page, in `seq` order (empty when nothing older is kept).
        messages: Vec<HistoryEntry>,
        /// Whether older messages than the first of this page are still kept.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// `user` is typing in `room`: show it for `expires_ms` unless another notice (or a message from
    /// `user`) comes first, e.g. `{"type":"typing","room":"dev","user":"ann","expires_ms":5000}`.
    /// Ephemeral: no `seq`, never stored or replayed, not sent to the typing user's own connections.
    Typing {
        /// The room.
        room: RoomId,
        /// Who is typing.
        user: UserName,
        /// How long the notice holds, in milliseconds (decided by the server).
        expires_ms: u32,
    },
    /// Who is in `room` now (distinct users: two tabs of one user count once), e.g.
    /// `{"type":"presence","room":"dev","count":2,"users":["ann","bob"]}`. Sent after `joined` and then
    /// whenever a user arrives or leaves, at most once a second per room; `users` names at most
    /// [`PRESENCE_NAMES`] of them, so a big room sends a count, not a crowd. Ephemeral: never stored.
    /// Only connections that joined the room with `join` get it.
    Presence {
        /// The room.
        room: RoomId,
        /// How many users are there.
        count: u32,
        /// Who (the first [`PRESENCE_NAMES`] of them).
        users: Vec<UserName>,
    },
    /// Sent to an account after the welcome, and again to each of its connections when it is invited to
    /// a private room: the rooms it joined (with `join`, on any device, until it sent `leave`) or was
    /// invited to, with what it has read of each, e.g.
    /// `{"type":"rooms","rooms":[{"room":"dev","last_read":40,"head":42}]}`.
    Rooms {
        /// The user's rooms, by name.
        rooms: Vec<RoomSummary>,
    },
    /// The answer to [`ClientMessage::Ping`].
    Pong,
}

/// The `type` of a [`ServerMessage`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ServerKind {
    Status,
    Chat,
    Ack,
    Joined,
    Invited,
    Removed,
    Created,
    Left,
    Error,
    History,
    Rooms,
    Typing,
    Presence,
    Pong,
}

/// Every field any [`ServerMessage`] has, each optional; [`ServerMessage::try_from`] checks that the
/// ones its `type` requires are there. Fields of other types are ignored, like unknown fields.
#[derive(Deserialize)]
struct ServerFrame {
    #[serde(rename = "type")]
    kind: ServerKind,
    message: Option<String>,
    user: Option<UserName>,
    token: Option<String>,
    protocol: Option<u32>,
    app: Option<String>,
    sender: Option<UserName>,
    text: Option<ChatText>,
    timestamp: Option<Timestamp>,
    room: Option<RoomId>,
    seq: Option<Seq>,
    id: Option<ClientMsgId>,
    head: Option<Seq>,
    private: Option<bool>,
    code: Option<ErrorCode>,
    retry_after_ms: Option<u64>,
    before: Option<Seq>,
    messages: Option<Vec<HistoryEntry>>,
    more: Option<bool>,
    rooms: Option<Vec<RoomSummary>>,
    expires_ms: Option<u32>,
    count: Option<u32>,
    users: Option<Vec<UserName>>,
}

/// A field the frame's `type` requires is absent.
#[derive(Debug)]
struct MissingField(&'static str);

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing field `{}`", self.0)
    }
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, MissingField> {
    value.ok_or(MissingField(name))
}

impl TryFrom<ServerFrame> for ServerMessage {
    type Error = MissingField;

    fn try_from(f: ServerFrame) -> Result<Self, MissingField> {
        Ok(match f.kind {
            ServerKind::Status => Self::Status {
                message: required(f.message, "message")?,
                user: f.user,
                token: f.token,
                protocol: f.protocol,
                app: f.app,
            },
            ServerKind::Chat => Self::Chat {
                sender: required(f.sender, "sender")?,
                text: required(f.text, "text")?,
                timestamp: required(f.timestamp, "timestamp")?,
                room: required(f.room, "room")?,
                seq: required(f.seq, "seq")?,
                id: f.id,
            },
            ServerKind::Ack => Self::Ack {
                id: required(f.id, "id")?,
                room: required(f.room, "room")?,
                seq: required(f.seq, "seq")?,
            },
            ServerKind::Joined => Self::Joined {
                room: required(f.room, "room")?,
                head: required(f.head, "head")?,
            },
            ServerKind::Invited => Self::Invited {
                room: required(f.room, "room")?,
                user: required(f.user, "user")?,
            },
            ServerKind::Removed => Self::Removed {
                room: required(f.room, "room")?,
                user: required(f.user, "user")?,
            },
            ServerKind::Created => Self::Created {
                room: required(f.room, "room")?,
                private: f.private.unwrap_or(false),
            },
            ServerKind::Left => Self::Left {
                room: required(f.room, "room")?,
            },
            ServerKind::Error => Self::Error {
                code: required(f.code, "code")?,
                message: required(f.message, "message")?,
                id: f.id,
                room: f.room,
                retry_after_ms: f.retry_after_ms,
            },
            ServerKind::History => Self::History {
                room: required(f.room, "room")?,
                before: required(f.before, "before")?,
                messages: required(f.messages, "messages")?,
                more: f.more.unwrap_or(false),
            },
            ServerKind::Rooms => Self::Rooms {
                rooms: required(f.rooms, "rooms")?,
            },
            ServerKind::Typing => Self::Typing {
                room: required(f.room, "room")?,
                user: required(f.user, "user")?,
                expires_ms: required(f.expires_ms, "expires_ms")?,
            },
            ServerKind::Presence => Self::Presence {
                room: required(f.room, "room")?,
                count: required(f.count, "count")?,
                users: required(f.users, "users")?,
            },
            ServerKind::Pong => Self::Pong,
        })
    }
}

/// Machine-readable error codes of [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON (or nested too deeply).
    InvalidJson,
    /// The frame was JSON, but not an object with a string `type`.
    InvalidMessage,
    /// The `type` is not one this server knows.
    UnknownType,
    /// A field is missing, has the wrong type, or has a value out of bounds. The message names it.
    BadField,
    /// Binary frames are not part of the protocol.
    BinaryUnsupported,
    /// `since` is older than the room's retained history: the replay starts at the oldest message still
    /// kept, and the messages before it are gone. Not fatal.
    HistoryTruncated,
    /// The server could not store the message; it was not relayed and may be sent again.
    Unavailable,
    /// The room is private and this user is not a member (or may not invite there).
    Forbidden,
    /// Too many frames too fast: this one was not acted on (a chat was not stored or relayed); send it
    /// again after the error's `retry_after_ms`.
    RateLimited,
    /// `create` named a room that already exists.
    RoomExists,
    /// `invite` or `remove` named a user who has no account.
    UnknownUser,
    /// A code this client version does not know (newer servers may add codes).
    #[serde(other)]
    Other,
}

impl ServerMessage {
    /// Serializes to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every field is a string, a number or an enum without maps
        // keyed by non-strings.
        serde_json::to_string(self)
            .unwrap_or_else(|e| unreachable!("ServerMessage serializes: {e}"))
    }

    /// An `error` frame about nothing in particular.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            id: None,
            room: None,
            retry_after_ms: None,
        }
    }

    /// An `error` frame about the chat message `id` (if any) in `room` (if any).
    pub fn refusal(
        code: ErrorCode,
        message: impl Into<String>,
        id: Option<ClientMsgId>,
        room: Option<RoomId>,
    ) -> Self {
        Self::Error {
            code,
            message: message.into(),
            id,
            room,
            retry_after_ms: None,
        }
    }
}

impl ClientMessage {
    /// Serializes to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            // Not formatting the error keeps serde_json's messages out of the browser's wasm.
            .unwrap_or_else(|_| unreachable!("ClientMessage serializes"))
    }
}
