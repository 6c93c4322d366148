//! What is acknowledged survives `kill -9`.

use crate::common::{Client, ServerProcess, data_dir, send_acked};
use serde_json::json;

#[tokio::test]
async fn acknowledged_messages_survive_kill_9_with_the_same_seq() {
    let (_keep, dir) = data_dir();
    let server = ServerProcess::start(&dir).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let lobby = send_acked(&mut a, "lobby", "l", 30).await;
    let dev = send_acked(&mut a, "dev", "d", 20).await;
    server.kill9().await;

    let server = ServerProcess::start(&dir).await;
    let mut b = Client::reconnect(&server.ws_url(), &a.token).await;
    assert_eq!(b.user, a.user, "the token key survived too");
    for (room, prefix, seqs) in [("lobby", "l", &lobby), ("dev", "d", &dev)] {
        b.send(json!({"type": "join", "room": room, "since": 0}))
            .await;
        for (i, seq) in seqs.iter().enumerate() {
            let m = b.expect("chat").await;
            assert_eq!(m["seq"], *seq);
            assert_eq!(m["text"], format!("{prefix} message {i}"));
            assert_eq!(m["sender"], a.user.as_str());
        }
        assert_eq!(
            b.expect("joined").await["head"],
            *seqs.last().expect("sent some")
        );
    }
    // Seq continues where it was, and ids still deduplicate.
    b.chat("lobby", "l-0", "l message 0").await;
    assert_eq!(b.expect("ack").await["seq"], 1);
    b.chat("lobby", "after", "after restart").await;
    assert_eq!(b.expect("ack").await["seq"], 31);
    server.kill9().await;
}

#[tokio::test]
async fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let (_keep, dir) = data_dir();
    let server = ServerProcess::start(&dir).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;
    let acked = send_acked(&mut a, "lobby", "t", 3).await;
    for _ in &acked {
        b.expect("chat").await;
    }
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(a.closed().await, Some(1001));
    assert_eq!(b.closed().await, Some(1001));

    let server = ServerProcess::start(&dir).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.send(json!({"type": "join", "room": "lobby", "since": 0}))
        .await;
    for seq in acked {
        assert_eq!(c.expect("chat").await["seq"], seq);
    }
    server.kill9().await;
}
