//! Where accounts and sign-in sessions are kept: the [`UserStore`] trait and its backends.
//!
//! [`crate::accounts`] (password hashing, the naming rules) and [`crate::sessions`] (revocation, live
//! connections) decide; a store only keeps records, each operation atomic, compare-and-set where a race
//! matters (a password change against a sign-in, two changes against each other). Backends:
//! [`sqlite::SqliteUsers`] (the embedded database) and [`redis::RedisUsers`] (shared by every node; a
//! revocation is also announced to the other nodes, which close that session's connections).

pub mod redis;
pub mod sqlite;

use futures_util::future::BoxFuture;
use shared::UserName;
use std::collections::HashMap;

/// A session id: 128 random bits, hex.
pub type SessionId = String;

/// A store failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// The case-insensitive key of a name (`Ann` and `ann` are one account).
pub fn name_key(name: &UserName) -> String {
    name.as_str().to_lowercase()
}

/// Accounts and sessions, as records.
pub trait UserStore: Send + Sync + std::fmt::Debug + 'static {
    /// Adds an account; `Ok(false)`: its name (in any case) is taken, and nothing changed.
    fn insert_user(
        &self,
        name: UserName,
        hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The account called `name` in any case: its name as registered and its password hash.
    fn user(&self, name: UserName)
    -> BoxFuture<'_, Result<Option<(UserName, String)>, StoreError>>;

    /// Replaces `name`'s password hash `old` with `new`; `Ok(false)`: it was not `old` any more.
    fn replace_hash(
        &self,
        name: UserName,
        old: String,
        new: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deletes `name`'s account if its hash is still `hash`.
    fn delete_user(&self, name: UserName, hash: String) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Records session `sid` of `user` expiring at `expires_ms`, if `user`'s hash is still `hash`.
    fn start_session(
        &self,
        sid: SessionId,
        user: UserName,
        hash: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Marks session `sid` revoked; its expiry, or `None` for an unknown session.
    fn revoke_session(&self, sid: SessionId) -> BoxFuture<'_, Result<Option<i64>, StoreError>>;

    /// Marks every session of `user` revoked; their ids and expiries.
    fn revoke_sessions(
        &self,
        user: UserName,
    ) -> BoxFuture<'_, Result<Vec<(SessionId, i64)>, StoreError>>;

    /// The revoked sessions that have not expired at `now_ms`, with their expiries.
    fn revoked(&self, now_ms: i64) -> BoxFuture<'_, Result<HashMap<SessionId, i64>, StoreError>>;
}
