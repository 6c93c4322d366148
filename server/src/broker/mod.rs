//! Redis mode: several nodes sharing one Redis (`--redis-url`).
//!
//! Redis carries everything the nodes must agree on:
//! - **order and history**: a room's `seq`, its messages (a stream per room) and the client ids already
//!   stored, changed only by [`append.lua`](append.lua), which checks membership, recognises a resent id,
//!   assigns the next `seq`, appends and publishes in one atomic step, so publish order is `seq` order;
//! - **fan-out**: every node subscribes once to the pattern `chat:room:*` (one subscription per node, not
//!   per room or per client; see ARCHITECTURE.md), and the [`subscriber`] hands each message to this node's
//!   [`crate::sequencer`], which fills any gap from the stream;
//! - **rooms, accounts and sessions**: the same records as the embedded database, plus a control channel
//!   that tells every node when a room's members change or a session is revoked;
//! - **the token signing key**, created once ([`Broker::token_key`]).
//!
//! Every key of a room carries the room in a `{hash tag}`, so one room's keys stay in one Redis Cluster
//! slot. The [`Broker`] owns the command connection (reconnected by the `redis` crate's connection
//! manager), counts round trips in `chat_redis_rtt_seconds`, and logs once when Redis goes away and once
//! when it is back, however many requests fail in between.

pub mod subscriber;

use crate::{hub::ConnId, metrics::Metrics};
use rand::Rng;
use redis::{
    Client, FromRedisValue, Pipeline, RedisResult, Script, ScriptInvocation,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use shared::{RoomId, UserName};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How long one request to Redis may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel on which room changes and revocations are announced to every node.
pub const CONTROL_CHANNEL: &str = "chat:control";
/// What every node subscribes to for room messages.
pub const ROOM_CHANNELS: &str = "chat:room:*";

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Key and channel names.
pub mod keys {
    use shared::RoomId;

    /// A room's counters and settings (hash: `head`, `created`, `private`, `owner`).
    pub fn meta(room: &RoomId) -> String {
        format!("chat:{{{room}}}:meta")
    }
    /// A room's messages (stream; entry id `<seq>-0`).
    pub fn log(room: &RoomId) -> String {
        format!("chat:{{{room}}}:log")
    }
    /// A room's stored client ids (hash: `sender \n id` -> `seq`).
    pub fn ids(room: &RoomId) -> String {
        format!("chat:{{{room}}}:ids")
    }
    /// A private room's members (set).
    pub fn members(room: &RoomId) -> String {
        format!("chat:{{{room}}}:members")
    }
    /// Where a room's messages are published.
    pub fn channel(room: &RoomId) -> String {
        format!("chat:room:{room}")
    }
    /// The pattern matching every room's `meta` key (for scans over all rooms).
    pub const ALL_META: &str = "chat:{*}:meta";
    /// An account, by its case-insensitive name key.
    pub fn user(name_key: &str) -> String {
        format!("chat:user:{name_key}")
    }
    /// The prefix of a session's key; the session id follows.
    pub const SESSION_PREFIX: &str = "chat:session:";
    /// A user's session ids (set).
    pub fn sessions(name: &str) -> String {
        format!("chat:sessions:{name}")
    }
    /// Revoked sessions not yet expired (sorted set: sid -> expiry, unix ms).
    pub const REVOKED: &str = "chat:revoked";
    /// The token signing key.
    pub const TOKEN_KEY: &str = "chat:token-key";
    /// A room's users, per node (hash: node -> `count` then one name per line). See
    /// [`crate::presence`].
    pub fn here(room: &RoomId) -> String {
        format!("chat:{{{room}}}:here")
    }
    /// The nodes alive, for presence (sorted set: node -> until when, unix ms).
    pub const NODES: &str = "chat:nodes";
    /// An account's rooms (sorted set: room -> the newest seq it read there).
    pub fn user_rooms(name: &str) -> String {
        format!("chat:user-rooms:{name}")
    }
    /// A shared token bucket: what it budgets (e.g. `login`) and for whom.
    pub fn throttle(what: &str, key: &str) -> String {
        format!("chat:throttle:{what}:{key}")
    }
    /// A user's connection leases (sorted set: `node \n conn` -> expiry, unix ms).
    pub fn leases(name: &str) -> String {
        format!("chat:leases:{name}")
    }
}

/// The Lua scripts, each one atomic step in Redis.
#[derive(Debug)]
pub struct Scripts {
    /// Stores one chat message (see `append.lua`).
    pub append: Script,
    /// Reads one page of a room (see `read.lua`).
    pub read: Script,
    /// Applies retention to one room (see `prune.lua`).
    pub prune: Script,
    /// Creates rooms and changes members (see `rooms.lua`).
    pub rooms: Script,
    /// Accounts and sessions (see `users.lua`).
    pub users: Script,
    /// Shared token buckets (see `throttle.lua`).
    pub throttle: Script,
    /// Connection leases for the per-user cap (see `leases.lua`).
    pub leases: Script,
}

/// This node's connection to Redis.
#[derive(Debug)]
pub struct Broker {
    client: Client,
    conn: ConnectionManager,
    node: String,
    /// The last request succeeded.
    healthy: AtomicBool,
    /// The subscriber is subscribed and caught up.
    subscribed: AtomicBool,
    metrics: Arc<Metrics>,
    /// The scripts.
    pub scripts: Scripts,
}

impl Broker {
    /// Connects to `url` (fails when Redis cannot be reached now).
    pub async fn connect(url: &str, metrics: Arc<Metrics>) -> RedisResult<Arc<Self>> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_with_config(config).await?;
        let id: u64 = rand::rng().random();
        Ok(Arc::new(Self {
            client,
            conn,
            node: format!("{id:016x}"),
            healthy: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
            metrics,
            scripts: Scripts {
                append: Script::new(include_str!("append.lua")),
                read: Script::new(include_str!("read.lua")),
                prune: Script::new(include_str!("prune.lua")),
                rooms: Script::new(include_str!("rooms.lua")),
                users: Script::new(include_str!("users.lua")),
                throttle: Script::new(include_str!("throttle.lua")),
                leases: Script::new(include_str!("leases.lua")),
            },
        }))
    }

    /// This node's id in published messages (random per start).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node can serve: Redis answers and the subscription is up.
    pub fn ready(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }

    /// Marks the subscription down; whether it was up.
    fn take_subscribed(&self) -> bool {
        self.subscribed.swap(false, Ordering::Relaxed)
    }

    /// Runs `pipeline`.
    pub async fn pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> RedisResult<T> {
        let started = Instant::now();
        let result = pipeline.query_async(&mut self.conn.clone()).await;
        self.observe(result, started)
    }

    /// Runs one script invocation (loading the script when Redis does not know it yet).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let started = Instant::now();
        let result = invocation.invoke_async(&mut self.conn.clone()).await;
        self.observe(result, started)
    }

    /// Runs one command.
    pub async fn command<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let started = Instant::now();
        let result = cmd.query_async(&mut self.conn.clone()).await;
        self.observe(result, started)
    }

    fn observe<T>(&self, result: RedisResult<T>, started: Instant) -> RedisResult<T> {
        self.metrics
            .redis_rtt
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "redis is unavailable: chats are refused with `unavailable` until it is back");
                }
            }
            _ => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis is reachable again");
                }
            }
        }
        result
    }

    /// The token signing key: the one in Redis, or a new one stored there if none is (the first node to
    /// start creates it; all use it).
    pub async fn token_key(&self) -> RedisResult<Vec<u8>> {
        let bytes: [u8; 32] = rand::rng().random();
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(keys::TOKEN_KEY)
            .arg(fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(keys::TOKEN_KEY);
        let (key,): (Vec<u8>,) = self.pipeline(&pipe).await?;
        Ok(key)
    }

    /// Every room that has keys in Redis.
    pub async fn rooms(&self) -> RedisResult<Vec<RoomId>> {
        let mut rooms = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(keys::ALL_META)
                .arg("COUNT")
                .arg(1000);
            let (next, found): (u64, Vec<String>) = self.command(&cmd).await?;
            rooms.extend(found.iter().filter_map(|key| {
                let name = key.strip_prefix("chat:{")?.strip_suffix("}:meta")?;
                RoomId::new(name).ok()
            }));
            if next == 0 {
                return Ok(rooms);
            }
            cursor = next;
        }
    }

    /// Stores this node's share of each room (`count` users, of whom `users` named; none: the share is
    /// dropped), renews its liveness for `ttl`, and announces the rooms marked as changed. See
    /// [`crate::presence`].
    pub async fn set_here(
        &self,
        shares: &[(RoomId, usize, Vec<UserName>, bool)],
        ttl: Duration,
    ) -> RedisResult<()> {
        let until = crate::now().unix_ms() + ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(keys::NODES)
            .arg(until)
            .arg(&self.node)
            .ignore();
        for (room, count, users, changed) in shares {
            if *count == 0 {
                pipe.cmd("HDEL")
                    .arg(keys::here(room))
                    .arg(&self.node)
                    .ignore();
            } else {
                let mut share = count.to_string();
                for user in users {
                    share.push('\n');
                    share.push_str(user.as_str());
                }
                pipe.cmd("HSET")
                    .arg(keys::here(room))
                    .arg(&self.node)
                    .arg(share)
                    .ignore();
            }
            if *changed {
                pipe.cmd("PUBLISH")
                    .arg(CONTROL_CHANNEL)
                    .arg(format!("presence\n{room}"))
                    .ignore();
            }
        }
        self.pipeline(&pipe).await
    }

    /// The shares of `room`'s users that the other live nodes stored: each node's count and names.
    pub async fn here(&self, room: &RoomId) -> RedisResult<Vec<(usize, Vec<UserName>)>> {
        let now = crate::now().unix_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(keys::here(room));
        pipe.cmd("ZRANGEBYSCORE")
            .arg(keys::NODES)
            .arg(now)
            .arg("+inf");
        let (shares, live): (Vec<(String, String)>, Vec<String>) = self.pipeline(&pipe).await?;
        Ok(shares
            .iter()
            .filter(|(node, _)| *node != self.node && live.contains(node))
            .map(|(_, share)| {
                let mut lines = share.split('\n');
                let count = lines.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                (count, lines.filter_map(|l| UserName::new(l).ok()).collect())
            })
            .collect())
    }

    /// Tells the other nodes that `user` is typing in `room` (on the control channel; they announce it
    /// to their own connections in the room).
    pub async fn typing(&self, room: &RoomId, user: &UserName) -> RedisResult<()> {
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(CONTROL_CHANNEL)
            .arg(format!("typing\n{room}\n{user}\n{}", self.node));
        let _: i64 = self.command(&publish).await?;
        Ok(())
    }

    /// Tells the other nodes that `user`'s list of rooms changed (they were invited to a room): their
    /// connections there send it again.
    pub async fn relist(&self, user: &UserName) -> RedisResult<()> {
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(CONTROL_CHANNEL)
            .arg(format!("rooms\n{user}\n{}", self.node));
        let _: i64 = self.command(&publish).await?;
        Ok(())
    }

    /// Takes `cost` tokens (0: takes none, only looks for one) from the shared bucket `key` of `rate` per
    /// second and `burst`; `Err` says how long until there are enough.
    pub async fn throttle(
        &self,
        key: &str,
        rate: f64,
        burst: u32,
        cost: f64,
    ) -> RedisResult<Result<(), Duration>> {
        let mut invocation = self.scripts.throttle.key(key);
        invocation.arg(rate).arg(burst).arg(cost);
        let wait_ms: u64 = self.script(&invocation).await?;
        Ok(match wait_ms {
            0 => Ok(()),
            ms => Err(Duration::from_millis(ms)),
        })
    }

    /// Takes a lease on one more connection of `user` (this node's `conn`) for `ttl`, unless the user
    /// holds `max` unexpired leases over all nodes; whether it was taken.
    pub async fn lease(
        &self,
        user: &UserName,
        conn: ConnId,
        max: usize,
        ttl: Duration,
    ) -> RedisResult<bool> {
        let mut invocation = self.scripts.leases.key(keys::leases(user.as_str()));
        invocation
            .arg("take")
            .arg(self.lease_member(conn))
            .arg(ttl_ms(ttl))
            .arg(max);
        self.script(&invocation).await
    }

    /// Extends the leases of this node's connections `held` by `ttl`, in one round trip.
    pub async fn renew_leases(
        &self,
        held: &[(UserName, ConnId)],
        ttl: Duration,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        // As in the append pipeline: makes the calls below find the script after a Redis restart.
        pipe.load_script(&self.scripts.leases).ignore();
        for (user, conn) in held {
            let mut invocation = self.scripts.leases.key(keys::leases(user.as_str()));
            invocation
                .arg("renew")
                .arg(self.lease_member(*conn))
                .arg(ttl_ms(ttl));
            pipe.invoke_script(&invocation).ignore();
        }
        self.pipeline(&pipe).await
    }

    /// Gives back the lease of this node's connection `conn` of `user`.
    pub async fn release(&self, user: &UserName, conn: ConnId) -> RedisResult<()> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(keys::leases(user.as_str()))
            .arg(self.lease_member(conn));
        self.command(&cmd).await
    }

    fn lease_member(&self, conn: ConnId) -> String {
        format!("{}\n{conn}", self.node)
    }

    /// A new pub/sub connection.
    async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        self.client.get_async_pubsub().await
    }
}
