//! Fan-out: N connections in R rooms, S of them sending at a paced total rate for D seconds.
//!
//! Every chat carries its send time; each receiver records the latency of every delivery and counts
//! duplicates (ours: a `seq` not above the last one seen; the others: a sender's number not above the
//! last one seen from that sender). Expected deliveries are each sent chat times the other members of
//! its room, so `lost` is exact. Server CPU is measured from the first send until the last delivery
//! (or the end of the drain), and divided by deliveries.

use super::{Env, Progress, RunError, connect_all, room_name};
use crate::{
    conn::{self, Ws},
    measure::{Clock, CpuUse, Latency, Percentiles, round3},
    protocol::{Incoming, Protocol, chat_id, id_sent_us, stamp, unstamp},
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::Message;

/// Fan-out parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Connections.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Rooms (clients are spread evenly; ours only when more than one).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Chats per second, all senders together.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of each chat's text.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Seconds to wait for what is still on its way after the last send.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

/// What a fan-out run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    scenario: &'static str,
    protocol: Protocol,
    clients: usize,
    rooms: usize,
    senders: usize,
    rate: u64,
    duration_s: f64,
    sent: u64,
    expected: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    delivered_ratio: f64,
    deliveries_per_s: f64,
    /// Ours: acks received (every sent chat should have one).
    acks: u64,
    latency: Percentiles,
    ack_latency: Option<Percentiles>,
    #[serde(flatten)]
    cpu: CpuUse,
    server_cpu_us_per_delivery: Option<f64>,
    ok: bool,
    problems: Vec<String>,
}

#[derive(Debug, Default)]
struct Counts {
    received: AtomicU64,
    duplicated: AtomicU64,
    acks: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
}

/// What one client does.
#[derive(Debug, Clone, Copy)]
struct Sending {
    /// Its number among the senders.
    index: usize,
    /// Chats per second it sends.
    rate: f64,
}

/// Runs a fan-out.
pub async fn run(args: &Args, env: &Env) -> Result<Summary, RunError> {
    let protocol = env.target.protocol;
    if args.rooms > 1 && !protocol.is_ours() {
        return Err(RunError::Invalid("only our protocol has rooms".into()));
    }
    if args.senders == 0 || args.senders > args.clients || args.rooms == 0 {
        return Err(RunError::Invalid(
            "need 1 <= senders <= clients and rooms >= 1".into(),
        ));
    }
    let mut clients = connect_all(&env.target, args.clients, None).await?;
    let mut room_sizes = vec![0u64; args.rooms];
    for (i, client) in clients.iter_mut().enumerate() {
        room_sizes[i % args.rooms] += 1;
        if protocol.is_ours() {
            conn::join(&mut client.ws, &room_name(i % args.rooms, args.rooms), None).await?;
        }
    }

    let clock = Clock::start();
    let counts = Arc::new(Counts::default());
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.senders).map(|_| AtomicU64::new(0)).collect());
    let (latency, ack_latency) = (Latency::default(), Latency::default());
    // Sending starts together, half a second after everyone is in.
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let stop = start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::with_capacity(args.clients);
    for (i, connected) in clients.into_iter().enumerate() {
        let client = Client {
            protocol,
            room: room_name(i % args.rooms, args.rooms),
            sending: (i < args.senders).then_some(Sending {
                index: i,
                rate: args.rate as f64 / args.senders as f64,
            }),
            senders: args.senders,
            size: args.size,
            clock,
            counts: Arc::clone(&counts),
            sent: Arc::clone(&sent),
            latency: latency.clone(),
            ack_latency: ack_latency.clone(),
        };
        tasks.push(tokio::spawn(client.run(connected.ws, start, stop)));
    }
    let expected = {
        let sent = Arc::clone(&sent);
        let room_sizes = room_sizes.clone();
        let rooms = args.rooms;
        move || -> u64 {
            sent.iter()
                .enumerate()
                .map(|(k, n)| n.load(Relaxed) * (room_sizes[k % rooms] - 1))
                .sum()
        }
    };
    let _progress = Progress::start(env, "fanout", {
        let (counts, sent) = (Arc::clone(&counts), Arc::clone(&sent));
        move || {
            let sent: u64 = sent.iter().map(|n| n.load(Relaxed)).sum();
            format!("sent {sent}, received {}", counts.received.load(Relaxed))
        }
    });

    tokio::time::sleep_until(start).await;
    let cpu_before = env.processes.cpu();
    tokio::time::sleep_until(stop).await;
    let total_sent = || sent.iter().map(|n| n.load(Relaxed)).sum::<u64>();
    // Drain: until every expected delivery (and ours: every ack) is in, or the drain time is over.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs_f64(args.drain);
    while tokio::time::Instant::now() < drain_until {
        let done = counts.received.load(Relaxed) + counts.duplicated.load(Relaxed) >= expected()
            && (!protocol.is_ours() || counts.acks.load(Relaxed) >= total_sent());
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(cpu_before, env.processes.cpu(), wall);
    for task in &tasks {
        task.abort();
    }

    let (sent_total, expected) = (total_sent(), expected());
    let received = counts.received.load(Relaxed);
    let duplicated = counts.duplicated.load(Relaxed);
    let acks = counts.acks.load(Relaxed);
    let lost = expected.saturating_sub(received);
    let mut problems = Vec::new();
    if lost > 0 {
        problems.push(format!("{lost} of {expected} deliveries missing"));
    }
    if duplicated > 0 {
        problems.push(format!(
            "{duplicated} deliveries duplicated or out of order"
        ));
    }
    if protocol.is_ours() && acks != sent_total {
        problems.push(format!("{acks} acks for {sent_total} chats"));
    }
    for (what, n) in [
        ("chats refused", counts.refused.load(Relaxed)),
        (
            "connections closed by the server",
            counts.closed.load(Relaxed),
        ),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if sent_total == 0 {
        problems.push("nothing was sent".into());
    }
    Ok(Summary {
        scenario: "fanout",
        protocol,
        clients: args.clients,
        rooms: args.rooms,
        senders: args.senders,
        rate: args.rate,
        duration_s: args.duration,
        sent: sent_total,
        expected,
        received,
        lost,
        duplicated,
        delivered_ratio: if expected == 0 {
            0.0
        } else {
            round3(received as f64 / expected as f64)
        },
        deliveries_per_s: (received as f64 / args.duration).round(),
        acks,
        latency: latency.percentiles(),
        ack_latency: protocol.is_ours().then(|| ack_latency.percentiles()),
        server_cpu_us_per_delivery: cpu.server_us_per(received, &env.processes),
        cpu,
        ok: problems.is_empty(),
        problems,
    })
}

/// Frames a connection reads with one reading of the clock, at most.
const READ_BATCH: usize = 64;

/// One connection's part: it reads everything, and a sender also sends its share of the rate.
#[derive(Debug)]
struct Client {
    protocol: Protocol,
    room: String,
    sending: Option<Sending>,
    senders: usize,
    size: usize,
    clock: Clock,
    counts: Arc<Counts>,
    sent: Arc<Vec<AtomicU64>>,
    latency: Latency,
    ack_latency: Latency,
}

impl Client {
    async fn run(self, mut ws: Ws, start: tokio::time::Instant, stop: tokio::time::Instant) {
        let mut seen = Seen {
            last_seq: 0,
            // The others: the next number expected from each sender.
            next_from: vec![
                0u64;
                if self.protocol.is_ours() {
                    0
                } else {
                    self.senders
                }
            ],
        };
        let mut tick = tokio::time::interval_at(start, Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sending = self.sending;
        let mut n = 0u64;
        loop {
            tokio::select! {
                frame = ws.next() => {
                    // One reading of the clock for this frame and the ones ready right after it (at
                    // millions of frames a second, the clock was 4% of the generator's time). A frame
                    // read after the reading gets its time, which understates its latency by at most
                    // the time to handle the batch; at most a batch, so a sender still sends on time.
                    let mut now_us = self.clock.now_us();
                    let mut next = Some(frame);
                    let mut batch = READ_BATCH;
                    while let Some(frame) = next {
                        let Some(Ok(frame)) = frame else {
                            // (The run ends by aborting this task: a close seen here is the server's.)
                            self.counts.closed.fetch_add(1, Relaxed);
                            return;
                        };
                        if let Some(pong) = self.on_frame(&frame, now_us, &mut seen) {
                            let _ = ws.send(Message::text(pong)).await;
                            now_us = self.clock.now_us(); // the send may have waited
                        }
                        batch -= 1;
                        next = if batch > 0 { ws.next().now_or_never() } else { None };
                    }
                }
                now = tick.tick(), if sending.is_some() => {
                    let Some(Sending { index, rate }) = sending else { continue };
                    if now >= stop {
                        sending = None;
                        continue;
                    }
                    let due = (rate * (now - start).as_secs_f64()).floor() as u64 + 1;
                    while n < due {
                        let sent_us = self.clock.now_us();
                        let text = stamp(sent_us, index, n, self.size);
                        let frame = self.protocol.chat(&self.room, &chat_id(n, sent_us), &text);
                        if ws.feed(Message::text(frame)).await.is_err() {
                            return;
                        }
                        n += 1;
                        self.sent[index].fetch_add(1, Relaxed);
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Counts and times one frame received at `now_us`; what to answer, if anything (Socket.IO's pong).
    fn on_frame(&self, frame: &Message, now_us: u64, seen: &mut Seen) -> Option<&'static str> {
        let Message::Text(text) = frame else {
            return None;
        };
        match self.protocol.read(text) {
            Incoming::Chat { seq, text } => {
                let (sent_us, sender, number) = unstamp(text)?;
                let fresh = match seq {
                    Some(seq) => {
                        let fresh = seq > seen.last_seq;
                        seen.last_seq = seen.last_seq.max(seq);
                        fresh
                    }
                    None => match seen.next_from.get_mut(sender) {
                        Some(next) => {
                            let fresh = number >= *next;
                            *next = (*next).max(number + 1);
                            fresh
                        }
                        None => true,
                    },
                };
                if fresh {
                    self.counts.received.fetch_add(1, Relaxed);
                    self.latency.record_us(now_us.saturating_sub(sent_us));
                } else {
                    self.counts.duplicated.fetch_add(1, Relaxed);
                }
            }
            Incoming::Ack { id, .. } => {
                self.counts.acks.fetch_add(1, Relaxed);
                if let Some(sent_us) = id_sent_us(id) {
                    self.ack_latency.record_us(now_us.saturating_sub(sent_us));
                }
            }
            Incoming::Ping => return Some(self.protocol.pong()),
            Incoming::Error(_) => {
                self.counts.refused.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        None
    }
}

/// What one connection has seen of the chats: the newest `seq` (ours), or the next number expected
/// from each sender (the baselines, which have no `seq`).
#[derive(Debug)]
struct Seen {
    last_seq: u64,
    next_from: Vec<u64>,
}
