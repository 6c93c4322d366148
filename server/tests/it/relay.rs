//! The first slice's wire contract: welcome, relay to everyone but the sender, errors that keep the
//! connection usable, health, limits on what a frame may be, graceful shutdown.

use crate::common::{Client, Mode, TestServer, WAIT, in_both_modes, refused_status};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

in_both_modes!(
    relays_between_three_connections_excluding_the_sender,
    bad_frames_get_errors_and_the_connection_keeps_working,
    an_oversized_frame_closes_with_1009_and_is_not_relayed,
    ping_gets_pong,
    shutdown_closes_every_connection_with_1001,
    a_forged_token_gets_401_before_any_upgrade,
    the_welcome_names_the_protocol_and_metrics_count_what_happened,
);

const QUIET: Duration = Duration::from_millis(300);

async fn relays_between_three_connections_excluding_the_sender(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    assert_ne!(a.user, b.user, "each guest gets its own name");

    // Exactly what the article's client sends.
    a.send(json!({"type": "chat", "text": "hi", "timestamp": "1999-01-01T00:00:00.000Z"}))
        .await;
    for other in [&mut b, &mut c] {
        let m = other.expect("chat").await;
        assert_eq!(m["text"], "hi");
        assert_eq!(m["sender"], a.user.as_str(), "sender is set by the server");
        assert_eq!(m["room"], "lobby");
        assert_eq!(m["seq"], 1);
        let ts = m["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-11-25T10:40:31.123Z".len(),
            "RFC 3339 UTC ms: {ts}"
        );
        assert!(!ts.starts_with("1999"), "the client's timestamp is ignored");
    }
    a.expect_silence(QUIET).await;

    c.send(json!({"type": "chat", "text": "from c", "sender": "mallory"}))
        .await;
    for other in [&mut a, &mut b] {
        let m = other.expect("chat").await;
        assert_eq!(
            m["sender"],
            c.user.as_str(),
            "a client cannot choose its sender"
        );
        assert_eq!(m["seq"], 2);
    }
    c.expect_silence(QUIET).await;
}

async fn bad_frames_get_errors_and_the_connection_keeps_working(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;

    let cases = [
        ("{not json", "invalid_json"),
        ("[]", "invalid_message"),
        (
            r#"{"type":"info","message":"Hello from Next.js client!"}"#,
            "unknown_type",
        ),
        (r#"{"type":"chat"}"#, "bad_field"),
        (r#"{"type":"chat","text":42}"#, "bad_field"),
        (r#"{"type":"chat","text":"   "}"#, "bad_field"),
        (r#"{"type":"chat","text":"beep\u0007"}"#, "bad_field"),
        (
            r#"{"type":"chat","text":"x","room":"no spaces allowed"}"#,
            "bad_field",
        ),
        (
            r#"{"type":"chat","text":"x","id":"0123456789012345678901234567890123456789012345678901234567890123456789"}"#,
            "bad_field",
        ),
        (
            r#"{"type":"join","room":"r","since":1e999}"#,
            "invalid_json",
        ),
    ];
    for (frame, code) in cases {
        a.send_text(frame).await;
        let e = a.expect("error").await;
        assert_eq!(e["code"], code, "for {frame}: {e}");
        assert!(!e["message"].as_str().expect("message").is_empty());
    }
    let deep = format!(
        r#"{{"type":"chat","text":{}"x"{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    a.send_text(deep).await;
    assert_eq!(a.expect("error").await["code"], "invalid_json");
    a.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(a.expect("error").await["code"], "binary_unsupported");

    b.expect_silence(QUIET).await; // nothing invalid was relayed
    a.send(json!({"type": "chat", "text": "still here"})).await;
    let m = b.expect("chat").await;
    assert_eq!(
        (m["text"].as_str(), m["seq"].as_u64()),
        (Some("still here"), Some(1)),
        "nothing invalid was stored"
    );
}

async fn an_oversized_frame_closes_with_1009_and_is_not_relayed(mode: Mode) {
    let server = TestServer::start_in_with(mode, |c| c.max_message_bytes = 1024).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;
    a.send(json!({"type": "chat", "text": "x".repeat(2000)}))
        .await;
    assert_eq!(a.closed().await, Some(1009));
    b.expect_silence(QUIET).await;
    b.send(json!({"type": "chat", "text": "fine", "id": "k"}))
        .await;
    assert_eq!(
        b.expect("ack").await["seq"],
        1,
        "the oversized message was not stored"
    );
}

async fn ping_gets_pong(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let mut a = Client::connect(&server.ws_url()).await;
    a.send(json!({"type": "ping"})).await;
    a.expect("pong").await;
}

#[tokio::test]
async fn healthz_and_a_missing_web_app_answer_plainly() {
    let server = TestServer::start().await;
    let (status, _) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = http_get(server.addr, "/").await;
    assert_eq!(status, 404);
    assert!(body.contains("not built"), "{body}");
}

#[tokio::test]
async fn serves_the_built_web_app_with_a_fallback_to_index() {
    let server = TestServer::start_with(|c| {
        std::fs::create_dir_all(&c.static_dir).expect("mkdir");
        std::fs::write(c.static_dir.join("index.html"), "<title>chat</title>").expect("write");
        std::fs::write(c.static_dir.join("app.js"), "console.log(1)").expect("write");
    })
    .await;
    assert_eq!(
        http_get(server.addr, "/").await,
        (200, "<title>chat</title>".into())
    );
    assert_eq!(
        http_get(server.addr, "/app.js").await,
        (200, "console.log(1)".into())
    );
    assert_eq!(
        http_get(server.addr, "/rooms/dev").await,
        (200, "<title>chat</title>".into())
    );
}

#[tokio::test]
async fn the_web_app_is_sent_precompressed_and_hashed_assets_are_cached_for_good() {
    let asset = "/app-0123456789abcdef.js";
    let server = TestServer::start_with(|c| {
        let dir = &c.static_dir;
        std::fs::create_dir_all(dir).expect("mkdir");
        for (name, body) in [
            ("index.html", "<title>chat</title>"),
            ("index.html.br", "brotli page"),
            ("app-0123456789abcdef.js", "console.log(1)"),
            ("app-0123456789abcdef.js.gz", "gzipped script"),
            ("app-0123456789abcdef.js.br", "brotli script"),
        ] {
            std::fs::write(dir.join(name), body).expect("write");
        }
    })
    .await;
    let get = |path: &'static str, accept: &'static str| async move {
        let (status, head, body) =
            crate::common::http(server.addr, "GET", path, &[("Accept-Encoding", accept)], "").await;
        (status, head.to_lowercase(), body)
    };
    let (status, head, body) = get(asset, "gzip, deflate, br").await;
    assert_eq!((status, body.as_str()), (200, "brotli script"));
    assert!(head.contains("content-encoding: br"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    let (_, head, body) = get(asset, "gzip").await;
    assert_eq!(body, "gzipped script");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let (_, head, body) = get(asset, "identity").await;
    assert_eq!(body, "console.log(1)");
    assert!(!head.contains("content-encoding"), "{head}");
    // The page names the assets of the current build: browsers check it again on every visit.
    for path in ["/", "/rooms/dev"] {
        let (status, head, body) = get(path, "br").await;
        assert_eq!((status, body.as_str()), (200, "brotli page"), "{path}");
        assert!(head.contains("cache-control: no-cache"), "{path}: {head}");
    }
    let (status, head, _) = get("/app-0123456789abcdef.css", "br").await;
    assert_eq!(status, 200, "an unknown file gets the page");
    assert!(head.contains("cache-control: no-cache"), "{head}");
}

async fn shutdown_closes_every_connection_with_1001(mode: Mode) {
    let mut server = TestServer::start_in(mode).await;
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;
    let stopping = tokio::time::Instant::now();
    server.stop().await;
    assert!(stopping.elapsed() < WAIT);
    assert_eq!(a.closed().await, Some(1001));
    assert_eq!(b.closed().await, Some(1001));
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn connection_limit_refuses_the_upgrade_with_503() {
    let server = TestServer::start_with(|c| c.max_connections = 1).await;
    let _a = Client::connect(&server.ws_url()).await;
    assert_eq!(refused_status(server.ws_url()).await, 503, "over the limit");
}

async fn a_forged_token_gets_401_before_any_upgrade(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let forged = format!("{}?token=forged.token.here", server.ws_url());
    assert_eq!(refused_status(forged).await, 401);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = crate::common::http(addr, "GET", path, &[], "").await;
    (status, body)
}

async fn the_welcome_names_the_protocol_and_metrics_count_what_happened(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let mut raw = ws;
    let welcome = loop {
        use futures_util::StreamExt;
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = raw.next().await {
            break serde_json::from_str::<serde_json::Value>(t.as_str()).expect("json");
        }
    };
    assert_eq!(welcome["protocol"], shared::PROTOCOL_VERSION);
    drop(raw);

    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.chat("lobby", "m1", "counted").await;
    a.expect("ack").await;
    b.expect("chat").await;
    a.send(json!({"type": "nope"})).await;
    a.expect("error").await;
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "chat_connections 2",
        "chat_chats_stored_total 1",
        "chat_acks_total 1",
        "chat_errors_total{code=\"unknown_type\"} 1",
        "chat_accept_to_publish_seconds_count 1",
        "chat_relay_queue 0",
    ] {
        assert!(body.contains(line), "{line} missing from:\n{body}");
    }
    // The first connection is gone; how it ended is counted too.
    assert!(
        body.contains("chat_disconnects_total{reason=\"peer_gone\"} 1"),
        "{body}"
    );
}
