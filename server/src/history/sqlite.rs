//! The embedded history backend: one SQLite file in WAL mode under the data directory.
//!
//! One writer connection, used by the relay's batches (one transaction, one fsync per batch), and a small
//! pool of reader connections for replays, which WAL lets run while the writer commits. SQLite calls block,
//! so each runs on tokio's blocking pool; no async task ever waits on a lock held across an await.

use super::{Appended, History, HistoryError, NewMessage, Page, Retention, StoredMessage};
use futures_util::future::BoxFuture;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use shared::{ChatText, ClientMsgId, RoomId, Seq, Timestamp, UserName};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

/// Reader connections kept open for reuse.
const READ_POOL_SIZE: usize = 4;
/// How long a connection waits for another's write lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The database file's name in the data directory.
const DB_FILE: &str = "chat.db";

/// Opens another connection to the data directory's database and applies `schema` (the `CREATE ... IF
/// NOT EXISTS` of a module that keeps its own tables there, such as accounts). The history must have been
/// opened first: it creates the directory and sets WAL mode.
pub fn open_with_schema(data_dir: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(data_dir.join(DB_FILE))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    room      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    sender    TEXT NOT NULL,
    client_id TEXT,
    text      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
    ON messages (room, sender, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (ts);
PRAGMA user_version = 1;
";

/// History in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteHistory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

#[derive(Debug)]
struct Writer {
    conn: Connection,
    /// Each room's newest `seq`, as committed; loaded on first use.
    heads: HashMap<RoomId, Seq>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves SQLite consistent (transactions roll back on drop), so the
    // data behind a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteHistory {
    /// Opens (creating if needed) `chat.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| HistoryError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it is acknowledged, even across power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Writer {
                    conn,
                    heads: HashMap::new(),
                }),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` on a blocking thread with this history's shared state.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

impl Inner {
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(BUSY_TIMEOUT)?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READ_POOL_SIZE {
            pool.push(conn);
        }
        result
    }
}

impl Writer {
    fn head(&mut self, room: &RoomId) -> Result<Seq, HistoryError> {
        if let Some(&h) = self.heads.get(room) {
            return Ok(h);
        }
        let h: Option<i64> = self
            .conn
            .query_row(
                "SELECT head FROM rooms WHERE name = ?1",
                [room.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let h = h.map_or(0, |h| h as Seq);
        self.heads.insert(room.clone(), h);
        Ok(h)
    }

    fn append(
        &mut self,
        batch: Vec<NewMessage>,
        now: Timestamp,
    ) -> Result<Vec<Appended>, HistoryError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut new_heads: HashMap<RoomId, Seq> = HashMap::new();
        // Read heads before the transaction borrows the connection.
        for m in &batch {
            if !new_heads.contains_key(&m.room) {
                let h = self.head(&m.room)?;
                new_heads.insert(m.room.clone(), h);
            }
        }
        let tx = self.conn.transaction()?;
        {
            let mut find = tx.prepare_cached(
                "SELECT seq, ts FROM messages WHERE room = ?1 AND sender = ?2 AND client_id = ?3",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (room, seq, sender, client_id, text, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in batch {
                if let Some(id) = &m.client_id {
                    let found: Option<(i64, i64)> = find
                        .query_row(
                            params![m.room.as_str(), m.sender.as_str(), id.as_str()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    if let Some((seq, ts)) = found {
                        out.push(Appended::Duplicate(StoredMessage {
                            room: m.room,
                            seq: seq as Seq,
                            sender: m.sender,
                            text: m.text,
                            timestamp: Timestamp::from_unix_ms(ts),
                            client_id: m.client_id,
                        }));
                        continue;
                    }
                }
                let head = new_heads.entry(m.room.clone()).or_insert(0);
                *head += 1;
                insert.execute(params![
                    m.room.as_str(),
                    *head as i64,
                    m.sender.as_str(),
                    m.client_id.as_ref().map(ClientMsgId::as_str),
                    m.text.as_str(),
                    now.unix_ms(),
                ])?;
                out.push(Appended::New(StoredMessage {
                    room: m.room,
                    seq: *head,
                    sender: m.sender,
                    text: m.text,
                    timestamp: now,
                    client_id: m.client_id,
                }));
            }
            let mut set_head = tx.prepare_cached(
                "INSERT INTO rooms (name, head) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET head = excluded.head",
            )?;
            for (room, head) in &new_heads {
                set_head.execute(params![room.as_str(), *head as i64])?;
            }
        }
        tx.commit()?;
        self.heads.extend(new_heads);
        Ok(out)
    }

    fn prune(&mut self, retention: Retention, now: Timestamp) -> Result<u64, HistoryError> {
        let tx = self.conn.transaction()?;
        let mut deleted = 0;
        if retention.count > 0 {
            deleted += tx.execute(
                "DELETE FROM messages WHERE seq <= (SELECT head FROM rooms WHERE name = messages.room) - ?1",
                [retention.count as i64],
            )?;
        }
        if !retention.age.is_zero() {
            let cutoff = now
                .unix_ms()
                .saturating_sub(retention.age.as_millis() as i64);
            deleted += tx.execute("DELETE FROM messages WHERE ts < ?1", [cutoff])?;
        }
        tx.commit()?;
        Ok(deleted as u64)
    }
}

fn read_page(
    conn: &Connection,
    room: RoomId,
    since: Seq,
    limit: usize,
) -> Result<Page, HistoryError> {
    let tx = conn.unchecked_transaction()?;
    let head: Option<i64> = tx
        .query_row(
            "SELECT head FROM rooms WHERE name = ?1",
            [room.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let head = head.map_or(0, |h| h as Seq);
    let first: Option<i64> = tx.query_row(
        "SELECT MIN(seq) FROM messages WHERE room = ?1",
        [room.as_str()],
        |r| r.get(0),
    )?;
    let first_retained = first.map_or(head + 1, |f| f as Seq);
    let mut stmt = tx.prepare_cached(
        "SELECT seq, sender, client_id, text, ts FROM messages WHERE room = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            room.as_str(),
            since.min(i64::MAX as u64) as i64,
            limit as i64
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        },
    )?;
    let corrupt = |detail: String| HistoryError::Corrupt {
        room: room.to_string(),
        detail,
    };
    let mut messages = Vec::new();
    for row in rows {
        let (seq, sender, client_id, text, ts) = row?;
        messages.push(StoredMessage {
            room: room.clone(),
            seq: seq as Seq,
            sender: UserName::new(sender).map_err(|e| corrupt(e.to_string()))?,
            text: ChatText::new(text).map_err(|e| corrupt(e.to_string()))?,
            timestamp: Timestamp::from_unix_ms(ts),
            client_id: client_id
                .map(ClientMsgId::new)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
        });
    }
    drop(stmt);
    tx.finish()?;
    Ok(Page {
        messages,
        head,
        first_retained,
    })
}

impl History for SqliteHistory {
    fn append_batch(
        &self,
        batch: Vec<NewMessage>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Appended>, HistoryError>> {
        Box::pin(self.blocking(move |inner| {
            let mut writer = lock(&inner.writer);
            let result = writer.append(batch, now);
            if result.is_err() {
                // The transaction rolled back; the cached heads may be ahead of the database.
                writer.heads.clear();
            }
            result
        }))
    }

    fn read_since(
        &self,
        room: RoomId,
        since: Seq,
        limit: usize,
    ) -> BoxFuture<'_, Result<Page, HistoryError>> {
        Box::pin(
            self.blocking(move |inner| inner.with_reader(|c| read_page(c, room, since, limit))),
        )
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<u64, HistoryError>> {
        Box::pin(self.blocking(move |inner| lock(&inner.writer).prune(retention, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(room: &str, sender: &str, text: &str, id: Option<&str>) -> NewMessage {
        NewMessage {
            room: RoomId::new(room).expect("room"),
            sender: UserName::new(sender).expect("name"),
            text: ChatText::new(text).expect("text"),
            client_id: id.map(|i| ClientMsgId::new(i).expect("id")),
        }
    }

    fn seqs(out: &[Appended]) -> Vec<(bool, Seq)> {
        out.iter()
            .map(|a| match a {
                Appended::New(m) => (true, m.seq),
                Appended::Duplicate(m) => (false, m.seq),
            })
            .collect()
    }

    #[tokio::test]
    async fn seq_is_per_room_dense_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = SqliteHistory::open(dir.path()).expect("open");
        let now = Timestamp::from_unix_ms(1_000);
        let out = h
            .append_batch(
                vec![
                    msg("a", "ann", "1", None),
                    msg("b", "ann", "1", None),
                    msg("a", "bob", "2", None),
                ],
                now,
            )
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(true, 1), (true, 1), (true, 2)]);
        drop(h);

        let h = SqliteHistory::open(dir.path()).expect("reopen");
        let out = h
            .append_batch(vec![msg("a", "ann", "3", None)], now)
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(true, 3)]);
        let page = h
            .read_since(RoomId::new("a").expect("room"), 1, 10)
            .await
            .expect("read");
        let texts: Vec<_> = page
            .messages
            .iter()
            .map(|m| (m.seq, m.text.as_str().to_owned()))
            .collect();
        assert_eq!(texts, vec![(2, "2".to_owned()), (3, "3".to_owned())]);
        assert_eq!((page.head, page.first_retained), (3, 1));
    }

    #[tokio::test]
    async fn client_id_dedupes_per_sender_and_room_even_within_a_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = SqliteHistory::open(dir.path()).expect("open");
        let now = Timestamp::from_unix_ms(1_000);
        let out = h
            .append_batch(
                vec![
                    msg("a", "ann", "x", Some("k1")),
                    msg("a", "ann", "x", Some("k1")),
                    msg("a", "bob", "y", Some("k1")),
                    msg("b", "ann", "z", Some("k1")),
                ],
                now,
            )
            .await
            .expect("append");
        assert_eq!(
            seqs(&out),
            vec![(true, 1), (false, 1), (true, 2), (true, 1)]
        );
        let out = h
            .append_batch(vec![msg("a", "ann", "x", Some("k1"))], now)
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(false, 1)]);
        let page = h
            .read_since(RoomId::new("a").expect("room"), 0, 10)
            .await
            .expect("read");
        assert_eq!(page.messages.len(), 2);
    }

    #[tokio::test]
    async fn retention_by_count_and_age_keeps_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = SqliteHistory::open(dir.path()).expect("open");
        for i in 0..10 {
            h.append_batch(
                vec![msg("a", "ann", "m", None)],
                Timestamp::from_unix_ms(i * 1000),
            )
            .await
            .expect("append");
        }
        let room = RoomId::new("a").expect("room");
        let keep4 = Retention {
            count: 4,
            age: Duration::ZERO,
        };
        assert_eq!(
            h.prune(keep4, Timestamp::from_unix_ms(0))
                .await
                .expect("prune"),
            6
        );
        let page = h.read_since(room.clone(), 0, 100).await.expect("read");
        assert_eq!(
            (page.head, page.first_retained, page.messages.len()),
            (10, 7, 4)
        );

        let by_age = Retention {
            count: 0,
            age: Duration::from_secs(2),
        };
        // now = 10 s: messages stored before 8 s (seq 7 and 8 at 6 s and 7 s) go.
        assert_eq!(
            h.prune(by_age, Timestamp::from_unix_ms(10_000))
                .await
                .expect("prune"),
            2
        );
        let page = h.read_since(room.clone(), 0, 100).await.expect("read");
        assert_eq!((page.head, page.first_retained), (10, 9));

        let out = h
            .append_batch(vec![msg("a", "ann", "m", None)], Timestamp::from_unix_ms(0))
            .await
            .expect("append");
        assert_eq!(
            seqs(&out),
            vec![(true, 11)],
            "seq keeps counting after pruning"
        );
    }
}
