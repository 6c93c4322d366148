//! History in Redis, shared by every node: one stream per room, entry id `<seq>-0`.
//!
//! A batch of appends is one pipeline of [`append.lua`](../broker/append.lua) calls, one per message, so
//! one round trip stores the batch; each call is atomic on its own (membership, dedupe, `seq`, append,
//! publish), which is all ordering needs. With `appendfsync always` Redis writes the pipeline's commands
//! to its AOF and fsyncs before it answers, so an `Ok` here means durable, as in the embedded mode.
//!
//! Rooms (owner, private, members) live beside each room's stream, under the same `{room}` hash tag;
//! every change is announced on the control channel so that every node reloads the room's access.

use super::{
    Appended, FRAME_OVERHEAD, History, HistoryError, NewMessage, Page, PageLimit, Retention,
    RoomInfo, StoredMessage,
};
use crate::broker::{Broker, CONTROL_CHANNEL, keys};
use futures_util::future::BoxFuture;
use redis::Value;
use shared::{ChatText, ClientMsgId, RoomId, RoomSummary, Seq, Timestamp, UserName};
use std::{collections::HashMap, sync::Arc};

/// Most messages one call of the prune script deletes (it runs again while there are more).
const PRUNE_BUDGET: u64 = 10_000;

/// History in Redis.
#[derive(Debug)]
pub struct RedisHistory {
    broker: Arc<Broker>,
}

impl RedisHistory {
    /// History through `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    async fn room_op(&self, room: &RoomId, args: &[&str]) -> Result<bool, HistoryError> {
        let mut invocation = self.broker.scripts.rooms.prepare_invoke();
        invocation.key(keys::meta(room)).key(keys::members(room));
        invocation
            .arg(args[0])
            .arg(CONTROL_CHANNEL)
            .arg(room.as_str());
        for arg in &args[1..] {
            invocation.arg(*arg);
        }
        let done: i64 = self.broker.script(&invocation).await?;
        Ok(done == 1)
    }

    /// One page after `seq` (or, with `before`, the newest page below it), with the room's bounds
    /// (`read.lua`); the byte limit counts from the first message read, the newest for `before`.
    async fn read_page(
        &self,
        room: RoomId,
        seq: Seq,
        limit: PageLimit,
        before: bool,
    ) -> Result<Page, HistoryError> {
        let mut invocation = self.broker.scripts.read.prepare_invoke();
        invocation
            .key(keys::meta(&room))
            .key(keys::log(&room))
            .arg(seq)
            .arg(limit.messages);
        if before {
            invocation.arg("before");
        }
        let reply: Vec<Value> = self.broker.script(&invocation).await?;
        let mut values = reply.iter();
        let head = values.next().and_then(number).unwrap_or(0);
        let first_retained = values.next().and_then(number).unwrap_or(head + 1);
        let mut messages = Vec::new();
        let mut bytes = 0;
        for value in values {
            if bytes >= limit.bytes {
                break;
            }
            let message = entry(&room, value)?;
            bytes += message.text.as_str().len() + FRAME_OVERHEAD;
            messages.push(message);
        }
        if before {
            messages.reverse(); // read newest first
        }
        Ok(Page {
            messages,
            head,
            first_retained,
        })
    }
}

fn corrupt(room: &RoomId, detail: impl Into<String>) -> HistoryError {
    HistoryError::Corrupt {
        room: room.to_string(),
        detail: detail.into(),
    }
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    string(value)?.parse().ok()
}

/// A message from its stored fields (a stream entry's, the append script's duplicate reply, or what it
/// published).
pub(crate) fn stored(
    room: &RoomId,
    seq: Seq,
    sender: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    id: Option<String>,
) -> Result<StoredMessage, HistoryError> {
    let sender =
        UserName::new(sender.unwrap_or_default()).map_err(|e| corrupt(room, e.to_string()))?;
    let text = ChatText::new(text.unwrap_or_default()).map_err(|e| corrupt(room, e.to_string()))?;
    let ts: i64 = ts
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| corrupt(room, "no timestamp"))?;
    let client_id = match id {
        Some(id) if !id.is_empty() => {
            Some(ClientMsgId::new(id).map_err(|e| corrupt(room, e.to_string()))?)
        }
        _ => None,
    };
    Ok(StoredMessage {
        room: room.clone(),
        seq,
        sender,
        text,
        timestamp: Timestamp::from_unix_ms(ts),
        client_id,
    })
}

/// A stream entry (`[id, [field, value, ...]]`) as a message.
fn entry(room: &RoomId, value: &Value) -> Result<StoredMessage, HistoryError> {
    let Value::Array(parts) = value else {
        return Err(corrupt(room, "stream entry is not an array"));
    };
    let [id, Value::Array(fields)] = parts.as_slice() else {
        return Err(corrupt(room, "stream entry has no fields"));
    };
    let seq = string(id)
        .and_then(|id| id.split('-').next()?.parse().ok())
        .ok_or_else(|| corrupt(room, "bad stream entry id"))?;
    let mut map: HashMap<String, String> = HashMap::new();
    for pair in fields.chunks(2) {
        if let [k, v] = pair
            && let (Some(k), Some(v)) = (string(k), string(v))
        {
            map.insert(k, v);
        }
    }
    stored(
        room,
        seq,
        map.remove("s"),
        map.remove("t"),
        map.remove("ts"),
        map.remove("id"),
    )
}

impl History for RedisHistory {
    fn append_batch(
        &self,
        batch: Vec<NewMessage>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Appended>, HistoryError>> {
        Box::pin(async move {
            let script = &self.broker.scripts.append;
            let mut pipe = redis::pipe();
            // Loading is a no-op for a script Redis knows; after a Redis restart it is what makes the
            // calls below find it.
            pipe.load_script(script).ignore();
            let ts = now.unix_ms().to_string();
            for m in &batch {
                let mut invocation = script.prepare_invoke();
                invocation
                    .key(keys::meta(&m.room))
                    .key(keys::log(&m.room))
                    .key(keys::ids(&m.room))
                    .key(keys::members(&m.room))
                    .arg(m.sender.as_str())
                    .arg(m.text.as_str())
                    .arg(&ts)
                    .arg(m.client_id.as_ref().map_or("", ClientMsgId::as_str))
                    .arg(keys::channel(&m.room))
                    .arg(format!("{}\n{}", self.broker.node(), m.origin));
                pipe.invoke_script(&invocation);
            }
            let replies: Vec<Vec<Option<String>>> = self.broker.pipeline(&pipe).await?;
            if replies.len() != batch.len() {
                return Err(corrupt(
                    &RoomId::lobby(),
                    "pipeline answered the wrong count",
                ));
            }
            batch
                .into_iter()
                .zip(replies)
                .map(|(m, reply)| {
                    let mut reply = reply.into_iter();
                    let kind = reply.next().flatten();
                    let seq = reply.next().flatten().and_then(|s| s.parse().ok());
                    match (kind.as_deref(), seq) {
                        (Some("forbidden"), _) => Ok(Appended::Forbidden),
                        (Some("new"), Some(seq)) => Ok(Appended::New(StoredMessage {
                            room: m.room,
                            seq,
                            sender: m.sender,
                            text: m.text,
                            timestamp: now,
                            client_id: m.client_id,
                        })),
                        (Some("dup"), Some(seq)) => {
                            let mut field = || reply.next().flatten();
                            let (s, t, ts, id) = (field(), field(), field(), field());
                            stored(&m.room, seq, s, t, ts, id).map(Appended::Duplicate)
                        }
                        _ => Err(corrupt(&m.room, "unexpected reply from the append script")),
                    }
                })
                .collect()
        })
    }

    fn broadcasts(&self) -> bool {
        true
    }

    fn read_since(
        &self,
        room: RoomId,
        since: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>> {
        Box::pin(self.read_page(room, since, limit, false))
    }

    fn read_before(
        &self,
        room: RoomId,
        before: Seq,
        limit: PageLimit,
    ) -> BoxFuture<'_, Result<Page, HistoryError>> {
        Box::pin(self.read_page(room, before, limit, true))
    }

    fn prune(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<u64, HistoryError>> {
        Box::pin(async move {
            if retention.count == 0 && retention.age.is_zero() {
                return Ok(0);
            }
            let cutoff = retention
                .cutoff(now)
                .map_or(0, |cutoff| cutoff.unix_ms().max(1));
            let mut deleted = 0;
            for room in self.broker.rooms().await? {
                loop {
                    let mut invocation = self.broker.scripts.prune.prepare_invoke();
                    invocation
                        .key(keys::log(&room))
                        .key(keys::ids(&room))
                        .arg(retention.count)
                        .arg(cutoff)
                        .arg(PRUNE_BUDGET);
                    let n: u64 = self.broker.script(&invocation).await?;
                    deleted += n;
                    if n < PRUNE_BUDGET {
                        break;
                    }
                }
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
        Box::pin(async move {
            let private = if private { "1" } else { "0" };
            self.room_op(&room, &["create", owner.as_str(), private])
                .await
        })
    }

    fn room(&self, room: RoomId) -> BoxFuture<'_, Result<Option<RoomInfo>, HistoryError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.hgetall(keys::meta(&room))
                .smembers(keys::members(&room));
            let (meta, members): (HashMap<String, String>, Vec<String>) =
                self.broker.pipeline(&pipe).await?;
            if meta.is_empty() {
                return Ok(None);
            }
            let private = meta.get("private").is_some_and(|p| p == "1");
            Ok(Some(RoomInfo {
                private,
                owner: meta
                    .get("owner")
                    .and_then(|o| UserName::new(o.as_str()).ok()),
                members: if private {
                    members
                        .into_iter()
                        .filter_map(|m| UserName::new(m).ok())
                        .collect()
                } else {
                    Vec::new()
                },
            }))
        })
    }

    fn set_member(
        &self,
        room: RoomId,
        user: UserName,
        member: bool,
    ) -> BoxFuture<'_, Result<bool, HistoryError>> {
        Box::pin(async move {
            let member = if member { "1" } else { "0" };
            self.room_op(&room, &["member", user.as_str(), member])
                .await
        })
    }

    fn forget_user(&self, user: UserName) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(async move {
            for room in self.broker.rooms().await? {
                self.room_op(&room, &["forget", user.as_str()]).await?;
            }
            let mut del = redis::cmd("DEL");
            del.arg(keys::user_rooms(user.as_str()));
            let _: i64 = self.broker.command(&del).await?;
            Ok(())
        })
    }

    fn rooms_of(&self, user: UserName) -> BoxFuture<'_, Result<Vec<RoomSummary>, HistoryError>> {
        Box::pin(async move {
            let mut range = redis::cmd("ZRANGE");
            range
                .arg(keys::user_rooms(user.as_str()))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
            let listed: Vec<(String, f64)> = self.broker.command(&range).await?;
            let listed: Vec<(RoomId, Seq)> = listed
                .into_iter()
                .filter_map(|(name, read)| Some((RoomId::new(name).ok()?, read.max(0.0) as Seq)))
                .collect();
            let mut metas = redis::pipe();
            for (room, _) in &listed {
                metas
                    .cmd("HMGET")
                    .arg(keys::meta(room))
                    .arg("head")
                    .arg("private");
            }
            let metas: Vec<(Option<u64>, Option<String>)> = if listed.is_empty() {
                Vec::new()
            } else {
                self.broker.pipeline(&metas).await?
            };
            let mut rooms: Vec<RoomSummary> = listed
                .into_iter()
                .zip(metas)
                .map(|((room, last_read), (head, private))| RoomSummary {
                    room,
                    last_read,
                    head: head.unwrap_or(0),
                    private: private.as_deref() == Some("1"),
                })
                .collect();
            rooms.sort_by(|a, b| a.room.cmp(&b.room));
            Ok(rooms)
        })
    }

    fn keep_room(
        &self,
        user: UserName,
        room: RoomId,
        keep: bool,
    ) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(async move {
            let key = keys::user_rooms(user.as_str());
            let cmd = if keep {
                let mut add = redis::cmd("ZADD");
                add.arg(key).arg("NX").arg(0).arg(room.as_str());
                add
            } else {
                let mut rem = redis::cmd("ZREM");
                rem.arg(key).arg(room.as_str());
                rem
            };
            let _: i64 = self.broker.command(&cmd).await?;
            Ok(())
        })
    }

    fn mark_read(
        &self,
        user: UserName,
        room: RoomId,
        seq: Seq,
    ) -> BoxFuture<'_, Result<(), HistoryError>> {
        Box::pin(async move {
            // XX: only a room in the list; GT: only ever raised.
            let mut add = redis::cmd("ZADD");
            add.arg(keys::user_rooms(user.as_str()))
                .arg("XX")
                .arg("GT")
                .arg(seq)
                .arg(room.as_str());
            let _: i64 = self.broker.command(&add).await?;
            Ok(())
        })
    }
}
