//! Rate and connection limits. Every one of them is off when configured as 0.
//!
//! - [`TokenBucket`]: `rate` per second on average, `burst` at once. Each connection has one that every
//!   frame it sends takes from; chats also take from their user's ([`Throttle`] keyed by name, shared by
//!   all their connections) and their address's, so neither many tabs, many connections nor one flooding
//!   socket can exceed the rate.
//! - [`Throttle`]: token buckets by key (an address, an account name), bounded in memory, for sign-in
//!   failures, registrations and guest tokens; it says how long to wait when empty.
//! - [`NameThrottle`]: failed sign-ins per account name, in this node's memory or, in the Redis mode, in
//!   Redis, so that guesses spread over several nodes still meet one budget. (Per-address budgets and
//!   a user's chat rate stay per node: see the README.)
//! - [`PerIp`]: how many connections each address holds. Addresses are compared by [`client_key`]: an
//!   IPv6 client usually owns a whole /64, so it counts as one address.

use crate::broker::{Broker, keys};
use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The address that limits count against: IPv4 as is, IPv6 by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// A token bucket; `rate == 0` allows everything.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `cost` tokens if there are that many (a cost above the burst needs a full bucket).
    pub fn try_take_n(&mut self, cost: f64, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(1.0, now)
    }

    /// Gives back `cost` tokens taken for something that was then refused elsewhere.
    pub fn give_back(&mut self, cost: f64) {
        self.tokens = (self.tokens + cost).min(self.burst);
    }

    /// How long until one token is there (zero if one is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.wait_for(1.0, now)
    }

    /// How long until `cost` tokens are there (a cost above the burst: a full bucket).
    pub fn wait_for(&mut self, cost: f64, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        self.refill(now);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((cost - self.tokens) / self.rate)
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Most keys a [`Throttle`] remembers; past this, full (idle) buckets are forgotten first.
const MAX_KEYS: usize = 100_000;

/// Token buckets by key, e.g. failed sign-ins per address. Off when its rate is 0.
#[derive(Debug)]
pub struct Throttle<K> {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// Buckets of `rate` per second and `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the throttle is on.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    fn with<T>(&self, key: &K, now: Instant, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(now));
            if buckets.len() >= MAX_KEYS {
                // Every remembered key is busy: forgetting them all is the only bound left.
                buckets.clear();
            }
        }
        let bucket = buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst));
        f(bucket)
    }

    /// `Ok` if `key` has a token left (taking none, and remembering nothing for a key it does not
    /// know), else how long until it has.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let wait = buckets.get_mut(key).map_or(Duration::ZERO, |b| b.wait(now));
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.take_n(key, 1.0, now)
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until one is there.
    pub fn take_n(&self, key: &K, cost: f64, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        self.with(key, now, |b| {
            if b.try_take_n(cost, now) {
                Ok(())
            } else {
                Err(b.wait_for(cost, now).max(Duration::from_millis(1)))
            }
        })
    }

    /// Gives back tokens taken for something that was then refused elsewhere.
    pub fn give_back(&self, key: &K, cost: f64, now: Instant) {
        if self.enabled() {
            self.with(key, now, |b| b.give_back(cost));
        }
    }
}

/// Failed sign-ins per account name (lowercased): this node's, or every node's through Redis.
#[derive(Debug)]
pub enum NameThrottle {
    /// Kept in this node's memory.
    Local(Throttle<String>),
    /// A bucket in Redis per name, shared by every node.
    Shared {
        /// Where the buckets are.
        broker: Arc<Broker>,
        /// Tokens per second.
        rate: f64,
        /// Tokens at most.
        burst: u32,
    },
}

/// An attempt that may not go on.
#[derive(Debug, thiserror::Error)]
pub enum Throttled {
    /// The budget is spent for this long.
    #[error("throttled for {0:?}")]
    Wait(Duration),
    /// The shared budget could not be read.
    #[error(transparent)]
    Unavailable(#[from] redis::RedisError),
}

impl NameThrottle {
    fn new(rate: f64, burst: u32, broker: Option<&Arc<Broker>>) -> Self {
        match broker {
            Some(broker) if rate > 0.0 => Self::Shared {
                broker: Arc::clone(broker),
                rate,
                burst,
            },
            _ => Self::Local(Throttle::new(rate, burst)),
        }
    }

    /// `Ok` if `key` may try now (taking nothing).
    pub async fn check(&self, key: &str) -> Result<(), Throttled> {
        self.take(key, 0.0).await
    }

    /// Counts one failure against `key`.
    pub async fn fail(&self, key: &str) -> Result<(), redis::RedisError> {
        match self.take(key, 1.0).await {
            Err(Throttled::Unavailable(e)) => Err(e),
            // Already spent: the failure changes nothing more.
            Ok(()) | Err(Throttled::Wait(_)) => Ok(()),
        }
    }

    async fn take(&self, key: &str, cost: f64) -> Result<(), Throttled> {
        match self {
            Self::Local(throttle) if cost > 0.0 => throttle
                .take_n(&key.to_owned(), cost, Instant::now())
                .map_err(Throttled::Wait),
            Self::Local(throttle) => throttle
                .check(&key.to_owned(), Instant::now())
                .map_err(Throttled::Wait),
            Self::Shared {
                broker,
                rate,
                burst,
            } => broker
                .throttle(&keys::throttle("login", key), *rate, *burst, cost)
                .await?
                .map_err(Throttled::Wait),
        }
    }
}

/// Every budget of a node beyond the per-connection ones, built from its configuration.
#[derive(Debug)]
pub struct Limits {
    /// Chat messages per user, over all of their connections.
    pub user_chats: Throttle<shared::UserName>,
    /// Chat messages per address (by [`client_key`]), over all of its users.
    pub address_chats: Throttle<IpAddr>,
    /// Failed sign-ins per account name (lowercased).
    pub login_by_name: NameThrottle,
    /// Failed sign-ins per address.
    pub login_by_address: Throttle<IpAddr>,
    /// Registrations per address.
    pub registrations: Throttle<IpAddr>,
    /// Guest names minted per address.
    pub guests: Throttle<IpAddr>,
    /// Open connections per address.
    pub per_ip: PerIp,
}

impl Limits {
    /// The budgets `config` asks for; the per-user ones in Redis when there is a `broker`.
    pub fn new(config: &crate::Config, broker: Option<&Arc<Broker>>) -> Self {
        let (rate, burst) = (config.rate_limit, config.rate_burst);
        let per_minute = |n: u32| f64::from(n) / 60.0;
        let logins = config.login_failures_per_minute;
        let per_ip = config.max_connections_per_ip;
        Self {
            user_chats: Throttle::new(rate, burst),
            address_chats: Throttle::new(rate * 20.0, burst.saturating_mul(20)),
            login_by_name: NameThrottle::new(per_minute(logins), logins, broker),
            login_by_address: Throttle::new(per_minute(logins) * 4.0, logins.saturating_mul(4)),
            registrations: Throttle::new(
                f64::from(config.registrations_per_hour) / 3600.0,
                config.registrations_per_hour,
            ),
            // One new guest a second on average, and a burst as large as the connection cap.
            guests: Throttle::new(
                if per_ip == 0 { 0.0 } else { 1.0 },
                u32::try_from(per_ip).unwrap_or(u32::MAX),
            ),
            per_ip: PerIp::default(),
        }
    }
}

/// Open connections per address.
#[derive(Debug, Clone, Default)]
pub struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place in [`PerIp`]; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    /// Takes a slot for `ip` (by its [`client_key`]) unless it already holds `max` (0: no limit).
    pub fn acquire(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(2.0, 3);
        assert!((0..3).all(|_| b.try_take(start)));
        assert!(!b.try_take(start));
        assert!(
            b.try_take(start + Duration::from_millis(500)),
            "2/s refills one in 0.5 s"
        );
        assert!(!b.try_take(start + Duration::from_millis(500)));
        assert!(TokenBucket::new(0.0, 1).try_take(start), "rate 0 is off");
        let mut join = TokenBucket::new(2.0, 3);
        assert!(join.try_take(start));
        assert_eq!(
            join.wait_for(2.0, start),
            Duration::ZERO,
            "two of three tokens left"
        );
        assert!(join.try_take_n(2.0, start));
        assert_eq!(
            join.wait_for(2.0, start),
            Duration::from_secs(1),
            "2 tokens at 2/s"
        );
    }

    #[test]
    fn throttles_are_per_key_and_say_how_long_to_wait() {
        let rates = Throttle::new(1.0, 2);
        let now = Instant::now();
        assert!(rates.take(&"ann", now).is_ok() && rates.check(&"ann", now).is_ok());
        assert!(rates.take(&"ann", now).is_ok());
        let wait = rates.take(&"ann", now).expect_err("empty");
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(rates.check(&"ann", now), Err(wait));
        assert!(rates.take(&"bob", now).is_ok(), "another key");
        rates.give_back(&"ann", 1.0, now);
        assert!(rates.take(&"ann", now).is_ok());
        let unknown = Throttle::new(1.0, 2);
        for i in 0..100 {
            assert!(unknown.check(&i, now).is_ok());
        }
        assert!(
            unknown.buckets.lock().expect("lock").is_empty(),
            "checking remembers no key"
        );
        let off = Throttle::new(0.0, 1);
        assert!((0..100).all(|_| off.take(&"ann", now).is_ok()), "0 is off");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(client_key(mapped), IpAddr::from([10, 1, 2, 3]));
        let ips = PerIp::default();
        let _slot = ips.acquire(a, 1).expect("first");
        assert!(ips.acquire(b, 1).is_none(), "same /64");
        assert!(ips.acquire(c, 1).is_some());
    }

    #[test]
    fn per_ip_slots_release_on_drop() {
        let ips = PerIp::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = ips.acquire(ip, 2).expect("1st");
        let _b = ips.acquire(ip, 2).expect("2nd");
        assert!(ips.acquire(ip, 2).is_none());
        drop(a);
        assert!(ips.acquire(ip, 2).is_some());
        assert!(ips.acquire(ip, 0).is_some(), "0 is no limit");
    }
}
