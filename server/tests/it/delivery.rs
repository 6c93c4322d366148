//! Rooms, ordered history, recovery with `since`, idempotent sends, slow consumers.

use crate::common::{Client, Mode, TestServer, in_both_modes, send_acked};
use serde_json::{Value, json};
use std::time::Duration;

in_both_modes!(
    a_client_that_missed_100_messages_gets_exactly_those_in_order,
    concurrent_senders_and_a_joiner_in_the_middle_see_one_gap_free_order,
    the_same_id_is_stored_once_and_acked_again_after_reconnect,
    leave_stops_delivery_and_rooms_are_separate,
    since_older_than_retention_says_so_and_sends_what_is_kept,
    a_client_ahead_of_the_server_gets_everything_after_the_head,
    a_slow_reader_is_disconnected_with_1013_and_recovers_everything,
    a_join_without_since_replays_the_newest_page_whether_or_not_the_room_is_followed_here,
    a_replay_from_the_node_s_memory_is_the_one_history_gives,
    history_pages_lead_back_to_the_first_message,
    typing_reaches_the_room_s_other_users_once_a_second_and_is_never_stored,
    presence_counts_each_user_once_and_follows_arrivals_and_departures,
);

const QUIET: Duration = Duration::from_millis(300);

async fn join(client: &mut Client, room: &str, since: Option<u64>) {
    let mut frame = json!({"type": "join", "room": room});
    if let Some(s) = since {
        frame["since"] = s.into();
    }
    client.send(frame).await;
}

/// Reads chat frames of `room` up to and including the `joined` frame; returns their seqs.
async fn replay(client: &mut Client, room: &str) -> (Vec<u64>, Value) {
    let (frames, joined) = replay_frames(client, room).await;
    let seqs = frames.iter().map(|m| m["seq"].as_u64().expect("seq"));
    (seqs.collect(), joined)
}

/// Reads chat frames of `room` up to and including the `joined` frame; returns them.
async fn replay_frames(client: &mut Client, room: &str) -> (Vec<Value>, Value) {
    let mut frames = Vec::new();
    loop {
        let m = client.recv().await;
        match m["type"].as_str() {
            Some("chat") => {
                assert_eq!(m["room"], room);
                frames.push(m);
            }
            Some("joined") => return (frames, m),
            _ => panic!("unexpected frame during replay: {m}"),
        }
    }
}

async fn a_client_that_missed_100_messages_gets_exactly_those_in_order(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    join(&mut a, "r", None).await;
    a.expect("joined").await;
    join(&mut b, "r", Some(0)).await;
    assert_eq!(replay(&mut b, "r").await.1["head"], 0);

    let first = send_acked(&mut a, "r", "early", 5).await;
    assert_eq!(first, vec![1, 2, 3, 4, 5]);
    for seq in 1..=5 {
        assert_eq!(b.expect("chat").await["seq"], seq);
    }
    let token = b.token.clone();
    drop(b);

    let missed = send_acked(&mut a, "r", "missed", 100).await;
    assert_eq!(missed, (6..=105).collect::<Vec<_>>());

    let mut b = Client::reconnect(&url, &token).await;
    join(&mut b, "r", Some(5)).await;
    let mut texts = Vec::new();
    for seq in 6..=105u64 {
        let m = b.expect("chat").await;
        assert_eq!(m["seq"], seq);
        texts.push(m["text"].as_str().expect("text").to_owned());
    }
    assert_eq!(
        texts,
        (0..100)
            .map(|i| format!("missed message {i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(b.expect("joined").await["head"], 105);
    b.expect_silence(QUIET).await;

    a.chat("r", "live-0", "live").await;
    a.expect("ack").await;
    assert_eq!(
        b.expect("chat").await["seq"],
        106,
        "live follows the replay with no gap"
    );
}

async fn concurrent_senders_and_a_joiner_in_the_middle_see_one_gap_free_order(mode: Mode) {
    const SENDERS: usize = 3;
    const EACH: usize = 150;
    const TOTAL: u64 = (SENDERS * EACH) as u64;
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut watcher = Client::connect(&url).await;
    join(&mut watcher, "busy", Some(0)).await;
    watcher.expect("joined").await;
    // Senders pause half way (first barrier) until the joiner's join is on the wire (second barrier).
    let halfway = std::sync::Arc::new(tokio::sync::Barrier::new(SENDERS + 1));
    let resume = std::sync::Arc::new(tokio::sync::Barrier::new(SENDERS + 1));
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (url, halfway, resume) = (url.clone(), halfway.clone(), resume.clone());
        senders.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            for i in 0..EACH {
                if i == EACH / 2 {
                    halfway.wait().await;
                    resume.wait().await;
                }
                c.chat("busy", &format!("s{s}-{i}"), &format!("from {s}"))
                    .await;
            }
            let mut acked = Vec::new();
            for _ in 0..EACH {
                let ack = c.expect("ack").await;
                acked.push((
                    ack["id"].as_str().expect("id").to_owned(),
                    ack["seq"].as_u64().expect("seq"),
                ));
            }
            acked
        }));
    }
    halfway.wait().await;
    let mut joiner = Client::connect(&url).await;
    join(&mut joiner, "busy", Some(0)).await;
    resume.wait().await;

    let mut acks = std::collections::HashMap::new();
    for sender in senders {
        for (id, seq) in sender.await.expect("sender") {
            assert!(acks.insert(seq, id).is_none(), "seq {seq} acked twice");
        }
    }
    let mut sequences = Vec::new();
    for (who, client) in [("watcher", &mut watcher), ("joiner", &mut joiner)] {
        let mut seen = Vec::new();
        let mut joined = false;
        while seen.len() < TOTAL as usize || (who == "joiner" && !joined) {
            let m = client.recv().await;
            match m["type"].as_str() {
                Some("chat") => {
                    let seq = m["seq"].as_u64().expect("seq");
                    assert_eq!(
                        acks.get(&seq).map(String::as_str),
                        m["id"].as_str(),
                        "{who}: seq {seq} is the message acked with it"
                    );
                    seen.push(seq);
                }
                Some("joined") => joined = true,
                _ => panic!("{who}: unexpected {m}"),
            }
        }
        client.expect_silence(QUIET).await;
        sequences.push(seen);
    }
    let all: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(
        sequences[0], all,
        "the watcher sees every seq once, in order"
    );
    assert_eq!(
        sequences[1], all,
        "so does the joiner, across replay and live"
    );
    assert_eq!(
        acks.len(),
        TOTAL as usize,
        "and every seq was acked to its sender"
    );
}

async fn the_same_id_is_stored_once_and_acked_again_after_reconnect(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.chat("lobby", "k1", "only once").await;
    let ack = a.expect("ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "id": "k1", "room": "lobby", "seq": 1})
    );
    let relayed = b.expect("chat").await;
    assert_eq!(relayed["id"], "k1");

    a.chat("lobby", "k1", "only once").await; // a retry on the same connection
    assert_eq!(a.expect("ack").await["seq"], 1);
    let token = a.token.clone();
    drop(a);
    let mut a = Client::reconnect(&url, &token).await;
    a.chat("lobby", "k1", "only once").await; // and after a reconnect
    assert_eq!(a.expect("ack").await["seq"], 1);
    b.expect_silence(QUIET).await;

    // Ids are per user: someone else's k1 is a different message.
    b.chat("lobby", "k1", "mine").await;
    assert_eq!(b.expect("ack").await["seq"], 2);
    assert_eq!(a.expect("chat").await["text"], "mine");
}

async fn leave_stops_delivery_and_rooms_are_separate(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    join(&mut b, "dev", None).await;
    assert_eq!(
        b.expect("joined").await,
        json!({"type": "joined", "room": "dev", "head": 0})
    );
    a.chat("dev", "d1", "to dev").await;
    a.expect("ack").await;
    let m = b.expect("chat").await;
    assert_eq!(
        (m["room"].as_str(), m["seq"].as_u64()),
        (Some("dev"), Some(1))
    );
    a.chat("lobby", "l1", "to lobby").await;
    assert_eq!(a.expect("ack").await["seq"], 1, "seq counts per room");
    assert_eq!(b.expect("chat").await["room"], "lobby");

    b.send(json!({"type": "leave", "room": "dev"})).await;
    assert_eq!(b.expect("left").await["room"], "dev");
    a.chat("dev", "d2", "gone").await;
    a.expect("ack").await;
    b.expect_silence(QUIET).await;
}

async fn since_older_than_retention_says_so_and_sends_what_is_kept(mode: Mode) {
    let server = TestServer::start_in_with(mode, |c| c.retention_count = 3).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    send_acked(&mut a, "r", "m", 10).await;
    // Retention runs before a server serves and then every minute; a restart applies it now.
    let server = server.restart_with(|c| c.retention_count = 3).await;
    let mut b = Client::connect(&server.ws_url()).await;
    join(&mut b, "r", Some(2)).await;
    let notice = b.expect("error").await;
    assert_eq!(notice["code"], "history_truncated");
    assert_eq!(notice["room"], "r");
    let (seqs, joined) = replay(&mut b, "r").await;
    assert_eq!(seqs, vec![8, 9, 10]);
    assert_eq!(joined["head"], 10);

    // Asking for what is still kept is not an error.
    join(&mut b, "r", Some(8)).await;
    assert_eq!(replay(&mut b, "r").await.0, vec![9, 10]);
}

async fn a_client_ahead_of_the_server_gets_everything_after_the_head(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    join(&mut b, "r", Some(50)).await; // remembers history this server never had
    assert_eq!(replay(&mut b, "r").await.1["head"], 0);
    a.chat("r", "x", "new").await;
    a.expect("ack").await;
    assert_eq!(b.expect("chat").await["seq"], 1);
}

async fn a_slow_reader_is_disconnected_with_1013_and_recovers_everything(mode: Mode) {
    let server = TestServer::start_in_with(mode, |c| c.queue_bytes = 64 * 1024).await;
    let url = server.ws_url();
    let mut a = Client::connect(&url).await;
    let slow = Client::connect(&url).await; // never reads until the end
    let text = "y".repeat(4000);
    const N: usize = 3000; // ~12 MB: more than loopback socket buffers plus the queue can hold
    for i in 0..N {
        a.chat("lobby", &format!("s{i}"), &text).await;
    }
    for _ in 0..N {
        a.expect("ack").await;
    }
    let mut slow = slow;
    assert_eq!(slow.closed().await, Some(1013));

    let mut again = Client::reconnect(&url, &slow.token).await;
    join(&mut again, "lobby", Some(0)).await;
    let (seqs, _) = replay(&mut again, "lobby").await;
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "nothing lost");
}

async fn a_join_without_since_replays_the_newest_page_whether_or_not_the_room_is_followed_here(
    mode: Mode,
) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let page = shared::JOIN_PAGE as u64;
    // Nobody here follows "quiet": its newest page is read from history.
    let mut writer = Client::connect(&url).await;
    send_acked(&mut writer, "quiet", "w", shared::JOIN_PAGE + 10).await;
    let mut late = Client::connect(&url).await;
    join(&mut late, "quiet", None).await;
    let (seqs, joined) = replay(&mut late, "quiet").await;
    assert_eq!(
        seqs,
        (11..=page + 10).collect::<Vec<_>>(),
        "the newest page"
    );
    assert_eq!(joined["head"], page + 10);

    // "busy" has a member here; a joiner gets its history and then live messages, each once.
    let mut member = Client::connect(&url).await;
    join(&mut member, "busy", None).await;
    member.expect("joined").await;
    send_acked(&mut writer, "busy", "w", 4).await;
    let mut joiner = Client::connect(&url).await;
    join(&mut joiner, "busy", None).await;
    let (seqs, joined) = replay(&mut joiner, "busy").await;
    assert_eq!((seqs, &joined["head"]), (vec![1, 2, 3, 4], &4.into()));
    send_acked(&mut writer, "busy", "next", 1).await;
    let next = joiner.expect("chat").await;
    assert_eq!(
        (&next["seq"], &next["text"]),
        (&5.into(), &"next message 0".into())
    );
    joiner.expect_silence(QUIET).await;

    // A followed room without messages needs no read and replays nothing.
    let mut follower = Client::connect(&url).await;
    join(&mut follower, "empty", None).await;
    follower.expect("joined").await;
    join(&mut joiner, "empty", None).await;
    assert_eq!(replay(&mut joiner, "empty").await.0, Vec::<u64>::new());
}

/// The node keeps a room's newest frames in memory while it follows the room, and replays from there
/// what they cover: the same frames, in the same order, as a replay read from history (an older
/// `since`, or after a restart).
async fn a_replay_from_the_node_s_memory_is_the_one_history_gives(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut member = Client::connect(&url).await;
    join(&mut member, "r", None).await;
    member.expect("joined").await;
    let count = 300; // more than the node keeps per room (256)
    send_acked(&mut member, "r", "m", count).await;
    let mut from_memory = Client::connect(&url).await;
    join(&mut from_memory, "r", Some(290)).await;
    let (recent, joined) = replay_frames(&mut from_memory, "r").await;
    assert_eq!(joined["head"], 300);
    let seqs: Vec<u64> = recent
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (291..=300).collect::<Vec<_>>());
    let mut from_history = Client::connect(&url).await;
    join(&mut from_history, "r", Some(10)).await;
    let (all, joined) = replay_frames(&mut from_history, "r").await;
    assert_eq!(joined["head"], 300);
    assert_eq!(all.len(), 290, "11 to 300, past what memory holds");
    assert_eq!(all[280..], recent[..], "the same frames");
    // The newest page, from memory while followed, and from history after a restart.
    join(&mut from_history, "r", None).await;
    let (newest, _) = replay_frames(&mut from_history, "r").await;
    assert_eq!(newest[..], all[290 - shared::JOIN_PAGE..]);
    let server = server.restart_with(|_| {}).await;
    let mut after_restart = Client::connect(&server.ws_url()).await;
    join(&mut after_restart, "r", Some(290)).await;
    assert_eq!(replay_frames(&mut after_restart, "r").await.0, recent);
    join(&mut after_restart, "r", None).await;
    assert_eq!(replay_frames(&mut after_restart, "r").await.0, newest);
}

/// Sends `history` for `room` before `before`; returns the page's seqs (checking each text) and `more`.
async fn history_page(client: &mut Client, room: &str, before: u64) -> (Vec<u64>, bool) {
    client
        .send(json!({"type": "history", "room": room, "before": before}))
        .await;
    let page = client.expect("history").await;
    assert_eq!(
        (&page["room"], &page["before"]),
        (&room.into(), &before.into())
    );
    let entries = page["messages"].as_array().expect("messages");
    let seqs = entries
        .iter()
        .map(|m| {
            let seq = m["seq"].as_u64().expect("seq");
            assert_eq!(m["text"], format!("w message {}", seq - 1), "{m}");
            seq
        })
        .collect();
    (seqs, page["more"] == true)
}

async fn history_pages_lead_back_to_the_first_message(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut writer = Client::connect(&url).await;
    send_acked(&mut writer, "long", "w", 120).await;
    let mut reader = Client::connect(&url).await;
    join(&mut reader, "long", None).await;
    let (newest, _) = replay(&mut reader, "long").await;
    assert_eq!(newest, (71..=120).collect::<Vec<_>>());
    assert_eq!(
        history_page(&mut reader, "long", 71).await,
        ((21..=70).collect(), true)
    );
    assert_eq!(
        history_page(&mut reader, "long", 21).await,
        ((1..=20).collect(), false)
    );
    assert_eq!(history_page(&mut reader, "long", 1).await, (vec![], false));
    // A page is never live: new messages still come once, as chats.
    send_acked(&mut writer, "long", "x", 1).await;
    assert_eq!(reader.expect("chat").await["seq"], 121);
    reader.expect_silence(QUIET).await;
}

async fn typing_reaches_the_room_s_other_users_once_a_second_and_is_never_stored(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut ann = Client::connect(&url).await;
    let mut ann_again = Client::reconnect(&url, &ann.token).await; // the same user, another tab
    let mut bob = Client::connect(&url).await;
    let mut outsider = Client::connect(&url).await;
    for c in [&mut ann, &mut ann_again, &mut bob] {
        join(c, "dev", None).await;
        c.expect("joined").await;
    }
    ann.send(json!({"type": "typing", "room": "dev"})).await;
    assert_eq!(
        bob.expect("typing").await,
        json!({"type": "typing", "room": "dev", "user": ann.user, "expires_ms": 5000})
    );
    // Again within the second: dropped. Not joined: dropped. Nobody else hears anything.
    ann.send(json!({"type": "typing", "room": "dev"})).await;
    outsider
        .send(json!({"type": "typing", "room": "dev"}))
        .await;
    bob.expect_silence(QUIET).await;
    ann_again.expect_silence(QUIET).await;
    outsider.expect_silence(QUIET).await;
    // A notice passes again once the second is over (polled: typing on until bob hears it).
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    loop {
        ann.send(json!({"type": "typing", "room": "dev"})).await;
        if let Some(frame) = bob.recv_within(Duration::from_millis(100)).await {
            assert_eq!(frame["type"], "typing", "{frame}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no later notice passed"
        );
    }
    // Nothing of it is in the history.
    let mut late = Client::connect(&url).await;
    join(&mut late, "dev", Some(0)).await;
    let (seqs, joined) = replay(&mut late, "dev").await;
    assert_eq!((seqs, &joined["head"]), (vec![], &0.into()), "never stored");
}

/// The names in a presence frame.
fn names(presence: &Value) -> Vec<&str> {
    presence["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u.as_str().expect("name"))
        .collect()
}

async fn presence_counts_each_user_once_and_follows_arrivals_and_departures(mode: Mode) {
    let server = TestServer::start_in(mode).await;
    let url = server.ws_url();
    let mut ann = Client::connect(&url).await;
    join(&mut ann, "dev", None).await;
    ann.expect("joined").await;
    let first = ann.wait_presence("dev", |_| true).await;
    assert_eq!(
        (&first["count"], names(&first)),
        (&1.into(), vec![ann.user.as_str()])
    );

    // A second tab of ann's is still one user; bob makes two, and everyone hears of him.
    let mut ann_again = Client::reconnect(&url, &ann.token).await;
    join(&mut ann_again, "dev", None).await;
    ann_again.expect("joined").await;
    ann_again.wait_presence("dev", |p| p["count"] == 1).await;
    let mut bob = Client::connect(&url).await;
    join(&mut bob, "dev", None).await;
    bob.expect("joined").await;
    bob.wait_presence("dev", |p| p["count"] == 2).await;
    let both = ann.wait_presence("dev", |p| p["count"] == 2).await;
    let mut want = vec![ann.user.as_str(), bob.user.as_str()];
    want.sort_unstable();
    assert_eq!(names(&both), want, "each once, in alphabetical order");

    // Bob leaves: back to one. A connection that never joined (the article's page) hears none of it.
    let mut lobby_only = Client::connect(&url).await;
    bob.send(json!({"type": "leave", "room": "dev"})).await;
    bob.expect("left").await;
    ann.wait_presence("dev", |p| p["count"] == 1).await;
    drop(ann_again);
    lobby_only.expect_silence(QUIET).await;
    assert!(lobby_only.presence.is_empty(), "{:?}", lobby_only.presence);

    // A crowd is counted, and named only up to the limit.
    let mut crowd = Vec::new();
    for _ in 0..shared::PRESENCE_NAMES + 5 {
        let mut c = Client::connect(&url).await;
        join(&mut c, "big", None).await;
        crowd.push(c);
    }
    let total = shared::PRESENCE_NAMES + 5;
    let last = crowd.last_mut().expect("crowd");
    let seen = last.wait_presence("big", |p| p["count"] == total).await;
    assert_eq!(names(&seen).len(), shared::PRESENCE_NAMES);
}
