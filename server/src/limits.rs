//! Rate and connection limits.
//!
//! - [`TokenBucket`]: `rate` messages per second on average, `burst` at once. Each connection has one, and
//!   each user has one shared by all their connections ([`UserRates`]), so neither many tabs nor one
//!   flooding socket can exceed the rate.
//! - [`PerIp`]: how many WebSocket connections each address holds, for `--max-connections-per-ip`.

use shared::UserName;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

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

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken for a message that was then refused elsewhere.
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Most idle per-user buckets kept before full (idle) ones are forgotten.
const MAX_IDLE_USERS: usize = 10_000;

/// Per-user buckets.
#[derive(Debug)]
pub struct UserRates {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<UserName, TokenBucket>>,
}

impl UserRates {
    /// Buckets of `rate` per second and `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `user`'s bucket.
    pub fn try_take(&self, user: &UserName, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > MAX_IDLE_USERS {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(user.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .try_take(now)
    }
}

/// WebSocket connections per address.
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
    /// Takes a slot for `ip` unless it already holds `max` (0: no limit).
    pub fn acquire(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
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
    }

    #[test]
    fn users_share_a_bucket() {
        let rates = UserRates::new(1.0, 2);
        let (ann, bob) = (
            UserName::new("ann").expect("n"),
            UserName::new("bob").expect("n"),
        );
        let now = Instant::now();
        assert!(rates.try_take(&ann, now) && rates.try_take(&ann, now));
        assert!(!rates.try_take(&ann, now));
        assert!(rates.try_take(&bob, now));
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
