//! A short run of every scenario through the `loadgen` binary against a real server (in this process,
//! on a free port, with its own data directory), so the tool keeps working: each must report `ok` with
//! the figures it exists for.

use serde_json::Value;
use std::net::SocketAddr;

async fn start_server() -> (
    SocketAddr,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::Config::with_data_dir(dir.path());
    config.static_dir = dir.path().join("static");
    config.allow_anonymous = true;
    config.rate_limit = 0.0;
    config.max_connections_per_ip = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listener, config, async {
        let _ = stopped.await;
    }));
    (addr, dir, stop)
}

async fn loadgen(addr: SocketAddr, scenario: &[&str]) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--quiet", "run", "--addr", &addr.to_string()])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(scenario)
        .output()
        .await
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{scenario:?}: no JSON summary ({e}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{scenario:?}: {summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_the_server_and_holds_its_guarantees() {
    let (addr, _dir, _stop) = start_server().await;

    let fanout = loadgen(
        addr,
        &[
            "fanout",
            "--clients",
            "30",
            "--rooms",
            "3",
            "--senders",
            "6",
            "--rate",
            "300",
            "--duration",
            "1",
        ],
    )
    .await;
    let sent = fanout["sent"].as_u64().expect("sent");
    assert!(sent >= 250, "{fanout}");
    // Each room has 10 members: every chat reaches the 9 others, once.
    assert_eq!(fanout["expected"], sent * 9);
    assert_eq!(fanout["received"], fanout["expected"]);
    assert_eq!(fanout["acks"], sent);
    assert!(fanout["server_cpu_us_per_delivery"].as_f64().expect("cpu") > 0.0);
    assert!(fanout["latency"]["p99_ms"].as_f64().expect("p99") > 0.0);

    // The server also speaks the design article's plain protocol (one room, no acks).
    let plain = loadgen(
        addr,
        &[
            "--protocol",
            "plain",
            "fanout",
            "--clients",
            "20",
            "--senders",
            "2",
            "--rate",
            "100",
            "--duration",
            "1",
        ],
    )
    .await;
    assert_eq!(
        plain["received"],
        plain["sent"].as_u64().expect("sent") * 19
    );

    let idle = loadgen(addr, &["idle", "--clients", "100", "--hold", "0.5"]).await;
    assert_eq!(idle["still_open"], 100);
    assert!(idle["server_rss_per_connection_kb"].is_number(), "{idle}");

    let churn = loadgen(addr, &["churn", "--concurrency", "4", "--duration", "1"]).await;
    assert!(churn["connections"].as_u64().expect("connections") > 0);
    assert_eq!(churn["failed"], 0);

    let storm = loadgen(
        addr,
        &["storm", "--clients", "50", "--behind", "10", "--rooms", "2"],
    )
    .await;
    assert_eq!(
        (&storm["caught_up"], &storm["replayed"]),
        (&50.into(), &500.into())
    );
    assert_eq!(
        (&storm["gaps"], &storm["duplicates"]),
        (&0.into(), &0.into())
    );

    let acks = loadgen(addr, &["acks", "--senders", "3", "--duration", "1"]).await;
    assert!(acks["acks"].as_u64().expect("acks") > 0);
}
