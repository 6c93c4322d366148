//! Reconnect delays: exponential backoff with full jitter, as a pure function of the attempt number and a
//! random number, so it is tested without a browser or a clock.

use std::time::Duration;

/// `delay = random(0, min(cap, base * 2^attempt))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    /// Base 0.5 s, cap 30 s.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The largest delay of retry number `attempt` (0 for the first retry): `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay of retry number `attempt`, given `unit`, a random number in `[0, 1)` (clamped).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        // In whole milliseconds, through a saturating cast: `Duration::mul_f64` would bring its float
        // checks and their panic messages into the page's wasm.
        let ceiling_ms = self.ceiling(attempt).as_millis() as f64;
        Duration::from_millis((ceiling_ms * unit.clamp(0.0, 1.0)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::default();
        let ms: Vec<_> = (0..9).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.ceiling(40), b.cap, "no overflow on huge attempts");
        assert_eq!(b.ceiling(u32::MAX), b.cap);
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(4), "clamped");
        assert_eq!(b.delay(3, -1.0), Duration::ZERO, "clamped");
        for i in 0..100 {
            let unit = f64::from(i) / 100.0;
            assert!(b.delay(20, unit) <= b.cap);
        }
    }
}
