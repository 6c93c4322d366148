//! Browser tests of the connection module against a real chat server.
//!
//! Run with the server's WebSocket URL fixed at compile time:
//! `CHAT_TEST_WS_URL=ws://127.0.0.1:PORT/ws cargo test -p frontend --target wasm32-unknown-unknown`.
//! Without it, every test that needs the server fails (it never passes silently).
#![cfg(target_arch = "wasm32")]

use frontend::connection::{Backoff, ChatState, ConnState, Connection, ConnectionConfig};
use frontend::store::{Delivery, Shown, Store};
use futures::{FutureExt, StreamExt, select};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use shared::{ChatText, RoomId};
use std::time::Duration;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// A port nothing listens on.
const CLOSED_URL: &str = "ws://127.0.0.1:9/ws";

fn server_url() -> &'static str {
    // Deliberately a run-time failure, not `env!`: the crate must still build without a server.
    match option_env!("CHAT_TEST_WS_URL") {
        Some(url) => url,
        None => panic!(
            "CHAT_TEST_WS_URL is not set: build the tests with CHAT_TEST_WS_URL=ws://HOST:PORT/ws of a running server"
        ),
    }
}

/// Small timers; a distinct token key per connection, so each one is a distinct guest.
fn config(url: &str, token_key: &str) -> ConnectionConfig {
    ConnectionConfig {
        token_key: Some(format!("test.{token_key}.{}", unique())),
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
        },
        ping_interval: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(2),
        open_timeout: Duration::from_secs(5),
        stable_after: Duration::from_secs(1),
        ..ConnectionConfig::new(url)
    }
}

fn unique() -> u32 {
    (js_sys::Math::random() * 1e9) as u32
}

fn start(config: ConnectionConfig) -> Connection {
    Connection::start(config, ChatState::new(Store::default()))
}

/// Polls `done` every 20 ms; panics naming `what` after 10 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = js_sys::Date::now();
    while !done() {
        assert!(
            js_sys::Date::now() - start < 10_000.0,
            "timed out waiting for {what}"
        );
        TimeoutFuture::new(20).await;
    }
}

async fn open(connection: &Connection) {
    let state = connection.state();
    wait_until("the connection to open", || {
        state.status.get_untracked() == ConnState::Open
    })
    .await;
    wait_until("the welcome status with a user name", || {
        state.user.get_untracked().is_some()
    })
    .await;
}

fn find(connection: &Connection, text: &str) -> Vec<Shown> {
    let lobby = RoomId::lobby();
    connection.state().store.with_untracked(|s| {
        s.shown(&lobby)
            .into_iter()
            .filter(|m| m.text.as_str() == text)
            .collect()
    })
}

/// The next state, or a panic after 10 s.
async fn next_state(
    states: &mut futures::channel::mpsc::UnboundedReceiver<ConnState>,
) -> ConnState {
    select! {
        s = states.next() => s.expect("the task keeps publishing"),
        () = TimeoutFuture::new(10_000).fuse() => panic!("no state change within 10 s"),
    }
}

#[wasm_bindgen_test]
async fn opens_and_learns_its_user_name() {
    let connection = start(config(server_url(), "welcome"));
    open(&connection).await;
    let user = connection.state().user.get_untracked().expect("user");
    assert!(!user.as_str().is_empty());
    connection.close();
    let state = connection.state();
    wait_until("Closed after close()", || {
        state.status.get_untracked() == ConnState::Closed
    })
    .await;
}

#[wasm_bindgen_test]
async fn chat_goes_pending_then_sent_and_reaches_another_connection() {
    let alice = start(config(server_url(), "alice"));
    let bob = start(config(server_url(), "bob"));
    open(&alice).await;
    open(&bob).await;
    let alice_name = alice.state().user.get_untracked();
    assert_ne!(
        alice_name,
        bob.state().user.get_untracked(),
        "two tokens, two guests"
    );

    let text = format!("hello from the browser test {}", unique());
    alice.send(RoomId::lobby(), ChatText::new(text.clone()).expect("valid"));
    let mine = find(&alice, &text);
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].delivery,
        Delivery::Pending,
        "shown as pending before the ack"
    );
    assert_eq!(mine[0].sender, None, "own message");

    wait_until("the ack (pending -> sent)", || {
        find(&alice, &text).first().map(|m| m.delivery) == Some(Delivery::Sent)
    })
    .await;
    wait_until("the relay to the other connection", || {
        !find(&bob, &text).is_empty()
    })
    .await;
    let theirs = find(&bob, &text);
    assert_eq!(theirs.len(), 1, "shown once");
    assert_eq!(theirs[0].sender, alice_name);
    assert_eq!(theirs[0].delivery, Delivery::Received);
    assert_eq!(find(&alice, &text).len(), 1, "the sender shows it once");
    assert!(
        alice
            .state()
            .store
            .with_untracked(|s| s.outbox().is_empty())
    );
    alice.close();
    bob.close();
}

#[wasm_bindgen_test]
async fn message_ids_start_with_the_time_so_later_ones_sort_after() {
    let offline = start(config(CLOSED_URL, "ids"));
    let before = js_sys::Date::now();
    offline.send(RoomId::lobby(), ChatText::new("first").expect("valid"));
    let after = js_sys::Date::now();
    wait_until("the clock to move on", || js_sys::Date::now() > after).await;
    offline.send(RoomId::lobby(), ChatText::new("second").expect("valid"));
    let ids: Vec<String> = offline.state().store.with_untracked(|s| {
        s.outbox()
            .iter()
            .map(|m| m.id.as_str().to_owned())
            .collect()
    });
    offline.close();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0] < ids[1], "a later id sorts after: {ids:?}");
    let ms = u64::from_str_radix(&ids[0][..12], 16).expect("12 hex digits of time") as f64;
    assert!(
        (before..=after).contains(&ms),
        "{ms} is when it was sent ({before} to {after})"
    );
}

#[wasm_bindgen_test]
async fn message_typed_while_offline_is_sent_after_connecting() {
    let offline = start(config(CLOSED_URL, "offline"));
    let text = format!("typed while offline {}", unique());
    offline.send(RoomId::lobby(), ChatText::new(text.clone()).expect("valid"));
    assert_eq!(find(&offline, &text)[0].delivery, Delivery::Pending);
    offline.close();

    // The same outbox (as after a reload) on a connection that reaches the server.
    let store = offline.state().store.get_untracked();
    let online = Connection::start(config(server_url(), "offline2"), ChatState::new(store));
    open(&online).await;
    wait_until("the outbox to be flushed and acked", || {
        find(&online, &text).first().map(|m| m.delivery) == Some(Delivery::Sent)
    })
    .await;
    online.close();
}

#[wasm_bindgen_test]
async fn unreachable_server_backs_off_with_growing_attempts() {
    let config = config(CLOSED_URL, "closed");
    let backoff = config.backoff;
    let connection = start(config);
    let mut states = connection.watch();
    let mut seen = Vec::new();
    while !matches!(
        seen.last(),
        Some((ConnState::Reconnecting { attempt: 3, .. }, _))
    ) {
        seen.push((next_state(&mut states).await, js_sys::Date::now()));
        assert!(seen.len() <= 6, "unexpected states: {seen:?}");
    }
    connection.close();

    let kinds: Vec<_> = seen
        .iter()
        .map(|(s, _)| s.to_string().to_lowercase())
        .collect();
    for (i, kind) in kinds.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "connecting".to_owned()
        } else {
            format!("reconnecting (attempt {}", i / 2 + 1)
        };
        assert!(
            kind.starts_with(&expected),
            "state {i} is {kind:?}, expected {expected:?}: {kinds:?}"
        );
    }
    for (i, pair) in seen.windows(2).enumerate().filter(|(i, _)| i % 2 == 1) {
        let [
            (ConnState::Reconnecting { attempt, delay_ms }, at),
            (ConnState::Connecting, next),
        ] = pair
        else {
            panic!("state {i}: expected Reconnecting then Connecting, got {pair:?}");
        };
        let ceiling = backoff.ceiling(attempt - 1).as_millis() as u32;
        assert!(
            *delay_ms <= ceiling,
            "attempt {attempt}: delay {delay_ms} ms > ceiling {ceiling} ms"
        );
        let waited = next - at;
        assert!(
            waited + 2.0 >= f64::from(*delay_ms),
            "attempt {attempt}: retried after {waited} ms, before its {delay_ms} ms delay"
        );
    }
}

#[wasm_bindgen_test]
async fn online_event_reconnects_at_once() {
    let mut config = config(CLOSED_URL, "online");
    config.backoff = Backoff {
        base: Duration::from_secs(600),
        cap: Duration::from_secs(600),
    };
    let connection = start(config);
    let mut states = connection.watch();
    assert_eq!(next_state(&mut states).await, ConnState::Connecting);
    let ConnState::Reconnecting { delay_ms, .. } = next_state(&mut states).await else {
        panic!("expected Reconnecting");
    };
    let at = js_sys::Date::now();
    let online = web_sys::Event::new("online").expect("event");
    web_sys::window()
        .expect("window")
        .dispatch_event(&online)
        .expect("dispatch");
    assert_eq!(next_state(&mut states).await, ConnState::Connecting);
    let waited = js_sys::Date::now() - at;
    assert!(
        waited < 1000.0 || f64::from(delay_ms) < 1000.0,
        "waited {waited} ms for a {delay_ms} ms delay despite `online`"
    );
    connection.close();
}

#[wasm_bindgen_test]
async fn rate_limited_messages_stay_pending_and_are_resent() {
    // More than the server's default burst (20) at once: some are refused with `rate_limited`.
    let connection = start(config(server_url(), "flood"));
    open(&connection).await;
    let tag = unique();
    let texts: Vec<_> = (0..30).map(|i| format!("flood {tag} {i}")).collect();
    for text in &texts {
        connection.send(RoomId::lobby(), ChatText::new(text.clone()).expect("valid"));
    }
    wait_until("every message to be acknowledged", || {
        texts
            .iter()
            .all(|t| find(&connection, t).first().map(|m| m.delivery) == Some(Delivery::Sent))
    })
    .await;
    let failed = connection.state().store.with_untracked(|s| {
        s.shown(&RoomId::lobby())
            .into_iter()
            .filter(|m| m.delivery == Delivery::Failed)
            .count()
    });
    assert_eq!(failed, 0, "a rate-limited message is never marked failed");
    assert!(
        connection.state().notice.get_untracked().is_some(),
        "the server did refuse some (the test floods past its burst)"
    );
    connection.close();
}

#[wasm_bindgen_test]
async fn a_message_too_big_for_the_server_fails_at_once() {
    let connection = start(config(CLOSED_URL, "big"));
    let text = "x".repeat(shared::DEFAULT_MAX_MESSAGE_BYTES);
    connection.send(RoomId::lobby(), ChatText::new(text.clone()).expect("valid"));
    let shown = find(&connection, &text);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].delivery, Delivery::Failed);
    assert!(
        connection
            .state()
            .store
            .with_untracked(|s| s.outbox().is_empty()),
        "never queued"
    );
    connection.close();
}

/// The JSON reader (`frontend::json`, our serde deserializer over `JSON.parse`'s value) on every shape
/// the protocol and the saved store use, and on what they must refuse.
#[wasm_bindgen_test]
fn the_json_reader_takes_every_shape_of_the_protocol_and_refuses_wrong_ones() {
    use frontend::json::{ReadError, from_str};
    use shared::{ErrorCode, ServerMessage};
    // Options present, null and absent; unknown fields skipped (a newer server's); an unknown error code
    // read as `Other`; a number as big as JavaScript holds exactly.
    let read: ServerMessage = from_str(
        r#"{"type":"error","code":"brand_new","message":"m","id":null,"future":{"x":[1,2.5]},"retry_after_ms":9007199254740991}"#,
    )
    .expect("an error frame");
    assert_eq!(
        read,
        ServerMessage::Error {
            code: ErrorCode::Other,
            message: "m".into(),
            id: None,
            room: None,
            retry_after_ms: Some(9_007_199_254_740_991),
        }
    );
    // A list of objects, booleans, and a nested list of names.
    let read: ServerMessage = from_str(
        r#"{"type":"rooms","rooms":[{"room":"dev","last_read":2,"head":5,"private":true}]}"#,
    )
    .expect("a rooms frame");
    assert!(
        matches!(&read, ServerMessage::Rooms { rooms } if rooms.len() == 1 && rooms[0].private && rooms[0].head == 5),
        "{read:?}"
    );
    let read: ServerMessage =
        from_str(r#"{"type":"presence","room":"dev","count":2,"users":["ann","bob"]}"#)
            .expect("a presence frame");
    assert!(
        matches!(&read, ServerMessage::Presence { count: 2, users, .. } if users.len() == 2),
        "{read:?}"
    );
    // Refused: a fraction, a negative number or a string where a count goes, a bad name, a missing
    // field, a value that is not an object.
    for bad in [
        r#"{"type":"joined","room":"dev","head":1.5}"#,
        r#"{"type":"joined","room":"dev","head":-1}"#,
        r#"{"type":"joined","room":"dev","head":"7"}"#,
        r#"{"type":"joined","room":"no spaces","head":1}"#,
        r#"{"type":"joined","room":"dev"}"#,
        r#"["joined"]"#,
        r#""joined""#,
        "null",
    ] {
        assert!(
            matches!(from_str::<ServerMessage>(bad), Err(ReadError::Shape(_))),
            "{bad}"
        );
    }
    // The saved store: a map keyed by room, defaults for what an older version did not save.
    let store: Store =
        from_str(r#"{"rooms":{"dev":{"last_seq":4}},"outbox":[]}"#).expect("a saved store");
    assert_eq!(store.since(&RoomId::new("dev").expect("room")), Some(4));
}

#[wasm_bindgen_test]
fn json_is_read_through_the_browser_and_bad_storage_is_kept_aside() {
    let frame = r#"{"type":"history","room":"dev","before":3,"messages":[{"seq":2,"sender":"ann","text":"hi","timestamp":"2026-11-25T10:40:31.123Z"}],"more":true}"#;
    let read: shared::ServerMessage = frontend::json::from_str(frame).expect("a history frame");
    assert!(
        matches!(&read, shared::ServerMessage::History { messages, more: true, .. } if messages.len() == 1 && messages[0].seq == 2),
        "{read:?}"
    );
    assert!(matches!(
        frontend::json::from_str::<shared::ServerMessage>("{not json"),
        Err(frontend::json::ReadError::Syntax(_))
    ));
    assert!(matches!(
        frontend::json::from_str::<shared::ServerMessage>(r#"{"type":"chat","seq":-1}"#),
        Err(frontend::json::ReadError::Shape(_))
    ));

    let key = format!("test.corrupt.{}", unique());
    let storage = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .expect("localStorage");
    storage.set_item(&key, "{not json").expect("write");
    assert_eq!(frontend::storage::load::<Store>(&key), None);
    assert_eq!(
        storage
            .get_item(&format!("{key}.unreadable"))
            .expect("read")
            .as_deref(),
        Some("{not json"),
        "the unreadable text is kept for the user"
    );
}
