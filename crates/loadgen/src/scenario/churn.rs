//! Churn: C workers each connect, wait for the welcome, join a room (ours) and close, again and again
//! for D seconds: sustained connections per second and how long one takes.
//!
//! Ours: each worker comes back with a token minted beforehand (one per worker), so every handshake
//! checks a token's signature and its session, as returning browsers do.

use super::{Env, Progress, RunError, connect_all};
use crate::{
    conn::{self, ConnError},
    measure::{Clock, CpuUse, Latency, Percentiles, round3},
    protocol::Protocol,
};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Churn parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Workers connecting at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// What a churn run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    scenario: &'static str,
    protocol: Protocol,
    concurrency: usize,
    duration_s: f64,
    connections: u64,
    connections_per_s: f64,
    failed: u64,
    latency: Percentiles,
    #[serde(flatten)]
    cpu: CpuUse,
    server_cpu_us_per_connection: Option<f64>,
    ok: bool,
    problems: Vec<String>,
}

/// Runs churn.
pub async fn run(args: &Args, env: &Env) -> Result<Summary, RunError> {
    let protocol = env.target.protocol;
    if args.concurrency == 0 {
        return Err(RunError::Invalid("need at least one worker".into()));
    }
    // Ours: a token per worker, from a first connection each.
    let tokens: Vec<Option<String>> = if protocol.is_ours() {
        connect_all(&env.target, args.concurrency, None)
            .await?
            .into_iter()
            .map(|c| c.token)
            .collect()
    } else {
        vec![None; args.concurrency]
    };
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let latency = Latency::default();
    let clock = Clock::start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let _progress = Progress::start(env, "churn", {
        let done = Arc::clone(&done);
        move || format!("{} connections", done.load(Relaxed))
    });
    let cpu_before = env.processes.cpu();
    let workers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(w, token)| {
            let (target, done, failed, latency) = (
                env.target.clone(),
                Arc::clone(&done),
                Arc::clone(&failed),
                latency.clone(),
            );
            let first_error = Arc::clone(&first_error);
            tokio::spawn(async move {
                let mut i = w;
                while tokio::time::Instant::now() < deadline {
                    let began = clock.now_us();
                    match once(&target, i, token.as_deref(), w).await {
                        Ok(()) => {
                            done.fetch_add(1, Relaxed);
                            latency.record_us(clock.now_us() - began);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Relaxed);
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert_with(|| e.to_string());
                        }
                    }
                    // The next connection number: the next source address.
                    i += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let wall = clock.seconds();
    let cpu = CpuUse::between(cpu_before, env.processes.cpu(), wall);
    let (connections, failed) = (done.load(Relaxed), failed.load(Relaxed));
    let mut problems = Vec::new();
    if failed > 0 {
        let first = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        problems.push(format!(
            "{failed} connections failed (first: {})",
            first.unwrap_or_default()
        ));
    }
    if connections == 0 {
        problems.push("no connection completed".into());
    }
    Ok(Summary {
        scenario: "churn",
        protocol,
        concurrency: args.concurrency,
        duration_s: round3(wall),
        connections,
        connections_per_s: (connections as f64 / wall).round(),
        failed,
        latency: latency.percentiles(),
        server_cpu_us_per_connection: cpu.server_us_per(connections, &env.processes),
        cpu,
        ok: problems.is_empty(),
        problems,
    })
}

/// One connection: welcome, join (ours), close.
async fn once(
    target: &conn::Target,
    i: usize,
    token: Option<&str>,
    worker: usize,
) -> Result<(), ConnError> {
    let mut connected = conn::connect(target, i, token).await?;
    if target.protocol.is_ours() {
        conn::join(&mut connected.ws, &format!("churn-{worker}"), None).await?;
    }
    connected.ws.close(None).await?;
    Ok(())
}
