//! Identity and hostile clients: accounts, tokens on the handshake, origin, private rooms, limits.

use crate::common::{
    Client, Mode, TestServer, eventually, http, in_both_modes, raw_handshake, refused_status,
    send_masked, server_frames,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};

const QUIET: Duration = Duration::from_millis(300);

// Accounts, sessions and private rooms are kept by the store: both stores keep the same promises.
in_both_modes!(
    an_accounts_rooms_and_what_it_read_follow_it_to_its_next_connection,
    a_deleted_account_is_gone_and_its_name_inherits_nothing,
    an_invited_account_has_the_room_in_its_list_at_once,
    owners_remove_members_who_stop_receiving_at_once,
    private_rooms_admit_members_only_and_never_leak_history,
    register_login_session_logout,
    signing_out_revokes_the_token_and_closes_its_sockets_with_4501,
    the_handshake_takes_tokens_from_cookie_bearer_or_query_and_refuses_others,
);

async fn accounts_server(mode: Mode) -> TestServer {
    TestServer::start_in_with(mode, |c| c.allow_anonymous = false).await
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, String, Value) {
    let (status, head, body) = http(server.addr, "POST", path, &[], &body.to_string()).await;
    (
        status,
        head,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// Registers `name` and returns its token.
async fn register(server: &TestServer, name: &str) -> String {
    let (status, _, body) = post(
        server,
        "/api/register",
        json!({"name": name, "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

fn request_with(
    url: &str,
    header: &'static str,
    value: &str,
) -> tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert(header, HeaderValue::from_str(value).expect("header"));
    request
}

async fn register_login_session_logout(mode: Mode) {
    let server = accounts_server(mode).await;
    let (status, head, body) = post(
        &server,
        "/api/register",
        json!({"name": "ann", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["name"], "ann");
    let cookie = head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .expect("cookie");
    assert!(
        cookie.contains("chat_token=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let cases = [
        (
            json!({"name": "ann", "password": "another one"}),
            409,
            "name_taken",
        ),
        (
            json!({"name": "a n", "password": "correct horse"}),
            400,
            "bad_name",
        ),
        (
            json!({"name": "x".repeat(33), "password": "correct horse"}),
            400,
            "bad_name",
        ),
        (
            json!({"name": "bob", "password": "short"}),
            400,
            "weak_password",
        ),
        (json!({"name": "bob"}), 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let (got, _, body) = post(&server, "/api/register", request.clone()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{request} -> {body}"
        );
    }
    let (status, _, body) = http(server.addr, "POST", "/api/register", &[], "{not json").await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = post(
        &server,
        "/api/login",
        json!({"name": "ann", "password": "wrong horse"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_credentials"))
    );
    let (status, _, body) = post(
        &server,
        "/api/login",
        json!({"name": "ann", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().expect("token");
    assert!(body["expires_at"].as_str().is_some());

    let cookie = format!("chat_token={token}");
    let (_, _, me) = http(
        server.addr,
        "GET",
        "/api/session",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    let me: Value = serde_json::from_str(&me).expect("json");
    assert_eq!(
        (me["name"].as_str(), me["allow_anonymous"].as_bool()),
        (Some("ann"), Some(false))
    );
    let (_, _, nobody) = http(server.addr, "GET", "/api/session", &[], "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&nobody).expect("json")["name"],
        Value::Null
    );

    let (status, head, _) = http(server.addr, "POST", "/api/logout", &[], "").await;
    assert_eq!(status, 204);
    assert!(
        head.contains("chat_token=;") && head.contains("Max-Age=0"),
        "{head}"
    );
}

async fn the_handshake_takes_tokens_from_cookie_bearer_or_query_and_refuses_others(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let token = register(&server, "ann").await;

    assert_eq!(
        refused_status(url.as_str().into_client_request().expect("req")).await,
        401,
        "no token"
    );
    assert_eq!(
        refused_status(
            format!("{url}?token=forged")
                .into_client_request()
                .expect("req")
        )
        .await,
        401
    );
    let mut tampered = token.clone();
    tampered.pop();
    assert_eq!(
        refused_status(request_with(
            &url,
            "authorization",
            &format!("Bearer {tampered}")
        ))
        .await,
        401
    );

    let by_cookie = Client::connect_with(request_with(
        &url,
        "cookie",
        &format!("theme=dark; chat_token={token}"),
    ))
    .await;
    let by_bearer = Client::connect_with(request_with(
        &url,
        "authorization",
        &format!("Bearer {token}"),
    ))
    .await;
    let mut by_query = Client::reconnect(&url, &token).await;
    for c in [&by_cookie, &by_bearer, &by_query] {
        assert_eq!(c.user, "ann");
        assert!(c.token.is_empty(), "accounts get no guest token");
    }
    let mut other = by_cookie;
    by_query
        .send(json!({"type": "chat", "text": "hi", "sender": "admin"}))
        .await;
    assert_eq!(
        other.expect("chat").await["sender"],
        "ann",
        "the sender is the token's name"
    );
}

#[tokio::test]
async fn guest_tokens_and_expired_tokens_are_refused_when_accounts_are_required() {
    let guests = TestServer::start().await;
    let guest = Client::connect(&guests.ws_url()).await;
    let dir = guests.dir.path().to_owned();
    let mut guests = guests;
    guests.stop().await;
    // Same data directory (same signing key), anonymous access now off.
    let server = TestServer::start_with(move |c| {
        c.allow_anonymous = false;
        c.data_dir = dir;
        c.token_ttl = Duration::from_secs(1);
    })
    .await;
    let url = server.ws_url();
    assert_eq!(
        refused_status(
            format!("{url}?token={}", guest.token)
                .into_client_request()
                .expect("req")
        )
        .await,
        401
    );

    let token = register(&server, "ann").await;
    let expired = format!("{url}?token={token}");
    eventually("the one-second token expires", || async {
        match tokio_tungstenite::connect_async(expired.as_str()).await {
            Err(tungstenite::Error::Http(r)) => r.status().as_u16() == 401,
            _ => false,
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_is_closed_with_4501_when_its_token_expires() {
    let server = TestServer::start_with(|c| {
        c.allow_anonymous = false;
        c.token_ttl = Duration::from_secs(2);
    })
    .await;
    let token = register(&server, "ann").await;
    let mut ann = Client::reconnect(&server.ws_url(), &token).await;
    assert_eq!(ann.closed().await, Some(4501));
}

#[tokio::test]
async fn cross_site_origins_are_refused_before_the_upgrade() {
    // As a release build runs by default: pages on other local ports are other origins too.
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://chat.example".into()];
        c.loopback_origins = false;
    })
    .await;
    let url = server.ws_url();
    for origin in ["https://evil.example", "http://127.0.0.1:8081"] {
        assert_eq!(
            refused_status(request_with(&url, "origin", origin)).await,
            403,
            "{origin}"
        );
    }
    assert_eq!(
        refused_status(request_with(&url, "origin", "null")).await,
        403
    );
    Client::connect_with(request_with(
        &url,
        "origin",
        &format!("http://{}", server.addr),
    ))
    .await;
    Client::connect_with(request_with(&url, "origin", "https://chat.example")).await;
    Client::connect(&url).await; // no Origin: not a browser
}

#[tokio::test]
async fn with_loopback_origins_pages_on_this_machine_may_connect_and_no_one_else() {
    // The debug build's default: `trunk serve`'s page on 8081 reaches `cargo run -p server` on 8080.
    let server = TestServer::start_with(|c| c.loopback_origins = true).await;
    let url = server.ws_url();
    for origin in [
        "http://127.0.0.1:8081",
        "http://localhost:8081",
        "http://[::1]:3000",
    ] {
        Client::connect_with(request_with(&url, "origin", origin)).await;
    }
    for origin in [
        "https://evil.example",
        "http://127.0.0.1.evil.example:8081",
        "http://localhost.evil.example",
        "http://evil.example/127.0.0.1:8081",
        "null",
    ] {
        assert_eq!(
            refused_status(request_with(&url, "origin", origin)).await,
            403,
            "{origin}"
        );
    }
}

async fn an_accounts_rooms_and_what_it_read_follow_it_to_its_next_connection(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let token = register(&server, "ann").await;
    let mut first = Client::reconnect(&url, &token).await;
    assert_eq!(first.rooms, json!([]), "a new account has no rooms yet");
    for room in ["lobby", "dev", "ops"] {
        first.send(json!({"type": "join", "room": room})).await;
        first.expect("joined").await;
    }
    first.chat("dev", "d1", "one").await;
    first.expect("ack").await;
    first.chat("dev", "d2", "two").await;
    first.expect("ack").await;
    first
        .send(json!({"type": "read", "room": "dev", "seq": 1}))
        .await;
    first
        .send(json!({"type": "read", "room": "dev", "seq": 0}))
        .await; // lower: changes nothing
    first
        .send(json!({"type": "read", "room": "elsewhere", "seq": 9}))
        .await; // not in the list: nothing
    first.send(json!({"type": "leave", "room": "ops"})).await;
    first.expect("left").await;
    first
        .send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    first.expect("created").await;
    first.expect("joined").await;

    // Another device of the same account.
    let other = Client::reconnect(&url, &token).await;
    assert_eq!(
        other.rooms,
        json!([
            {"room": "dev", "last_read": 1, "head": 2},
            {"room": "lobby", "last_read": 0, "head": 0},
            {"room": "team", "last_read": 0, "head": 0, "private": true},
        ])
    );
    // Another account's list is its own.
    let bob = register(&server, "bob").await;
    assert_eq!(Client::reconnect(&url, &bob).await.rooms, json!([]));
}

async fn an_invited_account_has_the_room_in_its_list_at_once(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let (ann_token, bob_token) = (
        register(&server, "ann").await,
        register(&server, "bob").await,
    );
    let mut ann = Client::reconnect(&url, &ann_token).await;
    let mut bob = Client::reconnect(&url, &bob_token).await;
    let mut bob_elsewhere = Client::reconnect(&url, &bob_token).await;
    assert_eq!(bob.rooms, json!([]));
    ann.send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    ann.expect("created").await;
    ann.expect("joined").await;
    ann.chat("team", "t1", "welcome").await;
    ann.expect("ack").await;
    ann.send(json!({"type": "invite", "room": "team", "user": "bob"}))
        .await;
    ann.expect("invited").await;
    // Each of bob's connections is sent his list again, with the room in it.
    let listed = json!({"type": "rooms", "rooms": [
        {"room": "team", "last_read": 0, "head": 1, "private": true},
    ]});
    assert_eq!(bob.expect("rooms").await, listed);
    assert_eq!(bob_elsewhere.expect("rooms").await, listed);
    // ... and ann's, who was not invited, is not.
    ann.send(json!({"type": "ping"})).await;
    ann.expect("pong").await;
    // It stays in his list.
    assert_eq!(
        Client::reconnect(&url, &bob_token).await.rooms,
        listed["rooms"]
    );
}

async fn private_rooms_admit_members_only_and_never_leak_history(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let (ann_token, bob_token, eve_token) = (
        register(&server, "ann").await,
        register(&server, "bob").await,
        register(&server, "eve").await,
    );
    let mut ann = Client::reconnect(&url, &ann_token).await;
    let mut bob = Client::reconnect(&url, &bob_token).await;
    let mut eve = Client::reconnect(&url, &eve_token).await;

    ann.send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    assert_eq!(
        ann.expect("created").await,
        json!({"type": "created", "room": "team", "private": true})
    );
    assert_eq!(ann.expect("joined").await["room"], "team");
    ann.chat("team", "s1", "secret plan").await;
    assert_eq!(ann.expect("ack").await["seq"], 1);

    eve.send(json!({"type": "join", "room": "team", "since": 0}))
        .await;
    let refusal = eve.expect("error").await;
    assert_eq!(
        (refusal["code"].as_str(), refusal["room"].as_str()),
        (Some("forbidden"), Some("team"))
    );
    eve.send(json!({"type": "join", "room": "team"})).await;
    assert_eq!(eve.expect("error").await["code"], "forbidden");
    eve.send(json!({"type": "history", "room": "team", "before": 100}))
        .await;
    let refusal = eve.expect("error").await;
    assert_eq!(
        (refusal["code"].as_str(), refusal["room"].as_str()),
        (Some("forbidden"), Some("team")),
        "no page of a private room for outsiders"
    );
    eve.chat("team", "e1", "let me in").await;
    assert_eq!(eve.expect("error").await["code"], "forbidden");
    eve.send(json!({"type": "invite", "room": "team", "user": "eve"}))
        .await;
    assert_eq!(eve.expect("error").await["code"], "forbidden");
    eve.send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    assert_eq!(
        eve.expect("error").await["code"],
        "room_exists",
        "cannot take over an existing private room"
    );
    eve.expect_silence(QUIET).await;
    ann.expect_silence(QUIET).await; // eve's message went nowhere

    ann.send(json!({"type": "invite", "room": "team", "user": "bob"}))
        .await;
    assert_eq!(
        ann.expect("invited").await,
        json!({"type": "invited", "room": "team", "user": "bob"})
    );
    assert_eq!(bob.expect("rooms").await["rooms"][0]["room"], "team");
    bob.send(json!({"type": "join", "room": "team", "since": 0}))
        .await;
    let m = bob.expect("chat").await;
    assert_eq!(
        (m["text"].as_str(), m["seq"].as_u64()),
        (Some("secret plan"), Some(1)),
        "eve's attempt was not stored"
    );
    bob.expect("joined").await;

    // A public room with history cannot be made private.
    ann.chat("open", "p1", "public").await;
    ann.expect("ack").await;
    ann.send(json!({"type": "create", "room": "open", "private": true}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "room_exists");
}

#[tokio::test]
async fn excess_messages_are_rate_limited_not_relayed_and_can_be_sent_later() {
    let server = TestServer::start_with(|c| {
        c.rate_limit = 5.0;
        c.rate_burst = 5;
    })
    .await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    for i in 0..12 {
        a.chat("lobby", &format!("r{i}"), &format!("burst {i}"))
            .await;
    }
    let (mut acked, mut limited) = (Vec::new(), Vec::new());
    for _ in 0..12 {
        let m = a.recv().await;
        match m["type"].as_str() {
            Some("ack") => acked.push(m["id"].as_str().expect("id").to_owned()),
            Some("error") => {
                assert_eq!(m["code"], "rate_limited");
                limited.push(m["id"].as_str().expect("id").to_owned());
            }
            _ => panic!("unexpected {m}"),
        }
    }
    assert!(
        acked.len() >= 5 && !limited.is_empty(),
        "acked {acked:?}, limited {limited:?}"
    );
    for _ in &acked {
        b.expect("chat").await;
    }
    b.expect_silence(QUIET).await;

    // Resent after the wait the server names (as the app's outbox does), it is stored.
    let resent = &limited[0];
    for attempt in 0.. {
        assert!(attempt < 20, "never accepted");
        a.chat("lobby", resent, "retried").await;
        let m = a.recv().await;
        if m["type"] == "ack" {
            assert_eq!(m["id"], resent.as_str());
            break;
        }
        assert_eq!(m["code"], "rate_limited", "{m}");
        let wait = m["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!(wait > 0 && wait <= 1000, "{m}");
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[tokio::test]
async fn per_address_limit_refuses_with_429() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2).await;
    let url = server.ws_url();
    let a = Client::connect(&url).await;
    let _b = Client::connect(&url).await;
    assert_eq!(
        refused_status(url.as_str().into_client_request().expect("req")).await,
        429
    );
    drop(a);
    eventually("the closed connection's slot is free again", || async {
        tokio_tungstenite::connect_async(url.as_str()).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut slow = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    for (what, stream) in [("silent", &mut silent), ("slow", &mut slow)] {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the server hung up on the {what} client"))
            .ok();
    }
}

#[tokio::test]
async fn invalid_utf8_and_binary_frames_change_nothing() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.send_raw(Message::Binary(vec![0xff, 0xfe, 0x00].into()))
        .await;
    assert_eq!(a.expect("error").await["code"], "binary_unsupported");
    // A text frame that is not UTF-8 breaks the WebSocket protocol: the server closes (1007) that one
    // connection, and everyone else carries on.
    let mut raw = raw_handshake(server.addr).await;
    send_masked(&mut raw, 0x1, &[0xc3, 0x28]).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut bytes))
        .await
        .expect("the server closed that connection")
        .ok();
    let closes: Vec<u16> = server_frames(&bytes)
        .into_iter()
        .filter(|(opcode, _)| *opcode == 0x8)
        .map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]))
        .collect();
    assert_eq!(closes, vec![1007]);
    b.expect_silence(QUIET).await;
    a.send(json!({"type": "chat", "text": "still fine"})).await;
    assert_eq!(b.expect("chat").await["seq"], 1);
}

/// Signs `name` in; returns the token.
async fn login(server: &TestServer, name: &str, password: &str) -> String {
    let (status, _, body) = post(
        server,
        "/api/login",
        json!({"name": name, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

async fn post_as(server: &TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    let cookie = format!("chat_token={token}");
    let (status, _, body) = http(
        server.addr,
        "POST",
        path,
        &[("Cookie", &cookie)],
        &body.to_string(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn upgrade_status(server: &TestServer, token: &str) -> u16 {
    refused_status(
        format!("{}?token={token}", server.ws_url())
            .into_client_request()
            .expect("req"),
    )
    .await
}

async fn signing_out_revokes_the_token_and_closes_its_sockets_with_4501(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let first = register(&server, "ann").await;
    let second = login(&server, "ANN", "correct horse").await;
    let mut on_first = Client::reconnect(&url, &first).await;
    let mut on_second = Client::reconnect(&url, &second).await;
    assert_eq!(on_second.user, "ann", "signed in as the name as registered");

    let (status, _) = post_as(&server, &first, "/api/logout", json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(on_first.closed().await, Some(shared::close::UNAUTHORIZED));
    assert_eq!(upgrade_status(&server, &first).await, 401, "revoked");
    let (_, session) = {
        let cookie = format!("chat_token={first}");
        let (s, _, b) = http(
            server.addr,
            "GET",
            "/api/session",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        (s, serde_json::from_str::<Value>(&b).expect("json"))
    };
    assert_eq!(session["name"], Value::Null, "the API forgets it too");
    on_second.send(json!({"type": "ping"})).await;
    on_second.expect("pong").await;

    // Changing the password signs out everywhere and signs this browser in anew.
    let third = login(&server, "ann", "correct horse").await;
    let (status, body) = post_as(
        &server,
        &third,
        "/api/password",
        json!({"current": "correct horse", "new": "battery staple"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(on_second.closed().await, Some(shared::close::UNAUTHORIZED));
    assert_eq!(upgrade_status(&server, &second).await, 401);
    assert_eq!(upgrade_status(&server, &third).await, 401);
    let fresh = body["token"].as_str().expect("a new token");
    let mut on_fresh = Client::reconnect(&url, fresh).await;

    // Sign out everywhere.
    let other = login(&server, "ann", "battery staple").await;
    let (status, _) = post_as(&server, &other, "/api/logout-all", json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(on_fresh.closed().await, Some(shared::close::UNAUTHORIZED));
    assert_eq!(upgrade_status(&server, &other).await, 401);
}

async fn a_deleted_account_is_gone_and_its_name_inherits_nothing(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let ann = register(&server, "ann").await;
    let bob = register(&server, "bob").await;
    let mut owner = Client::reconnect(&url, &ann).await;
    owner
        .send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    owner.expect("created").await;
    owner.expect("joined").await;
    owner
        .send(json!({"type": "invite", "room": "team", "user": "BOB"}))
        .await;
    assert_eq!(
        owner.expect("invited").await["user"],
        "bob",
        "invites resolve the name as registered"
    );
    let mut member = Client::reconnect(&url, &bob).await;
    member
        .send(json!({"type": "join", "room": "team", "since": 0}))
        .await;
    member.expect("joined").await;

    let (status, _) = post_as(
        &server,
        &bob,
        "/api/account/delete",
        json!({"password": "wrong horse"}),
    )
    .await;
    assert_eq!(status, 401, "the password is checked");
    let (status, _) = post_as(
        &server,
        &bob,
        "/api/account/delete",
        json!({"password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(member.closed().await, Some(shared::close::UNAUTHORIZED));
    let (status, _, _) = post(
        &server,
        "/api/login",
        json!({"name": "bob", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 401);

    // Whoever registers "bob" now is a stranger to the room.
    let new_bob = register(&server, "bob").await;
    let mut stranger = Client::reconnect(&url, &new_bob).await;
    assert_eq!(
        stranger.rooms,
        json!([]),
        "nor does it inherit the old list"
    );
    stranger
        .send(json!({"type": "join", "room": "team", "since": 0}))
        .await;
    assert_eq!(stranger.expect("error").await["code"], "forbidden");
}

async fn owners_remove_members_who_stop_receiving_at_once(mode: Mode) {
    let server = accounts_server(mode).await;
    let url = server.ws_url();
    let (ann, bob_token, eve) = (
        register(&server, "ann").await,
        register(&server, "bob").await,
        register(&server, "eve").await,
    );
    let mut ann = Client::reconnect(&url, &ann).await;
    let mut bob = Client::reconnect(&url, &bob_token).await;
    let mut eve = Client::reconnect(&url, &eve).await;
    ann.send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    ann.expect("created").await;
    ann.expect("joined").await;
    ann.send(json!({"type": "invite", "room": "team", "user": "nobody"}))
        .await;
    let refusal = ann.expect("error").await;
    assert_eq!(
        refusal["code"], "unknown_user",
        "no invite for a name nobody has"
    );
    for user in ["bob", "eve"] {
        ann.send(json!({"type": "invite", "room": "team", "user": user}))
            .await;
        ann.expect("invited").await;
    }
    for member in [&mut bob, &mut eve] {
        member.expect("rooms").await;
        member
            .send(json!({"type": "join", "room": "team", "since": 0}))
            .await;
        member.expect("joined").await;
    }
    // Only the owner removes.
    eve.send(json!({"type": "remove", "room": "team", "user": "bob"}))
        .await;
    assert_eq!(eve.expect("error").await["code"], "forbidden");
    ann.send(json!({"type": "remove", "room": "team", "user": "bob"}))
        .await;
    assert_eq!(
        ann.expect("removed").await,
        json!({"type": "removed", "room": "team", "user": "bob"})
    );
    assert_eq!(
        bob.expect("left").await,
        json!({"type": "left", "room": "team"})
    );
    ann.chat("team", "t1", "after bob left").await;
    ann.expect("ack").await;
    assert_eq!(eve.expect("chat").await["text"], "after bob left");
    bob.expect_silence(QUIET).await;
    bob.chat("team", "b1", "still here?").await;
    assert_eq!(bob.expect("error").await["code"], "forbidden");
    // Off his list too: his next connection does not ask for the room.
    let listed = Client::reconnect(&url, &bob_token).await.rooms;
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .all(|r| r["room"] != "team"),
        "{listed}"
    );
    // A public room can be created explicitly too, once.
    bob.send(json!({"type": "create", "room": "open"})).await;
    assert_eq!(
        bob.expect("created").await,
        json!({"type": "created", "room": "open"})
    );
    bob.expect("joined").await;
    eve.send(json!({"type": "create", "room": "open"})).await;
    assert_eq!(eve.expect("error").await["code"], "room_exists");
    // Nor can anyone take the lobby, which everyone is in from the start.
    eve.send(json!({"type": "leave", "room": "lobby"})).await;
    eve.expect("left").await;
    eve.send(json!({"type": "create", "room": "lobby", "private": true}))
        .await;
    assert_eq!(eve.expect("error").await["code"], "room_exists");
}
