//! What a node counts, served as Prometheus (OpenMetrics) text at `GET /metrics`.
//!
//! Counters are bumped where things happen: frames in (per frame), frames out (per written batch),
//! chats stored and acks (by the relay, per message), errors sent by code, disconnects by close code, and
//! the time from a chat's arrival to its publication (a histogram, per message). What is a level rather
//! than an event (mailbox bytes queued, relay queue depth) is read when scraped, so the hot path pays
//! nothing for it. Nothing here is per recipient.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use shared::ErrorCode;

/// Label of a counter by error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The `error` frame's `code`, as on the wire.
    pub code: String,
}

/// Label of a counter by how a connection ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabel {
    /// The close code sent, or `peer_gone`, `write_failed`, `stuck`.
    pub reason: String,
}

/// The node's counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Frames received from clients.
    pub frames_in: Counter,
    /// Frames written to clients.
    pub frames_out: Counter,
    /// Chat messages stored (new, not duplicates).
    pub chats_stored: Counter,
    /// Batches of chat messages stored, one commit (or one Redis pipeline) each.
    pub commits: Counter,
    /// Acknowledgements sent.
    pub acks: Counter,
    /// `error` frames sent, by code.
    pub errors: Family<CodeLabel, Counter>,
    /// Connections ended, by close code or reason.
    pub disconnects: Family<EndLabel, Counter>,
    /// Seconds from a chat's arrival at its session to its publication.
    pub accept_to_publish: Histogram,
    /// Seconds per round trip to Redis (Redis mode only).
    pub redis_rtt: Histogram,
    mailbox_bytes: Gauge,
    relay_queue: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let connections = Gauge::default();
        let frames_in = Counter::default();
        let frames_out = Counter::default();
        let chats_stored = Counter::default();
        let commits = Counter::default();
        let acks = Counter::default();
        let errors = Family::default();
        let disconnects = Family::default();
        // 0.1 ms to about 3 s.
        let accept_to_publish = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        // 50 µs to about 1.6 s.
        let redis_rtt = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let mailbox_bytes = Gauge::default();
        let relay_queue = Gauge::default();
        let mut registry = Registry::with_prefix("chat");
        let r = &mut registry;
        r.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        r.register(
            "frames_in",
            "Frames received from clients",
            frames_in.clone(),
        );
        r.register(
            "frames_out",
            "Frames written to clients",
            frames_out.clone(),
        );
        r.register("chats_stored", "Chat messages stored", chats_stored.clone());
        r.register(
            "commits",
            "Batches of chat messages stored, one commit each",
            commits.clone(),
        );
        r.register("acks", "Acknowledgements sent", acks.clone());
        r.register("errors", "Error frames sent, by code", errors.clone());
        r.register(
            "disconnects",
            "Connections ended, by close code or reason",
            disconnects.clone(),
        );
        r.register(
            "accept_to_publish_seconds",
            "Time from a chat's arrival to its publication",
            accept_to_publish.clone(),
        );
        r.register(
            "redis_rtt_seconds",
            "Round trips to Redis (Redis mode)",
            redis_rtt.clone(),
        );
        r.register(
            "mailbox_bytes",
            "Bytes queued for connections, not yet written",
            mailbox_bytes.clone(),
        );
        r.register(
            "relay_queue",
            "Chats waiting to be stored",
            relay_queue.clone(),
        );
        Self {
            registry,
            connections,
            frames_in,
            frames_out,
            chats_stored,
            commits,
            acks,
            errors,
            disconnects,
            accept_to_publish,
            redis_rtt,
            mailbox_bytes,
            relay_queue,
        }
    }
}

impl Metrics {
    /// Counts an `error` frame with `code`.
    pub fn error(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.errors.get_or_create(&CodeLabel { code }).inc();
    }

    /// Counts a connection that ended for `reason`.
    pub fn disconnect(&self, reason: String) {
        self.disconnects.get_or_create(&EndLabel { reason }).inc();
    }

    /// The text exposition, with the levels read now.
    pub fn render(&self, mailbox_bytes: usize, relay_queue: usize) -> String {
        self.mailbox_bytes
            .set(i64::try_from(mailbox_bytes).unwrap_or(i64::MAX));
        self.relay_queue
            .set(i64::try_from(relay_queue).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_families_and_levels() {
        let m = Metrics::default();
        m.frames_in.inc_by(3);
        m.error(ErrorCode::RateLimited);
        m.disconnect("1001".into());
        m.accept_to_publish.observe(0.002);
        let text = m.render(1234, 5);
        for line in [
            "chat_frames_in_total 3",
            "chat_errors_total{code=\"rate_limited\"} 1",
            "chat_disconnects_total{reason=\"1001\"} 1",
            "chat_mailbox_bytes 1234",
            "chat_relay_queue 5",
            "chat_accept_to_publish_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
