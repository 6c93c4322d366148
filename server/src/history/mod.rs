//! Durable, ordered room history: the [`History`] trait and its backends.
//!
//! A backend stores chat messages per room and gives each the room's next sequence number. Messages are
//! appended by one writer only (the [`crate::relay`]), which hands it whole batches so that one commit (one
//! fsync) covers many messages; reads for replay come from any connection, concurrently.
//!
//! The backend also keeps the rooms themselves: which exist, which are private, who owns and who may use
//! them; and each account's list of rooms with what it read of each. Keeping both in one store lets an append refuse, in the same transaction that assigns the `seq`,
//! a message to a private room from a non-member: no race between "is it private?" and "store it" exists.
//!
//! Backends: [`sqlite::SqliteHistory`] (the embedded default) and [`redis::RedisHistory`] (several nodes on
//! one Redis: a stream per room, see [`crate::broker`]).

pub mod redis;
pub mod sqlite;

use crate::hub::ConnId;
use futures_util::future::BoxFuture;
use shared::{ChatText, ClientMsgId, RoomId, RoomSummary, Seq, ServerMessage, Timestamp, UserName};
use std::time::Duration;

/// What a page costs beyond its text, per message (JSON keys, names, timestamp), for the byte limit.
pub const FRAME_OVERHEAD: usize = 128;

/// A chat message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The room it goes to.
    pub room: RoomId,
    /// Its author, as authenticated.
    pub sender: UserName,
    /// What was said.
    pub text: ChatText,
    /// The author's id for it, used to store it once however often it is sent.
    pub client_id: Option<ClientMsgId>,
    /// The connection on this node it came from (it gets an ack, not the relayed copy).
    pub origin: ConnId,
}

/// A message as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The room it belongs to.
    pub room: RoomId,
    /// Its position in the room.
    pub seq: Seq,
    /// Its author.
    pub sender: UserName,
    /// What was said.
    pub text: ChatText,
    /// When it was stored.
    pub timestamp: Timestamp,
    /// The author's id for it.
    pub client_id: Option<ClientMsgId>,
}

impl StoredMessage {
    /// The `chat` frame that relays or replays this message.
    pub fn into_frame(self) -> ServerMessage {
        ServerMessage::Chat {
            sender: self.sender,
            text: self.text,
            timestamp: self.timestamp,
            room: self.room,
            seq: self.seq,
            id: self.client_id,
        }
    }

    /// This message in a `history` page.
    pub fn into_entry(self) -> shared::HistoryEntry {
        shared::HistoryEntry {
            seq: self.seq,
            sender: self.sender,
            text: self.text,
            timestamp: self.timestamp,
            id: self.client_id,
        }
    }
}

/// The outcome of storing one [`NewMessage`].
#[derive(Debug, Clone)]
pub enum Appended {
    /// Stored now, as this message.
    New(StoredMessage),
    /// The same sender already stored this client id in this room: nothing was stored; this is the original.
    Duplicate(StoredMessage),
    /// The room is private and the sender is not a member: nothing was stored.
    Forbidden,
}

/// How much one read of history may return.
#[derive(Debug, Clone, Copy)]
pub struct PageLimit {
    /// At most this many messages.
    pub messages: usize,
    /// Stop adding messages once their text reaches this many bytes (at least one is returned).
    pub bytes: usize,
}

/// What is known of a room beyond its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Only members may join, read or post.
    pub private: bool,
    /// Who created it (may remove members).
    pub owner: Option<UserName>,
    /// Members of a private room.
    pub members: Vec<UserName>,
}

/// One page of a room's history after (or before) some `seq`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Messages with `seq` above (or below) the one asked for, in order.
    pub messages: Vec<StoredMessage>,
    /// The room's newest `seq` (0 if it never had a message).
    pub head: Seq,
    /// The oldest `seq` still retained (`head + 1` when none is).
    pub first_retained: Seq,
}

/// How long history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Messages kept per room (0: no limit).
    pub count: u64,
    /// Maximum age (zero: no limit).
    pub age: Duration,
}

impl Retention {
    /// How many of a room's newest messages every room keeps at least (`u64::MAX`: all).
    pub fn kept(&self) -> u64 {
        if self.count == 0 {
            u64::MAX
        } else {
            self.count
        }
    }

    /// Messages sent before this are deleted (`None`: none for their age).
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        (!self.age.is_zero()).then(|| {
            let age = i64::try_from(self.age.as_millis()).unwrap_or(i64::MAX);
            Timestamp::from_unix_ms(now.unix_ms().saturating_sub(age))
        })
    }
}

/// Storage failures. Nothing is acknowledged when one happens.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The SQLite backend failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database could not be used.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The Redis backend failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A stored row does not hold valid protocol values (the database was edited by hand?).
    #[error("corrupt row in {room}: {detail}")]
    Corrupt {
        /// The room of the row.
        room: String,
        /// What is wrong.
        detail: String,
    },
}

/// A history backend. Appends come from a single caller at a time; reads from anywhere.
pub trait History: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `batch` atomically, in order, at time `now`: each message either gets its room's next `seq`
    /// or, when its sender already stored its client id in that room, is reported as a duplicate. When this
    /// returns `Ok`, every new message is durable.
    fn append_batch(
        &self,
        batch: Vec<NewMessage>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Appended>, HistoryError>>;

    /// Whether storing a message also publishes it to every node (then the relay leaves delivery to the
    /// [`crate::broker::subscriber`]); `false`: the relay delivers what it stored.
    fn broadcasts(&self) -> bool {
        false
    }

    /// Messages of `room` with `seq > since`, in order, within `limit`, plus the room's bounds.
    fn read_since(
        &self,
        room: RoomId,
        since: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>>;

    /// The newest messages of `room` with `seq < before`, in order, within `limit` (counted from the
    /// newest), plus the room's bounds.
    fn read_before(
        &self,
        room: RoomId,
        before: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>>;

    /// Deletes what `retention` no longer keeps, as of `now`; returns how many messages went.
    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<u64, HistoryError>>;

    /// Creates `room`, owned by `owner`, its only member if `private`. `Ok(false)`: the name is taken (the
    /// room has history or was created before), and nothing changed.
    fn create_room(
        &self,
        room: RoomId,
        owner: UserName,
        private: bool,
    ) -> BoxFuture<'_, Result<bool, HistoryError>>;

    /// What is known of `room`; `None` for a public room nobody created.
    fn room(&self, room: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, HistoryError>>;

    /// Adds (`member: true`) or removes `user` as a member of the private `room`. `Ok(false)`: the room is
    /// not private, and nothing changed.
    fn set_member(
        &self,
        room: RoomId,
        user: UserName,
        member: bool,
    ) -> BoxFuture<'_, Result<bool, HistoryError>>;

    /// Forgets `user` as a member and as an owner everywhere, and its list of rooms (the account was
    /// deleted: whoever registers the name later must not inherit its rooms).
    fn forget_user(&self, user: UserName) -> BoxFuture<'_, Result<(), HistoryError>>;

    /// The rooms in `user`'s list, by name, with what the user read of each and each room's head.
    fn rooms_of(&self, user: UserName) -> BoxFuture<'_, Result<Vec<RoomSummary>, HistoryError>>;

    /// Adds `room` to `user`'s list (`keep: true`; nothing read yet if it was not there) or takes it off.
    fn keep_room(
        &self,
        user: UserName,
        room: RoomId,
        keep: bool,
    ) -> BoxFuture<'_, Result<(), HistoryError>>;

    /// Raises what `user` read of `room` (in the list) to `seq`; a lower `seq` changes nothing.
    fn mark_read(
        &self,
        user: UserName,
        room: RoomId,
        seq: Seq,
    ) -> BoxFuture<'_, Result<(), HistoryError>>;
}
