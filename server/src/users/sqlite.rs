//! Accounts and sessions in the embedded database (tables `users` and `sessions`).

use super::{SessionId, StoreError, UserStore, name_key};
use crate::db::{Database, DbError};
use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, params};
use shared::UserName;
use std::collections::HashMap;

/// Accounts and sessions in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteUsers {
    db: Database,
}

impl SqliteUsers {
    /// The records in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl UserStore for SqliteUsers {
    fn insert_user(
        &self,
        name: UserName,
        hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let inserted = self
                .db
                .write(move |tx| {
                    tx.execute(
                        "INSERT INTO users (name, name_key, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT DO NOTHING",
                        params![name.as_str(), name_key(&name), hash, now_ms],
                    )
                    .map_err(DbError::from)
                })
                .await?;
            Ok(inserted == 1)
        })
    }

    fn user(
        &self,
        name: UserName,
    ) -> BoxFuture<'_, Result<Option<(UserName, String)>, StoreError>> {
        Box::pin(async move {
            let row: Option<(String, String)> = self
                .db
                .read(move |c| {
                    c.query_row(
                        "SELECT name, password_hash FROM users WHERE name_key = ?1",
                        [name_key(&name)],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(DbError::from)
                })
                .await?;
            Ok(row.and_then(|(n, h)| UserName::new(n).ok().map(|n| (n, h))))
        })
    }

    fn replace_hash(
        &self,
        name: UserName,
        old: String,
        new: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let changed = self
                .db
                .write(move |tx| {
                    tx.execute(
                        "UPDATE users SET password_hash = ?3 WHERE name = ?1 AND password_hash = ?2",
                        params![name.as_str(), old, new],
                    )
                    .map_err(DbError::from)
                })
                .await?;
            Ok(changed == 1)
        })
    }

    fn delete_user(&self, name: UserName, hash: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self
                .db
                .write(move |tx| {
                    tx.execute(
                        "DELETE FROM users WHERE name = ?1 AND password_hash = ?2",
                        params![name.as_str(), hash],
                    )
                    .map_err(DbError::from)
                })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn start_session(
        &self,
        sid: SessionId,
        user: UserName,
        hash: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let started = self
                .db
                .write(move |tx| {
                    let current = tx
                        .query_row(
                            "SELECT 1 FROM users WHERE name = ?1 AND password_hash = ?2",
                            params![user.as_str(), hash],
                            |_| Ok(()),
                        )
                        .optional()?;
                    if current.is_none() {
                        return Ok(false);
                    }
                    // Expired sessions are no use to anyone: clear them out as new ones come in.
                    tx.execute(
                        "DELETE FROM sessions WHERE expires_ms < ?1",
                        [crate::now().unix_ms()],
                    )?;
                    tx.execute(
                        "INSERT INTO sessions (id, user, expires_ms) VALUES (?1, ?2, ?3)",
                        params![sid, user.as_str(), expires_ms],
                    )?;
                    Ok::<_, DbError>(true)
                })
                .await?;
            Ok(started)
        })
    }

    fn revoke_session(&self, sid: SessionId) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let expires = self
                .db
                .write(move |tx| {
                    tx.execute("UPDATE sessions SET revoked = 1 WHERE id = ?1", [&sid])?;
                    tx.query_row(
                        "SELECT expires_ms FROM sessions WHERE id = ?1",
                        [&sid],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(DbError::from)
                })
                .await?;
            Ok(expires)
        })
    }

    fn revoke_sessions(
        &self,
        user: UserName,
    ) -> BoxFuture<'_, Result<Vec<(SessionId, i64)>, StoreError>> {
        Box::pin(async move {
            let revoked = self
                .db
                .write(move |tx| {
                    tx.execute(
                        "UPDATE sessions SET revoked = 1 WHERE user = ?1",
                        [user.as_str()],
                    )?;
                    let mut stmt =
                        tx.prepare("SELECT id, expires_ms FROM sessions WHERE user = ?1")?;
                    let rows = stmt.query_map([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(DbError::from)
                })
                .await?;
            Ok(revoked)
        })
    }

    fn revoked(&self, now_ms: i64) -> BoxFuture<'_, Result<HashMap<SessionId, i64>, StoreError>> {
        Box::pin(async move {
            let revoked = self
                .db
                .read(move |c| {
                    let mut stmt = c.prepare(
                        "SELECT id, expires_ms FROM sessions WHERE revoked = 1 AND expires_ms > ?1",
                    )?;
                    let rows = stmt.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<HashMap<_, _>, _>>()
                        .map_err(DbError::from)
                })
                .await?;
            Ok(revoked)
        })
    }
}
