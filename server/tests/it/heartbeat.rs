//! Dead peers are noticed; live ones are not disturbed.

use crate::common::{Client, TestServer, raw_upgrade, server_frames};
use serde_json::json;
use std::time::Duration;

async fn fast_heartbeat_server() -> TestServer {
    TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(400);
    })
    .await
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_closed_with_4000() {
    use tokio::io::AsyncReadExt;
    let server = fast_heartbeat_server().await;
    // A raw socket that completes the handshake and then, like a paused process, never reads or writes
    // again: no Pong ever goes back. (A WebSocket library would answer pings as soon as it read.)
    let mut tcp = raw_upgrade(server.addr).await;

    // Everything the server sent, up to its closing the TCP connection (reading raw bytes answers no
    // ping).
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .expect("the server closed the connection")
        .expect("read");
    let body_at = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("upgrade response")
        + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    let close_codes: Vec<u16> = server_frames(&bytes[body_at..])
        .into_iter()
        .filter(|(opcode, _)| *opcode == 0x8)
        .map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]))
        .collect();
    assert_eq!(close_codes, vec![4000]);
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_connected() {
    let server = fast_heartbeat_server().await;
    let mut alive = Client::connect(&server.ws_url()).await;
    // Reading answers the server's pings (tungstenite replies automatically).
    alive.expect_silence(Duration::from_millis(1500)).await;
    alive.send(json!({"type": "ping"})).await;
    alive.expect("pong").await;
}
