//! The WebSocket handshake the server answers itself, and the bytes on either side of it: a request that
//! is not an upgrade gets a plain 400 (426 for another protocol version) saying what is wrong; frames
//! sent in the same write as the upgrade request, many frames in one write, and frames split anywhere
//! all arrive whole and in order; and what the server writes (its frames, and the pongs for a client's
//! pings) reaches the client as whole frames.

use crate::common::{Client, TestServer, WAIT, http, masked_frame, send_masked, upgrade_request};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedReadHalf},
};

#[tokio::test]
async fn requests_that_are_not_upgrades_get_400_saying_why() {
    let server = TestServer::start().await;
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "Connection must include upgrade"),
        (&[("Connection", "Upgrade")], "Upgrade must be websocket"),
        (
            &[upgrade[0], upgrade[1], ("Sec-WebSocket-Version", "13")],
            "Sec-WebSocket-Key is missing",
        ),
    ];
    for (headers, why) in cases {
        let (status, _, body) = http(server.addr, "GET", "/ws", headers, "").await;
        assert_eq!(
            (status, body.trim()),
            (400, &*format!("not a WebSocket upgrade: {why}"))
        );
    }
    // Another version of the protocol: 426, naming the one spoken here (RFC 6455, section 4.2.2).
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let old = [upgrade[0], upgrade[1], key, ("Sec-WebSocket-Version", "8")];
    let (status, head, body) = http(server.addr, "GET", "/ws", &old, "").await;
    assert_eq!(
        (status, body.trim()),
        (
            426,
            "not a WebSocket upgrade: Sec-WebSocket-Version must be 13"
        )
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
}

#[tokio::test]
async fn the_upgrade_answers_with_the_accept_key_of_rfc_6455() {
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    // A browser's Connection header lists more than one token.
    let request = upgrade_request(server.addr)
        .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The example of RFC 6455, section 1.3.
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
}

/// Reads the HTTP response head (up to the blank line) byte by byte, leaving the frames after it.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("response"));
    }
    String::from_utf8(head).expect("utf-8")
}

/// Server frames as JSON until `n` acks have come (other frames are skipped).
async fn acks(tcp: &mut TcpStream, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut acks = Vec::new();
    while acks.len() < n {
        let mut chunk = [0u8; 4096];
        let got = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("acks within 10 s")
            .expect("read");
        assert!(got > 0, "closed after {} acks", acks.len());
        buf.extend_from_slice(&chunk[..got]);
        // Take every whole frame (servers do not mask; these are all short or 16-bit lengths).
        loop {
            if buf.len() < 2 {
                break;
            }
            let (len, header) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => break,
                n => (n as usize, 2),
            };
            if buf.len() < header + len {
                break;
            }
            let payload: Vec<u8> = buf.drain(..header + len).skip(header).collect();
            if let Ok(frame) = serde_json::from_slice::<Value>(&payload)
                && frame["type"] == "ack"
            {
                acks.push(frame);
            }
        }
    }
    acks
}

#[tokio::test]
async fn frames_with_the_request_in_one_write_or_split_anywhere_arrive_whole_and_in_order() {
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let chats: Vec<String> = (0..60)
        .map(|i| {
            // Short and long chats, some longer than one read of the server's.
            let text = if i % 10 == 9 {
                "l".repeat(12_000)
            } else {
                format!("chat {i}")
            };
            json!({"type": "chat", "room": "pipe", "id": format!("p{i}"), "text": text}).to_string()
        })
        .collect();
    // The upgrade request and the first 20 frames in one write: a client that does not wait for 101.
    let mut first = upgrade_request(server.addr).into_bytes();
    for chat in &chats[..20] {
        first.extend(masked_frame(0x1, chat.as_bytes()));
    }
    tcp.write_all(&first).await.expect("write");
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 101"));
    // The next 20 in one write, the last 20 a few bytes at a time.
    let together: Vec<u8> = chats[20..40]
        .iter()
        .flat_map(|c| masked_frame(0x1, c.as_bytes()))
        .collect();
    tcp.write_all(&together).await.expect("write");
    let split: Vec<u8> = chats[40..]
        .iter()
        .flat_map(|c| masked_frame(0x1, c.as_bytes()))
        .collect();
    for piece in split.chunks(7) {
        tcp.write_all(piece).await.expect("write");
        tcp.flush().await.expect("flush");
    }

    let acked = acks(&mut tcp, chats.len()).await;
    let ids: Vec<&str> = acked
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    let sent: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
    assert_eq!(ids, sent, "every chat acknowledged once, in order");
    let seqs: Vec<u64> = acked
        .iter()
        .map(|a| a["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());

    // And the connection is still a working one.
    send_masked(
        &mut tcp,
        0x1,
        br#"{"type":"chat","room":"pipe","id":"last","text":"ok"}"#,
    )
    .await;
    assert_eq!(acks(&mut tcp, 1).await[0]["id"], "last");
}

/// Reads a server's frames off a raw socket, checking each header: final, no extension bits, unmasked.
struct Frames {
    socket: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Frames {
    /// The next frame's opcode and payload.
    async fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let (len, header) = match self.buf[1] & 0x7f {
                    127 => panic!("no frame here is that large"),
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    126 => (usize::MAX, 4),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    assert_eq!(self.buf[0] & 0xf0, 0x80, "final, no extension bits");
                    assert_eq!(self.buf[1] & 0x80, 0, "a server's frames are not masked");
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf.drain(..header + len).skip(header).collect();
                    return (opcode, payload);
                }
            }
            let mut chunk = [0u8; 4096];
            let got = tokio::time::timeout(WAIT, self.socket.read(&mut chunk))
                .await
                .expect("a frame in time")
                .expect("read");
            assert!(got > 0, "closed");
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    /// The next text frame, as JSON.
    async fn next_json(&mut self) -> Value {
        loop {
            if let (0x1, payload) = self.next().await {
                return serde_json::from_slice(&payload).expect("JSON");
            }
        }
    }
}

#[tokio::test]
async fn pongs_for_a_clients_pings_go_between_whole_frames_of_a_flood() {
    const CHATS: usize = 400;
    const PINGS: usize = 40;
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(upgrade_request(server.addr).as_bytes())
        .await
        .expect("write");
    assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 101"));
    let (socket, mut writer) = tcp.into_split();
    let mut frames = Frames {
        socket,
        buf: Vec::new(),
    };
    writer
        .write_all(&masked_frame(0x1, br#"{"type":"join","room":"flood"}"#))
        .await
        .expect("join");
    while frames.next_json().await["type"] != "joined" {}

    let mut sender = Client::connect(&server.ws_url()).await;
    let flood = tokio::spawn(async move {
        for i in 0..CHATS {
            // Frames of every header size but the largest: short, and over 125 bytes.
            let text = if i % 7 == 0 {
                "w".repeat(300 + i)
            } else {
                format!("f{i}")
            };
            sender.chat("flood", &format!("f{i}"), &text).await;
        }
        sender
    });
    let pings = tokio::spawn(async move {
        for i in 0..PINGS {
            writer
                .write_all(&masked_frame(0x9, format!("ping {i}").as_bytes()))
                .await
                .expect("ping");
            tokio::task::yield_now().await;
        }
        writer
    });

    let (mut chats, mut pongs) = (Vec::new(), Vec::new());
    while chats.len() < CHATS || pongs.len() < PINGS {
        match frames.next().await {
            (0x1, payload) => {
                let frame: Value = serde_json::from_slice(&payload).expect("whole JSON");
                if frame["type"] == "chat" {
                    chats.push(frame);
                }
            }
            (0xA, payload) => pongs.push(String::from_utf8(payload).expect("UTF-8")),
            (0x9, _) => {} // the server's own heartbeat
            (opcode, _) => panic!("unexpected opcode {opcode}"),
        }
    }
    let _still_open = (flood.await.expect("flood"), pings.await.expect("pings"));
    let ids: Vec<&str> = chats
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    let sent: Vec<String> = (0..CHATS).map(|i| format!("f{i}")).collect();
    assert_eq!(ids, sent, "every chat, once, in order");
    let seqs: Vec<u64> = chats
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=CHATS as u64).collect::<Vec<_>>());
    let pinged: Vec<String> = (0..PINGS).map(|i| format!("ping {i}")).collect();
    assert_eq!(
        pongs, pinged,
        "each ping answered with its payload, in order"
    );
}
