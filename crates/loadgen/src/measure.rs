//! What a run measures: latency histograms, CPU seconds and memory of processes (from `/proc`), and the
//! generator's clock.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Microseconds since the generator started: what chats carry as their send time.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A latency histogram in microseconds (1 µs to 10 min, 3 significant digits), shared by tasks.
#[derive(Debug, Clone)]
pub struct Latency(Arc<Mutex<Histogram<u64>>>);

impl Default for Latency {
    fn default() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Self(Arc::new(Mutex::new(histogram)))
    }
}

/// Percentiles of a [`Latency`], in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn lock(&self) -> MutexGuard<'_, Histogram<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one value.
    pub fn record_us(&self, us: u64) {
        self.lock().saturating_record(us.max(1));
    }

    /// Forgets every value (after a warm-up).
    pub fn reset(&self) {
        self.lock().reset();
    }

    /// The percentiles so far.
    pub fn percentiles(&self) -> Percentiles {
        let h = self.lock();
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Processes whose CPU time and memory a run reports: the server's (each with its descendants, so a
/// script that starts two nodes and Redis counts as one server) and the generator's own.
#[derive(Debug, Clone)]
pub struct Processes {
    servers: Vec<u32>,
}

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    /// By the server processes together.
    pub server: f64,
    /// By this generator.
    pub generator: f64,
}

impl Processes {
    /// The server processes `pids` and their descendants (none: server figures are left out).
    pub fn new(servers: Vec<u32>) -> Self {
        Self { servers }
    }

    /// Whether any server process is known.
    pub fn has_server(&self) -> bool {
        !self.servers.is_empty()
    }

    /// CPU seconds so far.
    pub fn cpu(&self) -> CpuSample {
        CpuSample {
            server: self
                .tree()
                .iter()
                .filter_map(|p| cpu_seconds(&p.to_string()))
                .sum(),
            generator: cpu_seconds("self").unwrap_or(0.0),
        }
    }

    /// Resident memory of the server processes together, in bytes.
    pub fn server_rss(&self) -> u64 {
        self.tree()
            .iter()
            .filter_map(|p| rss_bytes(&p.to_string()))
            .sum()
    }

    /// The server processes and all their descendants, now.
    fn tree(&self) -> Vec<u32> {
        let mut all = self.servers.clone();
        let mut i = 0;
        while i < all.len() {
            let pid = all[i];
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for task in tasks.flatten() {
                    let children = std::fs::read_to_string(task.path().join("children"));
                    all.extend(
                        children
                            .iter()
                            .flat_map(|c| c.split_whitespace())
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
            i += 1;
        }
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// User and system CPU seconds of process `pid` (or `self`), all threads.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Resident set size of process `pid`, in bytes.
fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU used between two samples over `wall` seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// Server CPU seconds (all server processes).
    pub server_cpu_s: f64,
    /// Generator CPU seconds.
    pub generator_cpu_s: f64,
    /// The generator used more than 90% of its core: figures may be its limit, not the server's.
    pub generator_saturated: bool,
}

impl CpuUse {
    /// The use between `before` and `after`, `wall` seconds apart.
    pub fn between(before: CpuSample, after: CpuSample, wall: f64) -> Self {
        let generator = after.generator - before.generator;
        Self {
            server_cpu_s: round3(after.server - before.server),
            generator_cpu_s: round3(generator),
            generator_saturated: wall > 0.0 && generator / wall > 0.9,
        }
    }

    /// Server CPU microseconds per one of `count` things (deliveries, acks, connections); none when no
    /// server process is measured or nothing was counted.
    pub fn server_us_per(&self, count: u64, processes: &Processes) -> Option<f64> {
        (processes.has_server() && count > 0)
            .then(|| round3(self.server_cpu_s * 1e6 / count as f64))
    }
}

/// `x` to three decimals, for readable summaries.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let processes = Processes::new(vec![me]);
        assert!(processes.server_rss() > 0);
        let spin = Instant::now();
        while spin.elapsed().as_millis() < 50 {}
        assert!(processes.cpu().server > 0.0);
        let latency = Latency::default();
        for us in [1_000, 2_000, 3_000] {
            latency.record_us(us);
        }
        let p = latency.percentiles();
        assert_eq!(p.count, 3);
        assert!(
            (p.p50_ms - 2.0).abs() < 0.01 && (p.max_ms - 3.0).abs() < 0.01,
            "{p:?}"
        );
    }
}
