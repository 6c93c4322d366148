//! Thousands of random and malicious frames: the server answers each with an error (or closes that one
//! connection), keeps relaying for everyone else, and its memory does not grow with the abuse.

use crate::common::{Client, ServerProcess, data_dir};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One hostile frame.
fn frame(rng: &mut Rng) -> Message {
    let junk = |rng: &mut Rng, n| String::from_utf8_lossy(&rng.bytes(n)).into_owned();
    let types = [
        "chat",
        "join",
        "leave",
        "ping",
        "invite",
        "status",
        "ack",
        "",
        "CHAT",
        "chat\u{0}",
    ];
    let kind = types[rng.below(types.len() as u64) as usize];
    let text = match rng.below(12) {
        0 => {
            let n = rng.below(2000) as usize;
            junk(rng, n)
        }
        1 => format!(r#"{{"type":"{kind}","text":{}}}"#, rng.next()),
        2 => format!(
            r#"{{"type":"{kind}","room":"{}","since":{}e{}}}"#,
            junk(rng, 8),
            rng.next(),
            rng.below(999)
        ),
        3 => {
            let depth = rng.below(3000) as usize;
            format!(
                r#"{{"type":"{kind}","text":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        }
        4 => {
            json!({"type": kind, "text": junk(rng, 64), "id": junk(rng, 80), "room": junk(rng, 70)})
                .to_string()
        }
        5 => json!({"type": "chat", "text": " \n\t "}).to_string(),
        6 => json!({"type": "chat", "text": format!("ctl\u{1b}[2J{}", rng.next())}).to_string(),
        7 => json!({"type": "join", "room": "r", "since": -1}).to_string(),
        8 => json!({"type": "chat", "text": "x", "room": "y".repeat(65)}).to_string(),
        9 => json!({"type": "chat", "text": format!("valid {}", rng.next()), "room": "fuzz"})
            .to_string(),
        10 => {
            let n = rng.below(512) as usize;
            return Message::Binary(rng.bytes(n).into());
        }
        _ => format!(r#"{{"type":"{kind}","#),
    };
    Message::Text(text.into())
}

#[tokio::test]
async fn random_frames_change_nothing_for_others_and_memory_stays_flat() {
    const FRAMES_PER_ROUND: usize = 3000;
    let (_keep, dir) = data_dir();
    let server = ServerProcess::start(&dir).await;
    let url = server.ws_url();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rss = Vec::new();
    // An honest pair stays connected through the whole storm and is served during it.
    let mut honest = Client::connect(&url).await;
    let mut listener = Client::connect(&url).await;
    for round in 0..3 {
        let mut attacker = Client::connect(&url).await;
        for i in 0..FRAMES_PER_ROUND {
            attacker.send_raw(frame(&mut rng)).await;
            if i == FRAMES_PER_ROUND / 2 {
                let id = format!("honest-{round}");
                honest
                    .send(json!({"type": "chat", "text": id, "id": id}))
                    .await;
                assert_eq!(honest.expect("ack").await["id"], id.as_str());
                loop {
                    let m = listener.expect("chat").await;
                    if m["text"] == id.as_str() {
                        break;
                    }
                }
            }
        }
        // Everything before the ping has been handled once its pong arrives.
        attacker.send(json!({"type": "ping"})).await;
        loop {
            let m = attacker.recv().await;
            assert!(
                matches!(
                    m["type"].as_str(),
                    Some("error" | "joined" | "left" | "pong" | "ack")
                ),
                "only errors and answers come back: {m}"
            );
            if m["type"] == "pong" {
                break;
            }
        }
        drop(attacker);
        rss.push(server.rss_bytes());
    }
    // The first round warms caches and pools; later rounds must not keep growing.
    let growth = rss[2].saturating_sub(rss[1]);
    assert!(
        growth < 8 * 1024 * 1024,
        "resident memory grew by {growth} bytes in a round: {rss:?}"
    );

    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.send(json!({"type": "chat", "text": "after the storm", "id": "calm"}))
        .await;
    assert_eq!(a.expect("ack").await["id"], "calm");
    assert_eq!(b.expect("chat").await["text"], "after the storm");
    server.kill9().await;
}
