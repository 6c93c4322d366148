//! The chat wire protocol, shared by the server and the browser client.
//!
//! Every frame on `GET /ws` is one JSON object in a WebSocket text frame, tagged by `"type"` in snake_case.
//! This crate is the only place that defines those shapes (see `ARCHITECTURE.md`, invariant "only `shared`
//! defines wire types"); it does no I/O and compiles for the server and for `wasm32-unknown-unknown`.
//!
//! - [`message`]: what the client sends ([`ClientMessage`]) and what the server sends ([`ServerMessage`]).
//! - [`decode`]: turning one inbound text frame into a [`ClientMessage`], or into a precise [`DecodeError`]
//!   that the server can send back as an `error` frame.
//! - [`ids`]: validated names and identifiers ([`RoomId`], [`UserName`], [`ClientMsgId`], [`ChatText`]).
//! - [`time`]: [`Timestamp`], server-assigned time on the wire as RFC 3339 UTC with milliseconds.
//! - [`close`]: WebSocket close codes and which of them a client should reconnect after.
//! - [`api`]: the HTTP API for accounts and sessions (`/api/register`, `/api/login`, ...).
//!
//! The protocol stays wire-compatible with the design article's Node relay: a client that only sends
//! `{"type":"chat","text":"hi"}` and reads `status`, `chat` and `error` frames works unchanged.

pub mod api;
pub mod close;
pub mod decode;
pub mod ids;
pub mod message;
pub mod time;

pub use decode::{DecodeError, decode_client};
pub use ids::{ChatText, ClientMsgId, IdError, RoomId, Seq, UserName};
pub use message::{
    ClientMessage, ErrorCode, HISTORY_PAGE, HistoryEntry, JOIN_PAGE, PRESENCE_NAMES, RoomSummary,
    ServerMessage, TYPING_EVERY_MS,
};
pub use time::Timestamp;

/// Default largest inbound frame, in bytes, that a server accepts (a larger one closes the connection with
/// [`close::MESSAGE_TOO_BIG`]). Clients should not build chat frames larger than this.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The version of this protocol, sent in the welcome ([`ServerMessage::Status`]). 1: the first release;
/// 2: `create`, `remove`, `created`, `removed`, `retry_after_ms`, and `join` no longer creates rooms;
/// 3: `history` (both ways), a `join` without `since` replays the newest page, `read`, `rooms`,
/// `typing` (both ways), `presence`, and the welcome's `app`.
pub const PROTOCOL_VERSION: u32 = 3;

/// The room every connection is in from the start, and the room of a `chat` that names none.
pub const LOBBY: &str = "lobby";
