//! Reconnect storm (ours): N clients in R rooms go away, each room gets M new chats, then every client
//! reconnects at once with its token and `join`s with `since` = the last `seq` it had.
//!
//! Each client must get exactly the `seq`s after its own cursor up to the room's head, in order, once:
//! anything else is a gap or a duplicate. The figure is the time from the first reconnect until the last
//! client has caught up (its `joined`), and the spread of the clients' catch-up times.

use super::{Env, Progress, RunError, connect_all, room_name};
use crate::{
    conn::{self, Ws},
    measure::{Clock, CpuUse, Latency, Percentiles, round3},
    protocol::{Incoming, Protocol},
};
use futures_util::{SinkExt, StreamExt, stream};
use serde::Serialize;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};
use tokio_tungstenite::tungstenite::Message;

/// Storm parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Clients that reconnect.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Messages each client misses.
    #[arg(long, default_value_t = 100)]
    pub behind: u64,
    /// Rooms (clients are spread evenly).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
}

/// What a storm measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    scenario: &'static str,
    clients: usize,
    rooms: usize,
    behind: u64,
    caught_up: u64,
    catch_up_s: f64,
    replayed: u64,
    gaps: u64,
    duplicates: u64,
    failed: u64,
    client_catch_up: Percentiles,
    #[serde(flatten)]
    cpu: CpuUse,
    ok: bool,
    problems: Vec<String>,
}

/// Runs a storm.
pub async fn run(args: &Args, env: &Env) -> Result<Summary, RunError> {
    let target = &env.target;
    if !target.protocol.is_ours() {
        return Err(RunError::NeedsOurs("storm"));
    }
    if args.rooms == 0 || args.clients == 0 {
        return Err(RunError::Invalid(
            "need at least one client and one room".into(),
        ));
    }
    // Everyone in, then away, remembering where they were.
    let mut clients = connect_all(target, args.clients, None).await?;
    let mut cursors = Vec::with_capacity(args.clients);
    for (i, client) in clients.iter_mut().enumerate() {
        let (_, head) =
            conn::join(&mut client.ws, &room_name(i % args.rooms, args.rooms), None).await?;
        cursors.push(head);
    }
    let tokens: Vec<Option<String>> = clients.iter().map(|c| c.token.clone()).collect();
    drop(clients);

    // Meanwhile each room moves on by `behind` acked chats.
    let mut heads = Vec::with_capacity(args.rooms);
    for r in 0..args.rooms {
        let mut writer = conn::connect(target, args.clients + r, None).await?;
        let room = room_name(r, args.rooms);
        conn::join(&mut writer.ws, &room, None).await?;
        heads.push(write(&mut writer.ws, &room, args.behind).await?);
    }

    // Everyone back at once.
    let clock = Clock::start();
    let caught_up = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(env, "storm", {
        let caught_up = Arc::clone(&caught_up);
        move || format!("{} caught up", caught_up.load(Relaxed))
    });
    let latency = Latency::default();
    let cpu_before = env.processes.cpu();
    let outcomes: Vec<Outcome> = stream::iter(0..args.clients)
        .map(|i| {
            let (token, since) = (tokens[i].clone(), cursors[i]);
            let (room, head) = (room_name(i % args.rooms, args.rooms), heads[i % args.rooms]);
            let (latency, caught_up) = (latency.clone(), Arc::clone(&caught_up));
            async move {
                let outcome = rejoin(target, i, token.as_deref(), &room, since, head).await;
                if outcome.error.is_none() {
                    latency.record_us(clock.now_us());
                    caught_up.fetch_add(1, Relaxed);
                }
                outcome
            }
        })
        // All at once: the limit is the server's (and the open-files limit).
        .buffer_unordered(args.clients)
        .collect()
        .await;
    let catch_up_s = clock.seconds();
    let cpu = CpuUse::between(cpu_before, env.processes.cpu(), catch_up_s);

    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let (replayed, gaps, duplicates) =
        (sum(|o| o.replayed), sum(|o| o.gaps), sum(|o| o.duplicates));
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    let mut problems = Vec::new();
    if gaps > 0 {
        problems.push(format!("{gaps} messages missing from replays"));
    }
    if duplicates > 0 {
        problems.push(format!(
            "{duplicates} messages replayed twice or out of order"
        ));
    }
    if let Some(first) = failures.first() {
        problems.push(format!(
            "{} clients failed (first: {first})",
            failures.len()
        ));
    }
    Ok(Summary {
        scenario: "storm",
        clients: args.clients,
        rooms: args.rooms,
        behind: args.behind,
        caught_up: caught_up.load(Relaxed),
        catch_up_s: round3(catch_up_s),
        replayed,
        gaps,
        duplicates,
        failed: failures.len() as u64,
        client_catch_up: latency.percentiles(),
        cpu,
        ok: problems.is_empty(),
        problems,
    })
}

/// Sends `n` chats into `room` (256 in flight) and waits for their acks; the room's head after them.
async fn write(ws: &mut Ws, room: &str, n: u64) -> Result<u64, conn::ConnError> {
    let (mut sent, mut acked, mut head) = (0u64, 0u64, 0u64);
    while acked < n {
        while sent < n && sent - acked < 256 {
            let text = format!("missed {sent}");
            ws.feed(Message::text(Protocol::Chat.chat(
                room,
                &format!("storm-{sent}"),
                &text,
            )))
            .await?;
            sent += 1;
        }
        ws.flush().await?;
        let Some(frame) = ws.next().await else {
            return Err(conn::ConnError::Protocol("closed while writing".into()));
        };
        if let Message::Text(text) = frame? {
            match Protocol::Chat.read(&text) {
                Incoming::Ack { seq, .. } => {
                    acked += 1;
                    head = head.max(seq);
                }
                Incoming::Error(e) => {
                    return Err(conn::ConnError::Protocol(format!("chat refused: {e}")));
                }
                _ => {}
            }
        }
    }
    Ok(head)
}

#[derive(Debug, Default)]
struct Outcome {
    replayed: u64,
    gaps: u64,
    duplicates: u64,
    error: Option<String>,
}

/// Reconnects as client `i` and joins `room` from `since`; checks the replay against `head`.
async fn rejoin(
    target: &conn::Target,
    i: usize,
    token: Option<&str>,
    room: &str,
    since: u64,
    head: u64,
) -> Outcome {
    let joined = async {
        let mut connected = conn::connect(target, i, token).await?;
        conn::join(&mut connected.ws, room, Some(since)).await
    };
    match joined.await {
        Ok((seqs, _)) => {
            let mut outcome = Outcome {
                replayed: seqs.len() as u64,
                ..Outcome::default()
            };
            let mut expected = since + 1;
            for seq in seqs {
                if seq < expected {
                    outcome.duplicates += 1;
                } else {
                    outcome.gaps += seq - expected;
                    expected = seq + 1;
                }
            }
            outcome.gaps += (head + 1).saturating_sub(expected);
            outcome
        }
        Err(e) => Outcome {
            error: Some(e.to_string()),
            ..Outcome::default()
        },
    }
}
