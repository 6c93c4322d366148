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

#[tokio::test]
async fn chats_in_flight_at_sigterm_are_acked_and_stored_or_resent_never_lost() {
    const SENT: usize = 400;
    let (_keep, dir) = data_dir();
    let server = ServerProcess::start(&dir).await;
    let mut a = Client::connect(&server.ws_url()).await;
    for i in 0..SENT {
        a.chat("lobby", &format!("f{i}"), &format!("in flight {i}"))
            .await;
    }
    // SIGTERM while most of them are still being read, stored and acknowledged.
    let stopping = tokio::spawn(server.terminate());
    let mut acked = std::collections::HashMap::new();
    loop {
        match a.next_json_or_close().await {
            Ok(m) if m["type"] == "ack" => {
                acked.insert(m["id"].as_str().expect("id").to_owned(), m["seq"].clone());
            }
            Ok(m) => {
                assert_eq!(m["code"], "unavailable", "only acks or retry-later: {m}");
            }
            Err(code) => {
                assert_eq!(code, Some(1001));
                break;
            }
        }
    }
    assert!(stopping.await.expect("terminate").success());

    // After the restart the client does what the app's outbox does: resends everything not acked, with
    // the same ids. Every acked message kept its seq, and in the end each is stored exactly once.
    let server = ServerProcess::start(&dir).await;
    let mut b = Client::reconnect(&server.ws_url(), &a.token).await;
    let unacked: Vec<usize> = (0..SENT)
        .filter(|i| !acked.contains_key(&format!("f{i}")))
        .collect();
    for i in &unacked {
        b.chat("lobby", &format!("f{i}"), &format!("in flight {i}"))
            .await;
    }
    for _ in &unacked {
        let ack = b.expect("ack").await;
        acked.insert(
            ack["id"].as_str().expect("id").to_owned(),
            ack["seq"].clone(),
        );
    }
    b.send(json!({"type": "join", "room": "lobby", "since": 0}))
        .await;
    let mut stored = Vec::new();
    loop {
        let m = b.recv().await;
        if m["type"] == "joined" {
            break;
        }
        assert_eq!(m["seq"], acked[m["id"].as_str().expect("id")], "{m}");
        stored.push(m["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(stored.len(), SENT, "each stored exactly once: {stored:?}");
    server.kill9().await;
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_every_acked_message() {
    let (_keep, dir) = data_dir();
    let server = ServerProcess::start(&dir).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let before = send_acked(&mut a, "lobby", "b", 40).await;
    // The backup runs as its own process beside the live server, which keeps storing meanwhile.
    let backup = dir.with_file_name("backup.db");
    let writer = tokio::spawn(async move {
        send_acked(&mut a, "lobby", "during", 40).await;
        a
    });
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("--backup-to")
        .arg(&backup)
        .env_clear()
        .status()
        .await
        .expect("run backup");
    assert!(status.success());
    let a = writer.await.expect("writer");
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("--backup-to")
        .arg(&backup)
        .env_clear()
        .output()
        .await
        .expect("run backup");
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
    server.kill9().await;

    // Restore: the copy as chat.db, with the key, in a fresh data directory.
    let restored = dir.with_file_name("restored");
    std::fs::create_dir_all(&restored).expect("mkdir");
    std::fs::copy(&backup, restored.join("chat.db")).expect("copy db");
    std::fs::copy(dir.join("token.key"), restored.join("token.key")).expect("copy key");
    let server = ServerProcess::start(&restored).await;
    let mut b = Client::reconnect(&server.ws_url(), &a.token).await;
    b.send(json!({"type": "join", "room": "lobby", "since": 0}))
        .await;
    let mut seqs = Vec::new();
    loop {
        let m = b.recv().await;
        if m["type"] == "joined" {
            break;
        }
        seqs.push(m["seq"].as_u64().expect("seq"));
    }
    assert!(
        seqs.starts_with(&before),
        "everything acked before the backup is in it: {seqs:?}"
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "a consistent snapshot: no gap"
    );
    server.kill9().await;
}
