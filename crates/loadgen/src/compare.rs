//! Compare mode: two servers measured in turns (A B A B …) on one machine, and the ratios of their
//! medians.
//!
//! This machine is shared and noisy, so a figure measured alone says little; two servers measured in
//! alternation, pinned to the same core, give ratios that hold. Each turn starts its server afresh (its
//! command with `{dir}` replaced by a new empty directory and `{port}` by the port), pinned with
//! `taskset`, waits until the port accepts connections, runs the scenario, and stops the server's whole
//! process group.

use crate::{
    conn::{Sources, Target},
    measure::{Processes, round3},
    protocol::Protocol,
    scenario::{Env, RunError, Scenario},
};
use serde_json::{Map, Value, json};
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

/// Compare parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The command that starts server A (run by `sh`; `{dir}`: a fresh directory, `{port}`: the port).
    #[arg(long)]
    pub a: String,
    /// Server A's protocol.
    #[arg(long, value_enum, default_value = "chat")]
    pub a_protocol: Protocol,
    /// The command that starts server B.
    #[arg(long)]
    pub b: String,
    /// Server B's protocol.
    #[arg(long, value_enum, default_value = "plain")]
    pub b_protocol: Protocol,
    /// The port each server listens on (one at a time).
    #[arg(long, default_value_t = 19100)]
    pub port: u16,
    /// Turns of each (A B A B: 2).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The CPUs the servers are pinned to (taskset's list); pin the generator elsewhere.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// Local addresses to connect from (127.0.0.1 up to 127.0.0.N); by default enough for the clients.
    #[arg(long)]
    pub sources: Option<usize>,
}

/// A server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Starting it failed.
    #[error("starting `{0}`: {1}")]
    Start(String, std::io::Error),
    /// It never listened.
    #[error("`{0}` did not listen on {1} within 30 s; its output: {2}")]
    NotListening(String, SocketAddr, String),
    /// The scenario failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs `scenario` against A and B in turns; returns every run's summary and the ratios A/B of the
/// medians of each numeric figure.
pub async fn run(args: &Args, scenario: &Scenario, progress: bool) -> Result<Value, CompareError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.port));
    let sources = args.sources.map_or_else(
        || Sources::for_connections(scenario.connections()),
        Sources::loopback,
    );
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for (label, command, protocol, runs) in [
            ("a", &args.a, args.a_protocol, &mut a_runs),
            ("b", &args.b, args.b_protocol, &mut b_runs),
        ] {
            let server = Server::start(command, &args.server_cpus, args.port, addr).await?;
            let env = Env {
                target: Target {
                    addrs: vec![addr],
                    protocol,
                    sources: sources.clone(),
                },
                processes: Processes::new(vec![server.pid]),
                progress,
            };
            let result = scenario.run(&env).await;
            server.stop().await;
            let summary = result?;
            eprintln!("{label}{}: {summary}", round + 1);
            runs.push(summary);
        }
    }
    Ok(json!({
        "compare": {"a": args.a, "b": args.b, "rounds": args.rounds, "server_cpus": args.server_cpus},
        "ratios_a_over_b": ratios(&a_runs, &b_runs),
        "a": a_runs,
        "b": b_runs,
    }))
}

/// A/B of the medians of every numeric figure both sides report (nested ones as `outer.inner`).
fn ratios(a: &[Value], b: &[Value]) -> Value {
    let (a, b) = (figures(a), figures(b));
    let mut out = Map::new();
    for (name, a_values) in &a {
        let Some(b_values) = b.get(name) else {
            continue;
        };
        let (ma, mb) = (median(a_values), median(b_values));
        if mb != 0.0 && name != "clients" && name != "rate" {
            out.insert(name.clone(), json!(round3(ma / mb)));
        }
    }
    Value::Object(out)
}

fn figures(runs: &[Value]) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut out: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for run in runs {
        let Value::Object(fields) = run else { continue };
        for (name, value) in fields {
            match value {
                Value::Number(n) => out.entry(name.clone()).or_default().extend(n.as_f64()),
                Value::Object(inner) => {
                    for (inner_name, v) in inner {
                        if let Some(x) = v.as_f64() {
                            out.entry(format!("{name}.{inner_name}"))
                                .or_default()
                                .push(x);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A server started for one turn.
#[derive(Debug)]
struct Server {
    pid: u32,
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Server {
    async fn start(
        command: &str,
        cpus: &str,
        port: u16,
        addr: SocketAddr,
    ) -> Result<Self, CompareError> {
        let dir = std::env::temp_dir().join(format!("loadgen-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(|e| CompareError::Start(command.into(), e))?;
        let command = command
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &port.to_string());
        let log = std::fs::File::create(dir.join("server.log"))
            .map_err(|e| CompareError::Start(command.clone(), e))?;
        let err = log
            .try_clone()
            .map_err(|e| CompareError::Start(command.clone(), e))?;
        let child = tokio::process::Command::new("taskset")
            .args(["-c", cpus, "sh", "-c", &format!("exec {command}")])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CompareError::Start(command.clone(), e))?;
        let pid = child.id().unwrap_or(0);
        let server = Self { pid, child, dir };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let output = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
        server.stop().await;
        Err(CompareError::NotListening(command, addr, output))
    }

    /// Stops the server's process group and removes its directory.
    async fn stop(mut self) {
        let group = format!("-{}", self.pid);
        signal("-TERM", &group).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            signal("-KILL", &group).await;
            let _ = self.child.wait().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `signal` to `target` (a pid, or `-pgid` for a whole process group) with `kill`.
async fn signal(signal: &str, target: &str) {
    // Through tokio's process driver: std's blocking wait would stall this one-threaded runtime.
    let _ = tokio::process::Command::new("kill")
        .args([signal, "--", target])
        .status()
        .await;
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_of_medians_of_the_figures_both_report() {
        let a = [
            json!({"x": 2.0, "lat": {"p99_ms": 4.0}, "only_a": 1}),
            json!({"x": 4.0, "lat": {"p99_ms": 8.0}}),
        ];
        let b = [
            json!({"x": 1.0, "lat": {"p99_ms": 4.0}}),
            json!({"x": 2.0, "lat": {"p99_ms": 4.0}}),
        ];
        assert_eq!(ratios(&a, &b), json!({"x": 2.0, "lat.p99_ms": 1.5}));
    }
}
