//! The embedded database: one SQLite file (`<data-dir>/chat.db`), its connections and its schema.
//!
//! Every module that keeps data here (history, rooms, accounts, sessions) goes through one [`Database`]:
//! - **one writer**: a single connection behind a mutex, and every write is one `BEGIN IMMEDIATE`
//!   transaction on it ([`Database::write`]). Writers queue for the mutex (microseconds) instead of
//!   racing for SQLite's file lock, so a registration or an invite can never make a batch of chats fail
//!   with "database is locked";
//! - **many readers**: a small pool of read-only connections ([`Database::read`]), which WAL lets run while
//!   the writer commits;
//! - **migrations**: `PRAGMA user_version` says which of `MIGRATIONS` the file has; the missing ones are
//!   applied in order at open, each in its own transaction. A file from a newer server is refused.
//!
//! SQLite calls block, so each runs on tokio's blocking pool; no async task holds a lock across an await.

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

/// The database file's name in the data directory.
const DB_FILE: &str = "chat.db";
/// Reader connections kept open for reuse.
const READ_POOL_SIZE: usize = 4;
/// How long a reader waits on a checkpoint's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per version: `MIGRATIONS[i]` takes a file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: history, accounts and private-room members (as the first release created them).
    "CREATE TABLE IF NOT EXISTS rooms (
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
    CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS room_members (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID;",
    // 2: rooms know whether they are private and who owns them; names are unique regardless of case
    // (of names a first release let differ only by case, the oldest keeps the name; the others get a
    // key no sign-in matches, `#` being no name character, and are reported at start);
    // sign-ins are server-side sessions that can be revoked.
    "ALTER TABLE rooms ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rooms ADD COLUMN owner TEXT;
    INSERT INTO rooms (name, head, private) SELECT DISTINCT room, 0, 1 FROM room_members WHERE true
        ON CONFLICT (name) DO UPDATE SET private = 1;
    ALTER TABLE users ADD COLUMN name_key TEXT;
    UPDATE users SET name_key = lower(name) WHERE name = (
        SELECT u.name FROM users u WHERE lower(u.name) = lower(users.name)
        ORDER BY u.created_ms, u.name LIMIT 1);
    UPDATE users SET name_key = lower(name) || '#' || name WHERE name_key IS NULL;
    CREATE UNIQUE INDEX users_by_key ON users (name_key);
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked    INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user);",
    // 3: each account's list of rooms and the newest seq it read in each.
    "CREATE TABLE user_rooms (
        user      TEXT NOT NULL,
        room      TEXT NOT NULL,
        last_read INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user, room)
    ) WITHOUT ROWID;",
    // 4: no index on messages' time. Every stored chat paid for it (a third B-tree to insert into, and
    // its pages in every commit: 6% of the CPU per acked chat); retention by age now walks each room's
    // oldest messages in `seq` order instead (`history::sqlite::prune`).
    "DROP INDEX IF EXISTS messages_by_time;",
    // 5: a message names its room and sender by a number from `names` instead of repeating both strings
    // in its row and in the dedupe index's entry. A stored chat took 183 bytes (a 16-character room,
    // a 22-character guest name); it now takes 99, so every commit writes fewer WAL pages and
    // every checkpoint copies fewer (a tenth less CPU per acked chat). Names are never deleted.
    // The dedupe index puts the client id before the sender: clients make ids that grow with time, so
    // a busy room's new entries all go to the end of its part of the index, one page per commit, not
    // one page per sender (4% less CPU per acked chat with 10 senders). The same columns are unique.
    // Both tables are STRICT: a number column never silently takes text (from a server of the
    // previous version still writing to the file, say).
    "CREATE TABLE names (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    ) STRICT;
    INSERT INTO names (name) SELECT room FROM messages UNION SELECT sender FROM messages;
    CREATE TABLE messages_by_id (
        room      INTEGER NOT NULL,
        seq       INTEGER NOT NULL,
        sender    INTEGER NOT NULL,
        client_id TEXT,
        text      TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO messages_by_id
        SELECT r.id, m.seq, s.id, m.client_id, m.text, m.ts
        FROM messages m JOIN names r ON r.name = m.room JOIN names s ON s.name = m.sender;
    DROP TABLE messages;
    ALTER TABLE messages_by_id RENAME TO messages;
    CREATE UNIQUE INDEX messages_by_client_id
        ON messages (room, client_id, sender) WHERE client_id IS NOT NULL;",
];

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was written by a newer server than this one.
    #[error(
        "{path} has schema version {found}; this server knows up to {known}: upgrade the server"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: usize,
        /// The newest version this build knows.
        known: usize,
    },
    /// A migration failed (nothing of it was applied).
    #[error("migrating {path} to schema version {version}: {source}")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version being reached.
        version: usize,
        /// Why.
        source: rusqlite::Error,
    },
    /// A blocking database task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The embedded database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves SQLite consistent (transactions roll back on drop), so the
    // data behind a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Database {
    /// Opens (creating if needed) `chat.db` in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it is acknowledged, even across power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        migrate(&mut conn, &path)?;
        Ok(Self(Arc::new(Inner {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection, on the blocking pool, and
    /// commits if it returns `Ok` (an `Err` rolls everything back).
    pub async fn write<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + From<tokio::task::JoinError> + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await?
    }

    /// Runs `f` with a read-only connection from the pool, on the blocking pool.
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + From<tokio::task::JoinError> + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&inner.readers).pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(BUSY_TIMEOUT)?;
                    c
                }
            };
            let result = f(&conn);
            let mut pool = lock(&inner.readers);
            if pool.len() < READ_POOL_SIZE {
                pool.push(conn);
            }
            result
        })
        .await?
    }
}

/// Writes a consistent copy of `data_dir`'s database to `dest` (which must not exist), while servers may
/// be using it: SQLite's `VACUUM INTO` reads one snapshot, so writers go on and the copy holds every
/// transaction committed before it started, compacted.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<(), DbError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(DbError::DataDir {
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    if dest.exists() {
        return Err(DbError::DataDir {
            path: dest.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()])?;
    Ok(())
}

/// Applies the migrations the file does not have yet.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let found: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > MIGRATIONS.len() {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found,
            known: MIGRATIONS.len(),
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found) {
        let version = i + 1;
        let apply = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply(conn).map_err(|source| DbError::Migration {
            path: path.to_owned(),
            version,
            source,
        })?;
        tracing::info!(path = %path.display(), version, "database schema migrated");
        if version == MIGRATIONS.len() {
            // A migration that rewrote a table left the WAL as large as the table: copy it into the
            // file now and shrink the WAL back to nothing.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        if version == 2 {
            let mut stmt = conn.prepare("SELECT name FROM users WHERE name_key LIKE '%#%'")?;
            for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
                tracing::warn!(
                    name = %name?,
                    "account name differs from an older one only by case: it can no longer sign in"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(path: &Path) -> usize {
        Connection::open(path)
            .expect("open")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version")
    }

    #[test]
    fn a_first_release_file_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        {
            // What the first release left: version 1 tables, a private room, mixed-case names.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("v1");
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO users VALUES ('Ann', 'h', 1);
                 INSERT INTO users VALUES ('ann', 'h', 2);
                 INSERT INTO room_members VALUES ('team', 'Ann');
                 INSERT INTO rooms VALUES ('lobby', 3);",
            )
            .expect("rows");
        }
        let db = Database::open(dir.path()).expect("migrates");
        assert_eq!(version(db.path()), MIGRATIONS.len());
        let conn = Connection::open(db.path()).expect("open");
        let private: Vec<(String, i64, i64)> = conn
            .prepare("SELECT name, head, private FROM rooms ORDER BY name")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            private,
            vec![("lobby".into(), 3, 0), ("team".into(), 0, 1)],
            "history kept, the private room marked"
        );
        let keys: Vec<(String, String)> = conn
            .prepare("SELECT name, name_key FROM users ORDER BY created_ms")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            keys,
            vec![
                ("Ann".to_owned(), "ann".to_owned()),
                ("ann".to_owned(), "ann#ann".to_owned())
            ],
            "the older of two names equal but for case keeps the case-insensitive key"
        );
        drop(db);
        Database::open(dir.path()).expect("reopening applies nothing twice");
    }

    #[tokio::test]
    async fn a_version_4_file_keeps_its_messages_and_their_dedupe() {
        use crate::history::{Appended, History, NewMessage, PageLimit, sqlite::SqliteHistory};
        use shared::{ChatText, ClientMsgId, RoomId, Timestamp, UserName};
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // Rows as version 4 stored them: room and sender names in every row.
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            for step in &MIGRATIONS[..4] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.execute_batch(
                "PRAGMA user_version = 4;
                 INSERT INTO rooms (name, head) VALUES ('lobby', 2), ('team', 1);
                 INSERT INTO messages VALUES ('lobby', 1, 'ann', 'k1', 'hi', 10);
                 INSERT INTO messages VALUES ('lobby', 2, 'bob', NULL, 'hey', 11);
                 INSERT INTO messages VALUES ('team', 1, 'lobby', 'k1', 'a name both ways', 12);",
            )
            .expect("rows");
        }
        let history = SqliteHistory::new(Database::open(dir.path()).expect("migrates"));
        let room = |name: &str| RoomId::new(name).expect("room");
        let all = PageLimit {
            messages: 10,
            bytes: usize::MAX,
        };
        let read = |name: &'static str| {
            let history = history.clone();
            async move {
                let page = history.read_since(room(name), 0, all).await.expect("read");
                let rows: Vec<_> = page
                    .messages
                    .iter()
                    .map(|m| {
                        let id = m.client_id.as_ref().map(|i| i.as_str().to_owned());
                        let text = m.text.to_string();
                        (m.seq, m.sender.to_string(), id, text, m.timestamp.unix_ms())
                    })
                    .collect();
                (rows, page.head)
            }
        };
        let kept = |seq, sender: &str, id: Option<&str>, text: &str, ts| {
            (
                seq,
                sender.to_owned(),
                id.map(str::to_owned),
                text.to_owned(),
                ts,
            )
        };
        assert_eq!(
            read("lobby").await,
            (
                vec![
                    kept(1, "ann", Some("k1"), "hi", 10),
                    kept(2, "bob", None, "hey", 11)
                ],
                2
            )
        );
        assert_eq!(
            read("team").await,
            (
                vec![kept(1, "lobby", Some("k1"), "a name both ways", 12)],
                1
            )
        );
        let resent = NewMessage {
            room: room("lobby"),
            sender: UserName::new("ann").expect("name"),
            text: ChatText::new("hi").expect("text"),
            client_id: Some(ClientMsgId::new("k1").expect("id")),
            origin: 0,
        };
        let fresh = NewMessage {
            client_id: Some(ClientMsgId::new("k2").expect("id")),
            ..resent.clone()
        };
        let out = history
            .append_batch(vec![resent, fresh], Timestamp::from_unix_ms(20))
            .await
            .expect("append");
        assert!(
            matches!(&out[..], [Appended::Duplicate(d), Appended::New(n)] if d.seq == 1 && n.seq == 3),
            "a chat stored before the migration is still known by its id: {out:?}"
        );
    }

    #[test]
    fn a_file_from_a_newer_server_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .expect("set");
        let err = Database::open(dir.path()).expect_err("refused");
        assert!(matches!(err, DbError::TooNew { .. }), "{err}");
    }
}
