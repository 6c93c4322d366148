//! Several nodes on one real `redis-server`: one order per room across nodes, recovery on any node,
//! accounts and private rooms shared, Redis going away and coming back without losing an acked chat,
//! and an embedded deployment imported into Redis.

use crate::common::{
    Client, RedisServer, ServerProcess, TestServer, WAIT, data_dir, eventually, http,
    refused_status, send_acked,
};
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};

const QUIET: Duration = Duration::from_millis(300);

async fn join(client: &mut Client, room: &str, since: Option<u64>) -> Vec<Value> {
    let mut frame = json!({"type": "join", "room": room});
    if let Some(s) = since {
        frame["since"] = s.into();
    }
    client.send(frame).await;
    let mut replayed = Vec::new();
    loop {
        let m = client.recv().await;
        match m["type"].as_str() {
            Some("chat") => replayed.push(m),
            Some("joined") => return replayed,
            _ => panic!("unexpected frame during a join: {m}"),
        }
    }
}

/// Reads `n` chat frames of `room` (nothing else may arrive): `seq -> (sender, text)`, in arrival order.
async fn read_chats(client: &mut Client, n: usize) -> Vec<(u64, (String, String))> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = client.expect("chat").await;
        out.push((
            m["seq"].as_u64().expect("seq"),
            (
                m["sender"].as_str().expect("sender").to_owned(),
                m["text"].as_str().expect("text").to_owned(),
            ),
        ));
    }
    out
}

async fn ready(server: &TestServer) -> u16 {
    http(server.addr, "GET", "/readyz", &[], "").await.0
}

#[tokio::test]
async fn two_nodes_agree_on_one_gap_free_order_and_recover_on_either() {
    let redis = RedisServer::start().await;
    let a = TestServer::node_on(&redis, |_| {}).await;
    let b = TestServer::node_on(&redis, |_| {}).await;
    let mut on_a = Client::connect(&a.ws_url()).await;
    let mut on_b = Client::connect(&b.ws_url()).await;
    join(&mut on_a, "r", Some(0)).await;
    join(&mut on_b, "r", Some(0)).await;

    // Two senders on each node, all at once, into one room.
    const EACH: usize = 40;
    let mut senders = Vec::new();
    for (i, url) in [a.ws_url(), a.ws_url(), b.ws_url(), b.ws_url()]
        .into_iter()
        .enumerate()
    {
        senders.push(tokio::spawn(async move {
            let mut sender = Client::connect(&url).await;
            let seqs = send_acked(&mut sender, "r", &format!("s{i}"), EACH).await;
            (sender.token.clone(), seqs)
        }));
    }
    let mut acked = Vec::new();
    let mut tokens = Vec::new();
    for sender in senders {
        let (token, seqs) = sender.await.expect("sender");
        tokens.push(token);
        acked.extend(seqs);
    }
    acked.sort_unstable();
    let total = 4 * EACH;
    assert_eq!(
        acked,
        (1..=total as u64).collect::<Vec<_>>(),
        "one seq each, no gap"
    );

    let seen_a = read_chats(&mut on_a, total).await;
    let seen_b = read_chats(&mut on_b, total).await;
    let order: Vec<u64> = seen_a.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order,
        (1..=total as u64).collect::<Vec<_>>(),
        "node A's client: in order"
    );
    assert_eq!(
        seen_a, seen_b,
        "both nodes' clients see the same messages in the same order"
    );

    // The sender of `s0-0` (on A) sends it again through B: recognised, acked with its first seq.
    let first: BTreeMap<u64, (String, String)> = seen_a.into_iter().collect();
    let original = first
        .iter()
        .find(|(_, (_, text))| text == "s0 message 0")
        .map(|(seq, _)| *seq)
        .expect("s0-0 relayed");
    let mut again = Client::reconnect(&b.ws_url(), &tokens[0]).await;
    again.chat("r", "s0-0", "s0 message 0").await;
    let ack = again.expect("ack").await;
    assert_eq!(ack["seq"], original);
    on_a.expect_silence(QUIET).await;
    on_b.expect_silence(QUIET).await;

    // Node A goes away; its client comes back on B and recovers what it missed meanwhile.
    let mut a = a;
    a.stop().await;
    assert_eq!(on_a.closed().await, Some(1001));
    let mut sender = Client::connect(&b.ws_url()).await;
    send_acked(&mut sender, "r", "late", 5).await;
    let mut back = Client::connect(&b.ws_url()).await;
    let replayed = join(&mut back, "r", Some(total as u64)).await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        ((total as u64 + 1)..=(total as u64 + 5)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_killed_node_s_clients_recover_everything_on_another() {
    let redis = RedisServer::start().await;
    let (_keep, dir) = data_dir();
    let a = ServerProcess::start_with(&dir, &["--redis-url", &redis.url()]).await;
    let addr = a.addr;
    eventually("node A is ready", || async move {
        http(addr, "GET", "/readyz", &[], "").await.0 == 200
    })
    .await;
    let b = TestServer::node_on(&redis, |_| {}).await;
    let mut reader = Client::connect(&a.ws_url()).await;
    join(&mut reader, "r", Some(0)).await;
    let mut sender = Client::connect(&a.ws_url()).await;
    let mut acked = send_acked(&mut sender, "r", "a", 10).await;
    let last = read_chats(&mut reader, 10).await.last().expect("chats").0;

    // SIGKILL: no shutdown code runs. Meanwhile B goes on taking chats.
    a.kill9().await;
    let mut other = Client::connect(&b.ws_url()).await;
    let during = send_acked(&mut other, "r", "b", 10).await;
    acked.extend(&during);
    acked.sort_unstable();
    assert_eq!(acked, (1..=20).collect::<Vec<_>>());

    // A's reader comes back on B, as itself, and gets exactly what it missed.
    let mut back = Client::reconnect(&b.ws_url(), &reader.token).await;
    assert_eq!(back.user, reader.user);
    let replayed = join(&mut back, "r", Some(last)).await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, during);
}

/// Stores a message the way a node of the next version might: a stream entry with a field this version
/// does not know, published in a payload format it does not know. Returns its seq.
async fn store_as_a_newer_node(redis: &RedisServer, room: &str, sender: &str, text: &str) -> u64 {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let script = redis::Script::new(
        "local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
         redis.call('XADD', KEYS[2], seq .. '-0', 's', ARGV[1], 't', ARGV[2], 'ts', ARGV[3], 'id', '',
                    'o', 'next\\n1', 'reactions', '{}')
         redis.call('PUBLISH', KEYS[3], '2\\n' .. seq .. '\\nsomething only the next version reads')
         return seq",
    );
    script
        .key(format!("chat:{{{room}}}:meta"))
        .key(format!("chat:{{{room}}}:log"))
        .key(format!("chat:room:{room}"))
        .arg(sender)
        .arg(text)
        .arg(1_700_000_000_000_i64)
        .invoke_async(&mut conn)
        .await
        .expect("stored")
}

#[tokio::test]
async fn a_newer_node_s_messages_reach_this_version_s_clients_in_order() {
    let redis = RedisServer::start().await;
    let node = TestServer::node_on(&redis, |_| {}).await;
    let mut reader = Client::connect(&node.ws_url()).await;
    join(&mut reader, "r", Some(0)).await;
    let mut sender = Client::connect(&node.ws_url()).await;
    send_acked(&mut sender, "r", "old", 1).await;
    for text in ["from the future 1", "from the future 2"] {
        store_as_a_newer_node(&redis, "r", "zed", text).await;
    }
    // Delivered as they come, not only once a later message reveals a gap.
    let mut seen = read_chats(&mut reader, 3).await;
    send_acked(&mut sender, "r", "again", 1).await;
    seen.extend(read_chats(&mut reader, 1).await);
    let order: Vec<(u64, &str)> = seen.iter().map(|(s, (_, t))| (*s, t.as_str())).collect();
    assert_eq!(
        order,
        [
            (1, "old message 0"),
            (2, "from the future 1"),
            (3, "from the future 2"),
            (4, "again message 0")
        ]
    );
    reader.expect_silence(QUIET).await;
    // History holds the newer entries as well, for a client recovering on this version.
    let mut late = Client::connect(&node.ws_url()).await;
    let replayed = join(&mut late, "r", Some(1)).await;
    let texts: Vec<&str> = replayed.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["from the future 1", "from the future 2", "again message 0"]
    );
}

async fn post(server: &TestServer, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let cookie = token.map(|t| format!("chat_token={t}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    let (status, _, body) = http(server.addr, "POST", path, &headers, &body.to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn accounts_tokens_and_private_rooms_are_shared_by_every_node() {
    let redis = RedisServer::start().await;
    let accounts_only = |c: &mut server::Config| c.allow_anonymous = false;
    let a = TestServer::node_on(&redis, accounts_only).await;
    let b = TestServer::node_on(&redis, accounts_only).await;
    let credentials = |name: &str| json!({"name": name, "password": "correct horse"});

    // Registered on A, signed in on B; A's token works on B.
    let (status, body) = post(&a, "/api/register", None, credentials("ann")).await;
    assert_eq!(status, 201, "{body}");
    let ann_a = body["token"].as_str().expect("token").to_owned();
    let (status, body) = post(&b, "/api/login", None, credentials("ANN")).await;
    assert_eq!(status, 200, "{body}");
    let ann_b = body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        post(&b, "/api/register", None, credentials("Ann")).await.0,
        409,
        "the name is taken on every node"
    );
    for name in ["bob", "eve"] {
        assert_eq!(
            post(&b, "/api/register", None, credentials(name)).await.0,
            201
        );
    }
    let bob = post(&a, "/api/login", None, credentials("bob")).await.1["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let eve = post(&a, "/api/login", None, credentials("eve")).await.1["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut ann = Client::reconnect(&b.ws_url(), &ann_a).await;
    assert_eq!(ann.user, "ann");

    // A private room made and shared on A is enforced on B.
    let mut owner = Client::reconnect(&a.ws_url(), &ann_b).await;
    owner
        .send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    owner.expect("created").await;
    owner.expect("joined").await;
    let mut bob_b = Client::reconnect(&b.ws_url(), &bob).await;
    owner
        .send(json!({"type": "invite", "room": "team", "user": "bob"}))
        .await;
    owner.expect("invited").await;
    // Invited on A: bob's connection on B is sent his list again, with the room in it.
    assert_eq!(
        bob_b.expect("rooms").await["rooms"],
        json!([{"room": "team", "last_read": 0, "head": 0, "private": true}])
    );
    join(&mut bob_b, "team", None).await;
    let mut eve_b = Client::reconnect(&b.ws_url(), &eve).await;
    eve_b.send(json!({"type": "join", "room": "team"})).await;
    assert_eq!(eve_b.expect("error").await["code"], "forbidden");
    eve_b.chat("team", "e1", "let me in").await;
    assert_eq!(eve_b.expect("error").await["code"], "forbidden");
    owner.chat("team", "t1", "members only").await;
    owner.expect("ack").await;
    assert_eq!(bob_b.expect("chat").await["text"], "members only");

    // Removed on A: out of the room on B at once.
    owner
        .send(json!({"type": "remove", "room": "team", "user": "bob"}))
        .await;
    owner.expect("removed").await;
    assert_eq!(bob_b.expect("left").await["room"], "team");
    owner.chat("team", "t2", "bob is gone").await;
    owner.expect("ack").await;
    bob_b.expect_silence(QUIET).await;

    // Signed out on A: the session's socket on B closes, and B refuses the token.
    let (status, _) = post(&a, "/api/logout", Some(&ann_a), json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(ann.closed().await, Some(shared::close::UNAUTHORIZED));
    let (status, session) = {
        let cookie = format!("chat_token={ann_a}");
        let (s, _, body) = http(b.addr, "GET", "/api/session", &[("Cookie", &cookie)], "").await;
        (s, serde_json::from_str::<Value>(&body).expect("json"))
    };
    assert_eq!(
        (status, &session["name"]),
        (200, &Value::Null),
        "B forgot the session too"
    );
}

#[tokio::test]
async fn failed_sign_ins_and_the_per_user_cap_count_over_every_node() {
    let redis = RedisServer::start().await;
    let limits = |c: &mut server::Config| {
        c.login_failures_per_minute = 2;
        c.max_connections_per_user = 2;
    };
    let a = TestServer::node_on(&redis, limits).await;
    let b = TestServer::node_on(&redis, limits).await;
    let password = |p: &str| json!({"name": "ann", "password": p});
    let (status, body) = post(&a, "/api/register", None, password("correct horse")).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();

    // One failure on each node spends the name's budget of two: both nodes now refuse, even the
    // right password, as one node would have after two failures.
    assert_eq!(
        post(&a, "/api/login", None, password("wrong one")).await.0,
        401
    );
    assert_eq!(
        post(&b, "/api/login", None, password("wrong two")).await.0,
        401
    );
    for node in [&a, &b] {
        let (status, body) = post(node, "/api/login", None, password("correct horse")).await;
        assert_eq!(status, 429, "{body}");
    }

    // Two connections at most, wherever they are.
    let on_a = Client::reconnect(&a.ws_url(), &token).await;
    let on_b = Client::reconnect(&b.ws_url(), &token).await;
    for node in [&a, &b] {
        assert_eq!(
            refused_status(format!("{}?token={token}", node.ws_url())).await,
            429
        );
    }
    // Closing one on B frees a place on A.
    drop(on_b);
    let url = format!("{}?token={token}", a.ws_url());
    eventually("a place is free again", || {
        let url = url.clone();
        async move { tokio_tungstenite::connect_async(url).await.is_ok() }
    })
    .await;
    drop(on_a);
}

#[tokio::test]
async fn a_dead_node_s_connection_leases_expire() {
    let redis = RedisServer::start().await;
    let metrics = std::sync::Arc::new(server::metrics::Metrics::default());
    let node = server::broker::Broker::connect(&redis.url(), metrics)
        .await
        .expect("broker");
    let ann = shared::UserName::new("ann").expect("name");
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));
    assert!(node.lease(&ann, 1, 2, short).await.expect("lease"));
    assert!(node.lease(&ann, 2, 2, long).await.expect("lease"));
    assert!(
        !node.lease(&ann, 3, 2, long).await.expect("lease"),
        "two at most"
    );
    assert!(
        node.lease(&ann, 2, 2, long).await.expect("lease"),
        "a lease already held is renewed"
    );
    // Connection 1's node stops renewing (it died): its place frees itself.
    let node = &node;
    eventually("the unrenewed lease expired", || {
        let ann = ann.clone();
        async move { node.lease(&ann, 3, 2, long).await.expect("lease") }
    })
    .await;
    node.renew_leases(&[(ann.clone(), 1)], long)
        .await
        .expect("renew");
    assert!(
        !node.lease(&ann, 4, 2, long).await.expect("lease"),
        "renewing counts again"
    );
    node.release(&ann, 1).await.expect("release");
    node.release(&ann, 3).await.expect("release");
    assert!(node.lease(&ann, 4, 2, long).await.expect("lease"));
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_stream_loses_no_acked_chat_and_drops_no_client() {
    let redis = RedisServer::start().await;
    let a = TestServer::node_on(&redis, |_| {}).await;
    let b = TestServer::node_on(&redis, |_| {}).await;
    let mut sender = Client::connect(&a.ws_url()).await;
    let mut reader = Client::connect(&b.ws_url()).await;
    join(&mut reader, "r", Some(0)).await;

    // Like the web client's outbox: send, and send again whatever was refused, until all are acked.
    const TOTAL: usize = 60;
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused = 0;
    let mut next = 0;
    let mut pending: Vec<String> = Vec::new();
    let mut killed = false;
    let mut restarted = false;
    while acked.len() < TOTAL {
        if next < TOTAL && pending.len() < 5 {
            let id = format!("m{next}");
            sender.chat("r", &id, &format!("text of {id}")).await;
            pending.push(id);
            next += 1;
            continue;
        }
        if next >= TOTAL / 3 && !killed {
            redis.kill();
            killed = true;
            eventually("both nodes say not ready", || async {
                ready(&a).await == 503 && ready(&b).await == 503
            })
            .await;
        }
        let m = sender.recv().await;
        let id = m["id"].as_str().expect("id").to_owned();
        match m["type"].as_str() {
            Some("ack") => {
                let seq = m["seq"].as_u64().expect("seq");
                assert!(acked.insert(id.clone(), seq).is_none_or(|s| s == seq));
            }
            Some("error") => {
                assert_eq!(m["code"], "unavailable", "{m}");
                refused += 1;
                if !restarted && refused >= 3 {
                    redis.start_again().await;
                    restarted = true;
                }
                // Resent after a moment, as the outbox does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                sender.chat("r", &id, &format!("text of {id}")).await;
                continue;
            }
            _ => panic!("unexpected {m}"),
        }
        pending.retain(|p| p != &id);
    }
    assert!(
        killed && restarted && refused >= 3,
        "the outage was real: {refused} refused"
    );
    eventually("both nodes ready again", || async {
        ready(&a).await == 200 && ready(&b).await == 200
    })
    .await;

    let seqs: Vec<u64> = acked
        .values()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        seqs,
        (1..=TOTAL as u64).collect::<Vec<_>>(),
        "every chat stored once, no gap"
    );

    // The reader on B was never disconnected and saw every message once, in order, including what was
    // published while its subscription was down.
    let live: Vec<u64> = read_chats(&mut reader, TOTAL)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(live, seqs);
    reader.send(json!({"type": "ping"})).await;
    reader.expect("pong").await;
    sender.send(json!({"type": "ping"})).await;
    sender.expect("pong").await;

    // Restarted from its AOF a second time: still everything.
    redis.kill();
    redis.start_again().await;
    let mut later = Client::connect(&b.ws_url()).await;
    let history = tokio::time::timeout(WAIT, async {
        loop {
            later
                .send(json!({"type": "join", "room": "r", "since": 0}))
                .await;
            let first = later.recv().await;
            if first["type"] == "error" {
                assert_eq!(first["code"], "unavailable");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let mut frames = vec![first];
            while frames.last().expect("frame")["type"] != "joined" {
                frames.push(later.recv().await);
            }
            return frames;
        }
    })
    .await
    .expect("history readable after the restart");
    let stored: BTreeMap<String, u64> = history
        .iter()
        .filter(|m| m["type"] == "chat")
        .map(|m| {
            (
                m["id"].as_str().expect("id").to_owned(),
                m["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(stored, acked, "every acked chat, with its acked seq");
}

#[tokio::test]
async fn an_embedded_deployment_moves_into_redis_with_everything() {
    let (_keep, dir) = data_dir();
    let embedded = ServerProcess::start(&dir).await;
    let register = |name: &'static str| async move {
        let body = json!({"name": name, "password": "correct horse"}).to_string();
        let (status, _, body) = http(embedded.addr, "POST", "/api/register", &[], &body).await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_str::<Value>(&body).expect("json")["token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    let ann_token = register("ann").await;
    register("bob").await;
    let mut ann = Client::reconnect(&embedded.ws_url(), &ann_token).await;
    ann.send(json!({"type": "create", "room": "team", "private": true}))
        .await;
    ann.expect("created").await;
    ann.expect("joined").await;
    ann.send(json!({"type": "invite", "room": "team", "user": "bob"}))
        .await;
    ann.expect("invited").await;
    let team = send_acked(&mut ann, "team", "t", 2).await;
    let lobby = send_acked(&mut ann, "lobby", "l", 3).await;
    drop(ann);
    assert!(embedded.terminate().await.success());

    let redis = RedisServer::start().await;
    let import = || async {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--redis-url", &redis.url(), "--import-into-redis"])
            .env_clear()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("run the import")
    };
    assert!(import().await.success());
    assert!(
        !import().await.success(),
        "a second import into the same Redis is refused"
    );

    let node = TestServer::node_on(&redis, |_| {}).await;
    // The token issued by the embedded server is still valid: same key, same session.
    let mut ann = Client::reconnect(&node.ws_url(), &ann_token).await;
    assert_eq!(ann.user, "ann");
    let replayed = join(&mut ann, "lobby", Some(0)).await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, lobby, "history kept its seqs");
    ann.chat("lobby", "l-0", "l message 0").await;
    assert_eq!(
        ann.expect("ack").await["seq"],
        lobby[0],
        "a resend is still recognised"
    );
    ann.chat("lobby", "after", "after the move").await;
    assert_eq!(
        ann.expect("ack").await["seq"],
        lobby[2] + 1,
        "the room's head moved too"
    );

    // The private room and its members came along; bob signs in with his password.
    let mut guest = Client::connect(&node.ws_url()).await;
    guest.send(json!({"type": "join", "room": "team"})).await;
    assert_eq!(guest.expect("error").await["code"], "forbidden");
    let body = json!({"name": "bob", "password": "correct horse"}).to_string();
    let (status, _, body) = http(node.addr, "POST", "/api/login", &[], &body).await;
    assert_eq!(status, 200, "{body}");
    let bob_token = serde_json::from_str::<Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut bob = Client::reconnect(&node.ws_url(), &bob_token).await;
    let replayed = join(&mut bob, "team", Some(0)).await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, team);
}

#[tokio::test]
async fn typing_crosses_nodes_once() {
    let redis = RedisServer::start().await;
    let a = TestServer::node_on(&redis, |_| {}).await;
    let b = TestServer::node_on(&redis, |_| {}).await;
    let mut ann = Client::connect(&a.ws_url()).await;
    let mut bob = Client::connect(&b.ws_url()).await;
    let mut cat = Client::connect(&a.ws_url()).await;
    for c in [&mut ann, &mut bob, &mut cat] {
        join(c, "dev", None).await;
    }
    ann.send(json!({"type": "typing", "room": "dev"})).await;
    for (who, c) in [
        ("bob on the other node", &mut bob),
        ("cat on the same node", &mut cat),
    ] {
        let notice = c.expect("typing").await;
        assert_eq!(notice["user"], ann.user.as_str(), "{who}");
        c.expect_silence(QUIET).await; // once, not again through Redis
    }
    ann.expect_silence(QUIET).await;
}

#[tokio::test]
async fn presence_is_the_union_of_every_node_s_users() {
    let redis = RedisServer::start().await;
    let a = TestServer::node_on(&redis, |_| {}).await;
    let b = TestServer::node_on(&redis, |_| {}).await;
    let mut ann = Client::connect(&a.ws_url()).await;
    let mut ann_on_b = Client::reconnect(&b.ws_url(), &ann.token).await;
    let mut bob = Client::connect(&b.ws_url()).await;
    for c in [&mut ann, &mut ann_on_b, &mut bob] {
        join(c, "dev", None).await;
    }
    let mut expected = vec![ann.user.clone(), bob.user.clone()];
    expected.sort();
    for c in [&mut ann, &mut bob] {
        let p = c.wait_presence("dev", |p| p["count"] == 2).await;
        let mut names: Vec<String> = p["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|v| v.as_str().expect("name").to_owned())
            .collect();
        names.sort();
        assert_eq!(names, expected, "ann on two nodes is one");
    }
    bob.send(json!({"type": "leave", "room": "dev"})).await;
    ann.wait_presence("dev", |p| p["count"] == 1).await;
}
