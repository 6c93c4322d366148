//! Idle: N connections held open; the server's resident memory per connection.
//!
//! The server's RSS is read before the first connection, once it has settled (a server listens before
//! its own start-up allocations are all done, and those are not any connection's), and again after all
//! of them have been open for `--hold` seconds (answering the server's pings meanwhile); the difference
//! over N is the figure. At the end every connection must still be open.

use super::{Env, Progress, RunError, connect_all};
use crate::{
    conn::Ws,
    measure::{Clock, Processes, round3},
    protocol::{Incoming, Protocol},
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

/// Idle parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Seconds to hold them all open before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

/// What an idle run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    scenario: &'static str,
    protocol: Protocol,
    clients: usize,
    connect_s: f64,
    connections_per_s: f64,
    server_rss_before_kb: u64,
    server_rss_after_kb: u64,
    server_rss_per_connection_kb: Option<f64>,
    still_open: u64,
    ok: bool,
    problems: Vec<String>,
}

/// Runs an idle hold.
pub async fn run(args: &Args, env: &Env) -> Result<Summary, RunError> {
    let protocol = env.target.protocol;
    let before = settled_rss(&env.processes).await;
    let clock = Clock::start();
    let clients = connect_all(&env.target, args.clients, None).await?;
    let connect_s = clock.seconds();
    let open = Arc::new(AtomicU64::new(clients.len() as u64));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(hold(c.ws, protocol, Arc::clone(&open))))
        .collect();
    let _progress = Progress::start(env, "idle", {
        let open = Arc::clone(&open);
        move || format!("{} open", open.load(Relaxed))
    });
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = env.processes.server_rss();
    let still_open = open.load(Relaxed);
    for task in &tasks {
        task.abort();
    }
    let mut problems = Vec::new();
    if still_open != args.clients as u64 {
        problems.push(format!(
            "{} connections closed by the server",
            args.clients as u64 - still_open
        ));
    }
    Ok(Summary {
        scenario: "idle",
        protocol,
        clients: args.clients,
        connect_s: round3(connect_s),
        connections_per_s: (args.clients as f64 / connect_s).round(),
        server_rss_before_kb: before / 1024,
        server_rss_after_kb: after / 1024,
        server_rss_per_connection_kb: (env.processes.has_server() && args.clients > 0)
            .then(|| round3(after.saturating_sub(before) as f64 / 1024.0 / args.clients as f64)),
        still_open,
        ok: problems.is_empty(),
        problems,
    })
}

/// The server's RSS once it has stayed within 64 KiB for three readings 100 ms apart (at most 5 s).
async fn settled_rss(processes: &Processes) -> u64 {
    let mut last = processes.server_rss();
    let mut steady = 0;
    for _ in 0..50 {
        if steady == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = processes.server_rss();
        steady = if now.abs_diff(last) <= 64 * 1024 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    last
}

/// Reads until the server closes (pings are answered: by tungstenite, or here for Socket.IO).
async fn hold(mut ws: Ws, protocol: Protocol, open: Arc<AtomicU64>) {
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Text(text) = frame
            && protocol.read(&text) == Incoming::Ping
        {
            let _ = ws.send(Message::text(protocol.pong())).await;
        }
    }
    open.fetch_sub(1, Relaxed);
}
