//! Acked chats (ours): S senders in one new room, each keeping W chats in flight for D seconds: stored
//! and acknowledged chats per second, and how long an ack takes.
//!
//! The room is new, so its acked `seq`s must be exactly 1..=acks, each once: a repeated or missing
//! `seq` is reported. Every sender also receives the others' chats, as members of a busy room do.

use super::{Env, Progress, RunError, connect_all};
use crate::{
    conn::{self, Ws},
    measure::{Clock, CpuUse, Latency, Percentiles},
    protocol::{Incoming, Protocol, chat_id, id_sent_us, stamp},
};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::Message;

/// Acks parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Senders.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Chats in flight per sender.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of each chat's text.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
}

/// What an acks run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    scenario: &'static str,
    senders: usize,
    window: u64,
    duration_s: f64,
    acks: u64,
    acks_per_s: f64,
    ack_latency: Percentiles,
    #[serde(flatten)]
    cpu: CpuUse,
    server_cpu_us_per_ack: Option<f64>,
    ok: bool,
    problems: Vec<String>,
}

/// Runs the acks scenario.
pub async fn run(args: &Args, env: &Env) -> Result<Summary, RunError> {
    if !env.target.protocol.is_ours() {
        return Err(RunError::NeedsOurs("acks"));
    }
    if args.senders == 0 || args.window == 0 {
        return Err(RunError::Invalid(
            "need at least one sender and a window of one".into(),
        ));
    }
    let clock = Clock::start();
    let room = format!(
        "acks-{}",
        std::process::id() as u64 * 1_000_000 + clock.now_us() % 1_000_000
    );
    let mut senders = connect_all(&env.target, args.senders, None).await?;
    for sender in &mut senders {
        conn::join(&mut sender.ws, &room, None).await?;
    }
    let acks = Arc::new(AtomicU64::new(0));
    let latency = Latency::default();
    let _progress = Progress::start(env, "acks", {
        let acks = Arc::clone(&acks);
        move || format!("{} acked", acks.load(Relaxed))
    });
    let stop = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let cpu_before = env.processes.cpu();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(index, connected)| {
            let sender = Sender {
                index,
                room: room.clone(),
                window: args.window,
                size: args.size,
                clock,
                acks: Arc::clone(&acks),
                latency: latency.clone(),
            };
            tokio::spawn(sender.run(connected.ws, stop))
        })
        .collect();
    let mut seqs = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(acked)) => seqs.extend(acked),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let cpu = CpuUse::between(cpu_before, env.processes.cpu(), args.duration);
    let total = seqs.len() as u64;
    seqs.sort_unstable();
    let repeated = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    seqs.dedup();
    let missing = seqs.last().copied().unwrap_or(0) - seqs.len() as u64;
    let mut problems = Vec::new();
    if repeated > 0 {
        problems.push(format!("{repeated} seqs acked twice"));
    }
    if missing > 0 {
        problems.push(format!("{missing} seqs below the head were never acked"));
    }
    if let Some(first) = failures.first() {
        problems.push(format!(
            "{} senders failed (first: {first})",
            failures.len()
        ));
    }
    if total == 0 {
        problems.push("nothing was acked".into());
    }
    Ok(Summary {
        scenario: "acks",
        senders: args.senders,
        window: args.window,
        duration_s: args.duration,
        acks: total,
        acks_per_s: (total as f64 / args.duration).round(),
        ack_latency: latency.percentiles(),
        server_cpu_us_per_ack: cpu.server_us_per(total, &env.processes),
        cpu,
        ok: problems.is_empty(),
        problems,
    })
}

/// One sender: keeps `window` chats in flight until `stop`, then waits for the rest of its acks.
#[derive(Debug)]
struct Sender {
    index: usize,
    room: String,
    window: u64,
    size: usize,
    clock: Clock,
    acks: Arc<AtomicU64>,
    latency: Latency,
}

impl Sender {
    /// The `seq`s of its acked chats.
    async fn run(
        self,
        mut ws: Ws,
        stop: tokio::time::Instant,
    ) -> Result<Vec<u64>, conn::ConnError> {
        let (mut sent, mut seqs) = (0u64, Vec::new());
        loop {
            let sending = tokio::time::Instant::now() < stop;
            if !sending && seqs.len() as u64 == sent {
                return Ok(seqs);
            }
            while sending && sent - (seqs.len() as u64) < self.window {
                let now = self.clock.now_us();
                let text = stamp(now, self.index, sent, self.size);
                let frame = Protocol::Chat.chat(&self.room, &chat_id(sent, now), &text);
                ws.feed(Message::text(frame)).await?;
                sent += 1;
            }
            ws.flush().await?;
            let frame = tokio::time::timeout(conn::CONNECT_TIMEOUT, ws.next())
                .await
                .map_err(|_| conn::ConnError::Timeout("an ack"))?;
            let Some(frame) = frame else {
                return Err(conn::ConnError::Protocol("closed by the server".into()));
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            match Protocol::Chat.read(&text) {
                Incoming::Ack { id, seq } => {
                    seqs.push(seq);
                    self.acks.fetch_add(1, Relaxed);
                    if let Some(sent_us) = id_sent_us(id) {
                        self.latency
                            .record_us(self.clock.now_us().saturating_sub(sent_us));
                    }
                }
                Incoming::Error(e) => {
                    return Err(conn::ConnError::Protocol(format!("chat refused: {e}")));
                }
                _ => {}
            }
        }
    }
}
