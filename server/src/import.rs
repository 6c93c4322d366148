//! Moving up from one node to several: a one-shot copy of the embedded database into Redis
//! (`--import-into-redis`), so a deployment keeps its accounts, sessions, rooms, history and token key.
//!
//! The copy goes into a Redis that holds no chat data yet (it refuses otherwise, so nothing is merged or
//! overwritten) while no node serves: stop the embedded server, import, then start the nodes with
//! `--redis-url`. Every message keeps its `seq` and client id (a resend after the move is still
//! recognised), every room its head, every account its password hash, every unexpired session stays
//! signed in, and the token key moves too, so the tokens browsers hold stay valid.

use crate::{
    broker::keys,
    db::{Database, DbError},
};
use redis::aio::MultiplexedConnection;
use shared::RoomId;
use std::path::Path;

/// Commands sent per round trip.
const CHUNK: usize = 1000;

/// Why the import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The embedded database could not be read.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The token key file could not be read.
    #[error("reading {path}: {source}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Redis already holds chat data.
    #[error("redis already holds chat data (key {0}); import only into an empty one")]
    NotEmpty(String),
    /// A stored message's sender number has no name in the database.
    #[error(
        "message {seq} of room {room} has a sender number without a name; nothing more was copied"
    )]
    Corrupt {
        /// The room.
        room: String,
        /// The message.
        seq: i64,
    },
}

/// What was copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Accounts.
    pub users: usize,
    /// Rooms.
    pub rooms: usize,
    /// Messages.
    pub messages: usize,
    /// Unexpired sessions.
    pub sessions: usize,
}

struct Writer {
    conn: MultiplexedConnection,
    pipe: redis::Pipeline,
    queued: usize,
}

impl Writer {
    async fn push(&mut self, cmd: &redis::Cmd) -> Result<(), ImportError> {
        self.pipe.add_command(cmd.clone()).ignore();
        self.queued += 1;
        if self.queued >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ImportError> {
        if self.queued > 0 {
            let () = self.pipe.query_async(&mut self.conn).await?;
            self.pipe.clear();
            self.queued = 0;
        }
        Ok(())
    }
}

type Rows<T> = Result<Vec<T>, DbError>;

/// Copies the database in `data_dir` (and its `token.key`, if any) into the empty Redis at `url`.
pub async fn into_redis(data_dir: &Path, url: &str) -> Result<Imported, ImportError> {
    let db = Database::open(data_dir)?;
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let existing: Vec<String> = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("chat:*")
        .arg("COUNT")
        .arg(1000)
        .query_async::<(u64, Vec<String>)>(&mut conn)
        .await?
        .1;
    if let Some(key) = existing.into_iter().next() {
        return Err(ImportError::NotEmpty(key));
    }
    let mut out = Imported::default();
    let mut w = Writer {
        conn,
        pipe: redis::pipe(),
        queued: 0,
    };

    let key_path = data_dir.join("token.key");
    match std::fs::read(&key_path) {
        Ok(key) => {
            w.push(redis::cmd("SET").arg(keys::TOKEN_KEY).arg(key))
                .await?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ImportError::Key {
                path: key_path,
                source,
            });
        }
    }

    let users: Vec<(String, String, String, i64)> = db
        .read(|c| -> Rows<_> {
            let mut stmt =
                c.prepare("SELECT name, name_key, password_hash, created_ms FROM users")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    for (name, key, hash, created) in users {
        w.push(
            redis::cmd("HSET")
                .arg(keys::user(&key))
                .arg("name")
                .arg(name)
                .arg("hash")
                .arg(hash)
                .arg("created")
                .arg(created),
        )
        .await?;
        out.users += 1;
    }

    let now = crate::now().unix_ms();
    let sessions: Vec<(String, String, i64, bool)> = db
        .read(move |c| -> Rows<_> {
            let mut stmt = c.prepare(
                "SELECT id, user, expires_ms, revoked FROM sessions WHERE expires_ms > ?1",
            )?;
            let rows =
                stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    for (sid, user, expires, revoked) in sessions {
        let key = format!("{}{sid}", keys::SESSION_PREFIX);
        w.push(
            redis::cmd("HSET")
                .arg(&key)
                .arg("user")
                .arg(&user)
                .arg("expires")
                .arg(expires)
                .arg("revoked")
                .arg(u8::from(revoked)),
        )
        .await?;
        w.push(redis::cmd("PEXPIREAT").arg(&key).arg(expires))
            .await?;
        w.push(redis::cmd("SADD").arg(keys::sessions(&user)).arg(&sid))
            .await?;
        if revoked {
            w.push(redis::cmd("ZADD").arg(keys::REVOKED).arg(expires).arg(&sid))
                .await?;
        }
        out.sessions += 1;
    }

    let rooms: Vec<(String, i64, bool, Option<String>)> = db
        .read(|c| -> Rows<_> {
            let mut stmt = c.prepare("SELECT name, head, private, owner FROM rooms")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    for (name, head, private, owner) in rooms {
        let Ok(room) = RoomId::new(name) else {
            continue;
        };
        let mut meta = redis::cmd("HSET");
        meta.arg(keys::meta(&room))
            .arg("head")
            .arg(head)
            .arg("created")
            .arg(1)
            .arg("private")
            .arg(u8::from(private));
        if let Some(owner) = owner {
            meta.arg("owner").arg(owner);
        }
        w.push(&meta).await?;
        let r = room.to_string();
        let members: Vec<String> = db
            .read(move |c| -> Rows<_> {
                let mut stmt = c.prepare("SELECT user FROM room_members WHERE room = ?1")?;
                let rows = stmt.query_map([&r], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        for member in members {
            w.push(redis::cmd("SADD").arg(keys::members(&room)).arg(member))
                .await?;
        }
        out.messages += copy_messages(&db, &room, &mut w).await?;
        out.rooms += 1;
    }
    w.flush().await?;
    Ok(out)
}

/// Copies `room`'s messages, a page at a time, in `seq` order.
async fn copy_messages(db: &Database, room: &RoomId, w: &mut Writer) -> Result<usize, ImportError> {
    type Row = (i64, Option<String>, Option<String>, String, i64);
    let mut after = 0i64;
    let mut copied = 0;
    loop {
        let r = room.to_string();
        let page: Vec<Row> = db
            .read(move |c| -> Rows<_> {
                let mut stmt = c.prepare(
                    "SELECT m.seq, s.name, m.client_id, m.text, m.ts
                     FROM messages m LEFT JOIN names s ON s.id = m.sender
                     WHERE m.room = (SELECT id FROM names WHERE name = ?1) AND m.seq > ?2
                     ORDER BY m.seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(rusqlite::params![r, after, CHUNK as i64], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let Some(last) = page.last().map(|row| row.0) else {
            return Ok(copied);
        };
        for (seq, sender, client_id, text, ts) in page {
            let sender = sender.ok_or_else(|| ImportError::Corrupt {
                room: room.to_string(),
                seq,
            })?;
            let id = client_id.unwrap_or_default();
            w.push(
                redis::cmd("XADD")
                    .arg(keys::log(room))
                    .arg(format!("{seq}-0"))
                    .arg("s")
                    .arg(&sender)
                    .arg("t")
                    .arg(text)
                    .arg("ts")
                    .arg(ts)
                    .arg("id")
                    .arg(&id)
                    .arg("o")
                    .arg(""),
            )
            .await?;
            if !id.is_empty() {
                w.push(
                    redis::cmd("HSET")
                        .arg(keys::ids(room))
                        .arg(format!("{sender}\n{id}"))
                        .arg(seq),
                )
                .await?;
            }
            copied += 1;
        }
        after = last;
    }
}
