//! The embedded history backend: the messages and rooms tables of the node's [`Database`].
//!
//! Appends run on the database's one writer connection (one transaction, one fsync per batch); replays
//! read from its reader pool, which WAL lets run while the writer commits. Each room's newest `seq` and
//! whether it is private are cached for the writer (bounded; reloaded from the table on a miss).
//!
//! A message row names its room and sender by their number in the `names` table, not by the strings:
//! rows and dedupe entries are smaller, so a commit writes fewer pages. The writer keeps the numbers it
//! used in memory too; reads turn them back into names with a join. Names no message uses any more
//! (retention deleted their last one) are swept at most once a day, beside the relay.

use super::{
    Appended, FRAME_OVERHEAD, History, HistoryError, NewMessage, Page, PageLimit, Retention,
    RoomInfo, StoredMessage,
};
use crate::db::Database;
use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use shared::{ChatText, ClientMsgId, RoomId, RoomSummary, Seq, Timestamp, UserName};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

/// Rooms whose head the writer keeps in memory; past this the cache starts over.
const MAX_CACHED_ROOMS: usize = 10_000;
/// Room and sender names whose number the writer keeps in memory; past this the cache starts over.
const MAX_CACHED_NAMES: usize = 50_000;
/// Least time between two sweeps of unused names (each reads the whole messages table once).
const SWEEP_NAMES_EVERY: Duration = Duration::from_secs(24 * 3600);

/// History in the node's SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteHistory {
    db: Database,
    /// Only touched while holding the database's writer connection, so it always agrees with what that
    /// connection committed.
    cache: Arc<Mutex<WriterCache>>,
    /// When names were last swept, and whether retention has deleted messages since.
    sweep: Arc<Mutex<Sweep>>,
}

#[derive(Debug, Default)]
struct Sweep {
    last: Option<Timestamp>,
    deleted_since: bool,
    /// The last sweep's task: it runs beside the relay, whose retention step would otherwise wait for
    /// its read of the whole messages table.
    running: Option<tokio::task::JoinHandle<()>>,
}

/// What the writer remembers between batches.
#[derive(Debug, Default)]
struct WriterCache {
    /// Each room's newest `seq` as committed and whether it is private.
    rooms: HashMap<RoomId, RoomState>,
    /// The number of each room and sender name in `names`. Names are deleted only by a sweep, which
    /// clears this in the same transaction, so only a rollback can make an entry wrong.
    names: HashMap<String, i64>,
    /// An append ran and its commit has not been seen to succeed: the cache may be ahead of the
    /// database, and the next append starts over.
    unsettled: bool,
    /// While a sweep of unused names runs: every name number the writer used since it began.
    noted: Option<HashSet<i64>>,
}

impl WriterCache {
    /// Forgets the rooms and names: after a rollback, they may be ahead of the database. (Not `noted`:
    /// a sweep must still spare the names that committed appends used.)
    fn clear(&mut self) {
        self.rooms.clear();
        self.names.clear();
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RoomState {
    head: Seq,
    private: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteHistory {
    /// History in `db`.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            cache: Arc::default(),
            sweep: Arc::default(),
        }
    }

    /// Deletes the names no message uses any more, and returns how many went; a name that comes back
    /// later gets a new number. The messages are read from a snapshot, without holding the writer; a
    /// name the writer uses meanwhile is spared. One runs at a time ([`History::prune`] starts them).
    async fn sweep_names(&self) -> Result<u64, HistoryError> {
        // In a write: appends committed before it are in the snapshot read next, and the writer notes
        // the names of every append after it.
        let cache = Arc::clone(&self.cache);
        self.db
            .write(move |_| {
                lock(&cache).noted = Some(HashSet::new());
                Ok::<_, HistoryError>(())
            })
            .await?;
        let used: Result<HashSet<i64>, HistoryError> = self
            .db
            .read(|c| {
                let mut stmt =
                    c.prepare("SELECT room FROM messages UNION SELECT sender FROM messages")?;
                let used = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(used)
            })
            .await;
        let cache = Arc::clone(&self.cache);
        self.db
            .write(move |tx| {
                let mut cache = lock(&cache);
                let noted = cache.noted.take().unwrap_or_default();
                let used = used?;
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM names")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut delete = tx.prepare("DELETE FROM names WHERE id = ?1")?;
                let mut deleted = 0;
                for id in ids {
                    if !used.contains(&id) && !noted.contains(&id) {
                        deleted += delete.execute([id])? as u64;
                    }
                }
                cache.names.clear();
                Ok(deleted)
            })
            .await
    }
}

fn room_state(tx: &Transaction<'_>, room: &RoomId) -> Result<RoomState, HistoryError> {
    let row: Option<(i64, bool)> = tx
        .query_row(
            "SELECT head, private FROM rooms WHERE name = ?1",
            [room.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(
        row.map_or_else(RoomState::default, |(head, private)| RoomState {
            head: head as Seq,
            private,
        }),
    )
}

/// The number `names` gives `name`, which it is given if it has none yet.
fn name_id(
    tx: &Transaction<'_>,
    names: &mut HashMap<String, i64>,
    name: &str,
) -> Result<i64, HistoryError> {
    if let Some(&id) = names.get(name) {
        return Ok(id);
    }
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM names WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO names (name) VALUES (?1)")?
                .execute([name])?;
            tx.last_insert_rowid()
        }
    };
    if names.len() >= MAX_CACHED_NAMES {
        names.clear();
    }
    names.insert(name.to_owned(), id);
    Ok(id)
}

fn append(
    tx: &Transaction<'_>,
    cache: &mut WriterCache,
    batch: Vec<NewMessage>,
    now: Timestamp,
) -> Result<Vec<Appended>, HistoryError> {
    if cache.unsettled {
        cache.clear();
    }
    cache.unsettled = true;
    let mut out = Vec::with_capacity(batch.len());
    let mut touched: HashMap<RoomId, RoomState> = HashMap::new();
    for m in &batch {
        if !touched.contains_key(&m.room) {
            let state = match cache.rooms.get(&m.room) {
                Some(s) => *s,
                None => room_state(tx, &m.room)?,
            };
            touched.insert(m.room.clone(), state);
        }
    }
    let mut find = tx.prepare_cached(
        "SELECT seq, ts FROM messages WHERE room = ?1 AND sender = ?2 AND client_id = ?3",
    )?;
    // A client id the sender already stored in the room is refused by the unique index, which then
    // tells a duplicate from a new message without a lookup of its own.
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (room, seq, sender, client_id, text, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT DO NOTHING",
    )?;
    let mut is_member =
        tx.prepare_cached("SELECT 1 FROM room_members WHERE room = ?1 AND user = ?2")?;
    for m in batch {
        let state = touched.entry(m.room.clone()).or_default();
        if state.private && !is_member.exists(params![m.room.as_str(), m.sender.as_str()])? {
            out.push(Appended::Forbidden);
            continue;
        }
        let room = name_id(tx, &mut cache.names, m.room.as_str())?;
        let sender = name_id(tx, &mut cache.names, m.sender.as_str())?;
        if let Some(noted) = &mut cache.noted {
            noted.extend([room, sender]);
        }
        let inserted = insert.execute(params![
            room,
            (state.head + 1) as i64,
            sender,
            m.client_id.as_ref().map(ClientMsgId::as_str),
            m.text.as_str(),
            now.unix_ms(),
        ])?;
        if inserted == 0 {
            let id = m.client_id.as_ref().map_or("", ClientMsgId::as_str);
            let (seq, ts): (i64, i64) =
                find.query_row(params![room, sender, id], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
        state.head += 1;
        out.push(Appended::New(StoredMessage {
            room: m.room,
            seq: state.head,
            sender: m.sender,
            text: m.text,
            timestamp: now,
            client_id: m.client_id,
        }));
    }
    let mut set_head = tx.prepare_cached(
        "INSERT INTO rooms (name, head) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET head = excluded.head",
    )?;
    for (room, state) in &touched {
        set_head.execute(params![room.as_str(), state.head as i64])?;
    }
    if cache.rooms.len() + touched.len() > MAX_CACHED_ROOMS {
        cache.rooms.clear();
    }
    cache.rooms.extend(touched);
    Ok(out)
}

fn prune(tx: &Transaction<'_>, retention: Retention, now: Timestamp) -> Result<u64, HistoryError> {
    let cutoff = retention.cutoff(now).map(Timestamp::unix_ms);
    if retention.count == 0 && cutoff.is_none() {
        return Ok(0);
    }
    let heads: Vec<(String, i64)> = tx
        .prepare("SELECT name, head FROM rooms")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // Reads only the messages that go (and one more): a room's messages are stored in `seq` order,
    // and within a room a later `seq` is never stored earlier (one writer stamps each batch), so the
    // first message new enough ends the old ones. Were the clock ever set back, a room would keep its
    // messages until the later-stamped ones age out: retention errs towards keeping, never deleting.
    let mut first_new = tx.prepare(
        "SELECT seq FROM messages WHERE room = (SELECT id FROM names WHERE name = ?1) AND ts >= ?2 \
         ORDER BY seq LIMIT 1",
    )?;
    let mut delete = tx.prepare(
        "DELETE FROM messages WHERE room = (SELECT id FROM names WHERE name = ?1) AND seq < ?2",
    )?;
    let mut deleted = 0;
    for (room, head) in heads {
        let mut keep_from = if retention.count > 0 {
            head - retention.count as i64 + 1
        } else {
            1
        };
        if let Some(cutoff) = cutoff {
            let first: Option<i64> = first_new
                .query_row(params![room, cutoff], |r| r.get(0))
                .optional()?;
            keep_from = keep_from.max(first.unwrap_or(head + 1));
        }
        if keep_from > 1 {
            deleted += delete.execute(params![room, keep_from])?;
        }
    }
    Ok(deleted as u64)
}

/// Where a page starts.
#[derive(Debug, Clone, Copy)]
enum From {
    /// The oldest messages with a larger `seq`.
    After(Seq),
    /// The newest messages with a smaller `seq`.
    Before(Seq),
}

fn read_page(
    conn: &Connection,
    room: RoomId,
    from: From,
    limit: PageLimit,
) -> Result<Page, HistoryError> {
    let tx = conn.unchecked_transaction()?;
    // Cached statements: parsing them anew took as long as running them.
    let head: Option<i64> = tx
        .prepare_cached("SELECT head FROM rooms WHERE name = ?1")?
        .query_row([room.as_str()], |r| r.get(0))
        .optional()?;
    let head = head.map_or(0, |h| h as Seq);
    let first: Option<i64> = tx
        .prepare_cached(
            "SELECT MIN(seq) FROM messages WHERE room = (SELECT id FROM names WHERE name = ?1)",
        )?
        .query_row([room.as_str()], |r| r.get(0))?;
    let first_retained = first.map_or(head + 1, |f| f as Seq);
    let (sql, bound) = match from {
        From::After(seq) => (
            "SELECT m.seq, s.name, m.client_id, m.text, m.ts FROM messages m LEFT JOIN names s \
             ON s.id = m.sender WHERE m.room = (SELECT id FROM names WHERE name = ?1) AND m.seq > ?2 \
             ORDER BY m.seq LIMIT ?3",
            seq,
        ),
        From::Before(seq) => (
            "SELECT m.seq, s.name, m.client_id, m.text, m.ts FROM messages m LEFT JOIN names s \
             ON s.id = m.sender WHERE m.room = (SELECT id FROM names WHERE name = ?1) AND m.seq < ?2 \
             ORDER BY m.seq DESC LIMIT ?3",
            seq,
        ),
    };
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query(params![
        room.as_str(),
        bound.min(i64::MAX as u64) as i64,
        limit.messages as i64
    ])?;
    let corrupt = |detail: String| HistoryError::Corrupt {
        room: room.to_string(),
        detail,
    };
    let mut messages = Vec::new();
    let mut bytes = 0;
    while bytes < limit.bytes {
        let Some(row) = rows.next()? else { break };
        let text: String = row.get(3)?;
        bytes += text.len() + FRAME_OVERHEAD;
        messages.push(StoredMessage {
            room: room.clone(),
            seq: row.get::<_, i64>(0)? as Seq,
            sender: row
                .get::<_, Option<String>>(1)?
                .ok_or_else(|| corrupt("a sender number without a name".to_owned()))
                .and_then(|s| UserName::new(s).map_err(|e| corrupt(e.to_string())))?,
            text: ChatText::new(text).map_err(|e| corrupt(e.to_string()))?,
            timestamp: Timestamp::from_unix_ms(row.get(4)?),
            client_id: row
                .get::<_, Option<String>>(2)?
                .map(ClientMsgId::new)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
        });
    }
    drop(rows);
    drop(stmt);
    tx.finish()?;
    if let From::Before(_) = from {
        messages.reverse(); // read newest first
    }
    Ok(Page {
        messages,
        head,
        first_retained,
    })
}

fn room_info(conn: &Connection, room: &RoomId) -> Result<Option<RoomInfo>, HistoryError> {
    let row: Option<(bool, Option<String>)> = conn
        .prepare_cached("SELECT private, owner FROM rooms WHERE name = ?1")?
        .query_row([room.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((private, owner)) = row else {
        return Ok(None);
    };
    let mut members = Vec::new();
    if private {
        let mut stmt = conn.prepare_cached("SELECT user FROM room_members WHERE room = ?1")?;
        for user in stmt.query_map([room.as_str()], |r| r.get::<_, String>(0))? {
            if let Ok(user) = UserName::new(user?) {
                members.push(user);
            }
        }
    }
    Ok(Some(RoomInfo {
        private,
        owner: owner.and_then(|o| UserName::new(o).ok()),
        members,
    }))
}

impl History for SqliteHistory {
    fn append_batch(
        &self,
        batch: Vec<NewMessage>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Appended>, HistoryError>> {
        let cache = Arc::clone(&self.cache);
        Box::pin(async move {
            let result = self
                .db
                .write(move |tx| append(tx, &mut lock(&cache), batch, now))
                .await;
            if result.is_ok() {
                lock(&self.cache).unsettled = false;
            }
            // Rolled back (or the commit failed): the next append starts over.
            result
        })
    }

    fn read_since(
        &self,
        room: RoomId,
        since: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>> {
        Box::pin(
            self.db
                .read(move |c| read_page(c, room, From::After(since), limit)),
        )
    }

    fn read_before(
        &self,
        room: RoomId,
        before: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>> {
        Box::pin(
            self.db
                .read(move |c| read_page(c, room, From::Before(before), limit)),
        )
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<u64, HistoryError>> {
        Box::pin(async move {
            let deleted = self.db.write(move |tx| prune(tx, retention, now)).await?;
            let mut sweep = lock(&self.sweep);
            sweep.deleted_since |= deleted > 0;
            let every = SWEEP_NAMES_EVERY.as_millis() as i64;
            let since = sweep
                .last
                .map(|last| now.unix_ms().saturating_sub(last.unix_ms()));
            let idle = sweep.running.as_ref().is_none_or(|r| r.is_finished());
            if sweep.deleted_since && idle && since.is_none_or(|ms| ms >= every) {
                sweep.last = Some(now);
                sweep.deleted_since = false;
                let history = self.clone();
                sweep.running = Some(tokio::spawn(async move {
                    match history.sweep_names().await {
                        Ok(swept) => tracing::debug!(swept, "unused names deleted"),
                        Err(e) => tracing::warn!(error = %e, "sweeping unused names failed"),
                    }
                }));
            }
            Ok(deleted)
        })
    }

    fn create_room(
        &self,
        room: RoomId,
        owner: UserName,
        private: bool,
    ) -> BoxFuture<'_, Result<bool, HistoryError>> {
        let cache = Arc::clone(&self.cache);
        Box::pin(self.db.write(move |tx| {
            let created = tx.execute(
                "INSERT INTO rooms (name, head, private, owner) VALUES (?1, 0, ?2, ?3) ON CONFLICT DO NOTHING",
                params![room.as_str(), private, owner.as_str()],
            )? == 1;
            if created && private {
                tx.execute(
                    "INSERT INTO room_members (room, user) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![room.as_str(), owner.as_str()],
                )?;
            }
            lock(&cache).rooms.remove(&room);
            Ok(created)
        }))
    }

    fn room(&self, room: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, HistoryError>> {
        Box::pin(self.db.read(move |c| room_info(c, &room)))
    }

    fn set_member(
        &self,
        room: RoomId,
        user: UserName,
        member: bool,
    ) -> BoxFuture<'_, Result<bool, HistoryError>> {
        Box::pin(self.db.write(move |tx| {
            let private: Option<bool> = tx
                .query_row(
                    "SELECT private FROM rooms WHERE name = ?1",
                    [room.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if private != Some(true) {
                return Ok(false);
            }
            let sql = if member {
                "INSERT INTO room_members (room, user) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM room_members WHERE room = ?1 AND user = ?2"
            };
            tx.execute(sql, params![room.as_str(), user.as_str()])?;
            Ok(true)
        }))
    }

    fn forget_user(&self, user: UserName) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(self.db.write(move |tx| {
            tx.execute("DELETE FROM room_members WHERE user = ?1", [user.as_str()])?;
            tx.execute("DELETE FROM user_rooms WHERE user = ?1", [user.as_str()])?;
            tx.execute(
                "UPDATE rooms SET owner = NULL WHERE owner = ?1",
                [user.as_str()],
            )?;
            Ok(())
        }))
    }

    fn rooms_of(&self, user: UserName) -> BoxFuture<'_, Result<Vec<RoomSummary>, HistoryError>> {
        Box::pin(self.db.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT u.room, u.last_read, COALESCE(r.head, 0), COALESCE(r.private, 0)
                 FROM user_rooms u LEFT JOIN rooms r ON r.name = u.room
                 WHERE u.user = ?1 ORDER BY u.room",
            )?;
            let rows = stmt.query_map([user.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })?;
            let mut rooms = Vec::new();
            for row in rows {
                let (name, last_read, head, private) = row?;
                let room = RoomId::new(&name).map_err(|e| HistoryError::Corrupt {
                    room: name.clone(),
                    detail: e.to_string(),
                })?;
                rooms.push(RoomSummary {
                    room,
                    last_read: last_read.max(0) as Seq,
                    head: head.max(0) as Seq,
                    private,
                });
            }
            Ok(rooms)
        }))
    }

    fn keep_room(
        &self,
        user: UserName,
        room: RoomId,
        keep: bool,
    ) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(self.db.write(move |tx| {
            let sql = if keep {
                "INSERT INTO user_rooms (user, room) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM user_rooms WHERE user = ?1 AND room = ?2"
            };
            tx.execute(sql, params![user.as_str(), room.as_str()])?;
            Ok(())
        }))
    }

    fn mark_read(
        &self,
        user: UserName,
        room: RoomId,
        seq: Seq,
    ) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(self.db.write(move |tx| {
            tx.execute(
                "UPDATE user_rooms SET last_read = ?3 WHERE user = ?1 AND room = ?2 AND last_read < ?3",
                params![user.as_str(), room.as_str(), seq.min(i64::MAX as u64) as i64],
            )?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(dir: &std::path::Path) -> SqliteHistory {
        SqliteHistory::new(Database::open(dir).expect("open"))
    }

    fn up_to(messages: usize) -> PageLimit {
        PageLimit {
            messages,
            bytes: usize::MAX,
        }
    }

    fn msg(room: &str, sender: &str, text: &str, id: Option<&str>) -> NewMessage {
        NewMessage {
            room: RoomId::new(room).expect("room"),
            sender: UserName::new(sender).expect("name"),
            text: ChatText::new(text).expect("text"),
            client_id: id.map(|i| ClientMsgId::new(i).expect("id")),
            origin: 0,
        }
    }

    fn seqs(out: &[Appended]) -> Vec<(bool, Seq)> {
        out.iter()
            .map(|a| match a {
                Appended::New(m) => (true, m.seq),
                Appended::Duplicate(m) => (false, m.seq),
                Appended::Forbidden => (false, 0),
            })
            .collect()
    }

    #[tokio::test]
    async fn seq_is_per_room_dense_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
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

        let h = open(dir.path());
        let out = h
            .append_batch(vec![msg("a", "ann", "3", None)], now)
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(true, 3)]);
        let page = h
            .read_since(RoomId::new("a").expect("room"), 1, up_to(10))
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
        let h = open(dir.path());
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
            .read_since(RoomId::new("a").expect("room"), 0, up_to(10))
            .await
            .expect("read");
        assert_eq!(page.messages.len(), 2);
    }

    #[tokio::test]
    async fn retention_by_count_and_age_keeps_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
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
        let page = h
            .read_since(room.clone(), 0, up_to(100))
            .await
            .expect("read");
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
        let page = h
            .read_since(room.clone(), 0, up_to(100))
            .await
            .expect("read");
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

    impl SqliteHistory {
        /// Waits for the sweep the last prune started, if it started one.
        async fn swept(&self) {
            let running = lock(&self.sweep).running.take();
            if let Some(running) = running {
                running.await.expect("sweep task");
            }
        }
    }

    fn names(h: &SqliteHistory) -> Vec<String> {
        rusqlite::Connection::open(h.db.path())
            .expect("open")
            .prepare("SELECT name FROM names ORDER BY name")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("names")
    }

    async fn senders_and_texts(h: &SqliteHistory, room: &str) -> Vec<(String, String)> {
        let page = h
            .read_since(RoomId::new(room).expect("room"), 0, up_to(1000))
            .await
            .expect("read");
        page.messages
            .iter()
            .map(|m| (m.sender.to_string(), m.text.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn names_whose_last_message_retention_deleted_are_swept_once_a_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        let keep1 = Retention {
            count: 1,
            age: Duration::ZERO,
        };
        let t0 = Timestamp::from_unix_ms(1_000);
        h.append_batch(vec![msg("a", "ann", "1", None)], t0)
            .await
            .expect("append");
        h.append_batch(vec![msg("a", "bob", "2", None)], t0)
            .await
            .expect("append");
        assert_eq!(h.prune(keep1, t0).await.expect("prune"), 1);
        h.swept().await;
        assert_eq!(
            names(&h),
            ["a", "bob"],
            "ann's only message went, and her name"
        );

        h.append_batch(vec![msg("a", "ann", "3", None)], t0)
            .await
            .expect("append");
        assert_eq!(
            senders_and_texts(&h, "a").await,
            [("bob", "2"), ("ann", "3")].map(|(s, t)| (s.to_owned(), t.to_owned())),
            "a swept name that comes back is numbered anew"
        );
        assert_eq!(names(&h), ["a", "ann", "bob"]);

        let an_hour_on = Timestamp::from_unix_ms(t0.unix_ms() + 3_600_000);
        h.append_batch(vec![msg("a", "cat", "4", None)], an_hour_on)
            .await
            .expect("append");
        assert_eq!(h.prune(keep1, an_hour_on).await.expect("prune"), 2);
        h.swept().await;
        assert_eq!(
            names(&h),
            ["a", "ann", "bob", "cat"],
            "not a day since the last sweep: unused names wait"
        );
        let a_day_on = Timestamp::from_unix_ms(t0.unix_ms() + 86_400_000);
        assert_eq!(h.prune(keep1, a_day_on).await.expect("prune"), 0);
        h.swept().await;
        assert_eq!(names(&h), ["a", "cat"]);
        assert_eq!(
            senders_and_texts(&h, "a").await,
            [("cat".to_owned(), "4".to_owned())]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_spares_the_names_of_chats_stored_while_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        let now = Timestamp::from_unix_ms(1_000);
        // New senders chat while sweeps run over and over: each sweep reads the messages in one
        // snapshot and deletes in a later write, and chats stored in between use names it did not see.
        let writer = {
            let h = h.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    let sender = format!("s{i}");
                    h.append_batch(vec![msg("b", &sender, "hi", None)], now)
                        .await
                        .expect("append");
                }
            })
        };
        while !writer.is_finished() {
            h.sweep_names().await.expect("sweep");
        }
        writer.await.expect("writer");
        h.sweep_names().await.expect("sweep");
        let read = senders_and_texts(&h, "b").await;
        assert_eq!(
            read.len(),
            300,
            "every chat reads back with its sender's name"
        );
        assert!(
            read.iter()
                .enumerate()
                .all(|(i, (s, _))| *s == format!("s{i}"))
        );
    }

    #[tokio::test]
    async fn retention_applies_to_each_room_on_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        // Room a: 6 messages at 0-5 s. Room b: 3 at 3-5 s. Room c: 2 at 10 s. Room d: none yet.
        for i in 0..6 {
            let mut batch = vec![msg("a", "ann", "m", None)];
            if i >= 3 {
                batch.push(msg("b", "bob", "m", None));
            }
            h.append_batch(batch, Timestamp::from_unix_ms(i * 1000))
                .await
                .expect("append");
        }
        h.append_batch(
            vec![msg("c", "cat", "m", None), msg("c", "cat", "m", None)],
            Timestamp::from_unix_ms(10_000),
        )
        .await
        .expect("append");
        h.create_room(
            RoomId::new("d").expect("room"),
            UserName::new("dan").expect("name"),
            false,
        )
        .await
        .expect("create");

        // At 12 s, keeping 7.5 s: what was stored before 4.5 s goes (a's first 5, b's first 2).
        let by_age = Retention {
            count: 0,
            age: Duration::from_millis(7_500),
        };
        let deleted = h
            .prune(by_age, Timestamp::from_unix_ms(12_000))
            .await
            .expect("prune");
        assert_eq!(deleted, 7);
        for (room, head, left) in [("a", 6, 1), ("b", 3, 1), ("c", 2, 2), ("d", 0, 0)] {
            let page = h
                .read_since(RoomId::new(room).expect("room"), 0, up_to(100))
                .await
                .expect("read");
            assert_eq!(
                (page.head, page.messages.len()),
                (head, left),
                "room {room}"
            );
        }

        // Both limits at once: the stricter one wins in each room.
        h.append_batch(
            (0..5).map(|_| msg("c", "cat", "m", None)).collect(),
            Timestamp::from_unix_ms(20_000),
        )
        .await
        .expect("append");
        let both = Retention {
            count: 3,
            age: Duration::from_secs(5),
        };
        assert_eq!(
            h.prune(both, Timestamp::from_unix_ms(21_000))
                .await
                .expect("prune"),
            6,
            "a and b lose their last (too old) message; c keeps its newest 3 of 7 (all new enough)"
        );
        let page = h
            .read_since(RoomId::new("c").expect("room"), 0, up_to(100))
            .await
            .expect("read");
        let kept: Vec<Seq> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!((page.first_retained, kept), (5, vec![5, 6, 7]));
    }

    #[tokio::test]
    async fn a_failed_commit_stores_nothing_and_forgets_the_heads_it_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        let now = Timestamp::from_unix_ms(1_000);
        // A real SQLite failure on demand: any message saying "boom" aborts its transaction.
        rusqlite::Connection::open(h.db.path())
            .expect("open")
            .execute_batch(
                "CREATE TRIGGER fail BEFORE INSERT ON messages WHEN NEW.text = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .expect("trigger");
        let out = h
            .append_batch(vec![msg("a", "ann", "1", None)], now)
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(true, 1)]);
        // "cat" is a name the failed batch numbers, and the rollback takes back.
        let failed = h
            .append_batch(
                vec![msg("a", "cat", "2", None), msg("a", "ann", "boom", None)],
                now,
            )
            .await;
        assert!(failed.is_err(), "the whole batch fails");
        let out = h
            .append_batch(vec![msg("a", "cat", "2", None)], now)
            .await
            .expect("append");
        assert_eq!(
            seqs(&out),
            vec![(true, 2)],
            "no gap left by the failed batch"
        );
        let page = h
            .read_since(RoomId::new("a").expect("room"), 0, up_to(10))
            .await
            .expect("read");
        let read: Vec<_> = page
            .messages
            .iter()
            .map(|m| (m.sender.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            read,
            vec![("ann", "1"), ("cat", "2")],
            "the sender's name numbered again, not the number the rollback took back"
        );
    }

    #[tokio::test]
    async fn private_rooms_refuse_non_members_inside_the_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        let (room, ann, bob) = (
            RoomId::new("team").expect("room"),
            UserName::new("ann").expect("n"),
            UserName::new("bob").expect("n"),
        );
        let now = Timestamp::from_unix_ms(1_000);
        // Cached as public first: creating it must not leave that cache behind.
        h.append_batch(vec![msg("team", "bob", "early", None)], now)
            .await
            .expect("append");
        assert!(
            !h.create_room(room.clone(), ann.clone(), true)
                .await
                .expect("create"),
            "a room with history is taken"
        );
        let team2 = RoomId::new("team2").expect("room");
        let out = h
            .append_batch(vec![msg("team2", "bob", "hi", None)], now)
            .await
            .expect("append");
        assert_eq!(seqs(&out), vec![(true, 1)]);
        assert!(
            !h.create_room(team2, ann.clone(), true)
                .await
                .expect("create")
        );
        let fresh = RoomId::new("fresh").expect("room");
        assert!(
            h.create_room(fresh.clone(), ann.clone(), true)
                .await
                .expect("create")
        );
        assert!(
            !h.create_room(fresh.clone(), bob.clone(), false)
                .await
                .expect("create"),
            "created once"
        );
        let out = h
            .append_batch(
                vec![
                    msg("fresh", "bob", "no", None),
                    msg("fresh", "ann", "yes", None),
                ],
                now,
            )
            .await
            .expect("append");
        assert!(matches!(out[0], Appended::Forbidden));
        assert_eq!(seqs(&out[1..]), vec![(true, 1)]);
        assert!(
            h.set_member(fresh.clone(), bob.clone(), true)
                .await
                .expect("add")
        );
        let info = h.room(fresh.clone()).await.expect("room").expect("exists");
        assert_eq!(
            (info.private, info.owner.as_ref(), info.members.len()),
            (true, Some(&ann), 2)
        );
        h.set_member(fresh.clone(), bob.clone(), false)
            .await
            .expect("remove");
        let out = h
            .append_batch(vec![msg("fresh", "bob", "again", None)], now)
            .await
            .expect("append");
        assert!(matches!(out[0], Appended::Forbidden), "removed at once");
        assert!(
            !h.set_member(RoomId::lobby(), bob, true)
                .await
                .expect("public"),
            "public rooms have no members to add"
        );
    }

    #[tokio::test]
    async fn pages_stop_at_their_byte_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = open(dir.path());
        let big = "x".repeat(1000);
        let batch = (0..10).map(|_| msg("a", "ann", &big, None)).collect();
        h.append_batch(batch, Timestamp::from_unix_ms(0))
            .await
            .expect("append");
        let room = RoomId::new("a").expect("room");
        let limit = PageLimit {
            messages: 100,
            bytes: 3000,
        };
        let page = h.read_since(room.clone(), 0, limit).await.expect("read");
        assert_eq!(page.messages.len(), 3, "3 x (1000 + overhead) reach 3000");
        let tiny = PageLimit {
            messages: 100,
            bytes: 1,
        };
        let page = h.read_since(room, 9, tiny).await.expect("read");
        assert_eq!(page.messages.len(), 1, "at least one message");
    }
}
