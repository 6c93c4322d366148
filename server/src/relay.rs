//! The relay: the one writer of room history on this node, and the publisher of what it writes.
//!
//! Connections submit [`AppendRequest`]s into a bounded queue. The relay task takes every request waiting
//! (up to [`MAX_BATCH`]; it first lets the connections already woken run, for as long as they queue more
//! and at most a few rounds, so that a burst of chats from many senders shares a commit instead of the
//! first going alone), stores them with one [`History::append_batch`] call (one commit, or one Redis
//! pipeline), and only then, in `seq` order, hands each new message to the [`Sequencer`] and
//! acknowledges it to its sender. So:
//! - an `ack` always means "durably stored", and never overtakes an earlier message of its room;
//! - every room's messages are published in `seq` order with no gaps: in the embedded mode one task
//!   assigns and publishes them; in the Redis mode the store publishes them itself, in `seq` order
//!   ([`History::broadcasts`]), and the [`crate::broker::subscriber`] delivers them;
//! - a duplicate (same sender, room and client id) is acknowledged again with its original `seq` and not
//!   published again;
//! - a message to a private room from a non-member (checked in the same transaction) is refused with
//!   `forbidden`;
//! - when the store fails, every message of the batch gets `unavailable` with its id: nothing is
//!   published, nothing acknowledged, and the client's outbox sends it again.
//!
//! With `--commit-interval`, a request that comes sooner than that after the last commit started waits
//! for the rest of the interval, and whatever queues meanwhile joins its commit (a full batch never
//! waits; an idle relay never sleeps): fewer, larger commits for a little latency.
//!
//! The queue holds senders' [`Mailbox`]es, not oneshot channels: acks reach the sender through the same
//! ordered queue as everything else, and a sender never waits for its own commit before reading its next
//! frame. The task ends when every [`RelayHandle`] is dropped, after storing what was already queued.

use crate::now;
use crate::{
    history::{Appended, History, NewMessage, Retention},
    mailbox::{Mailbox, Outbound, Published},
    metrics::Metrics,
    sequencer::Sequencer,
};
use shared::{ErrorCode, ServerMessage};
use std::{sync::Arc, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle};

/// Most requests stored in one commit.
pub const MAX_BATCH: usize = 512;
/// Requests that may wait for the relay before submitters wait too.
const QUEUE_CAPACITY: usize = 4096;
/// Most rounds of letting woken connections queue their chats before a commit ([`gather`]). Four took
/// 0.71x the CPU per delivery of one round at 1,000 clients; sixteen were no better than four (0.97x,
/// with a worse p99).
const GATHER_ROUNDS: usize = 4;
/// How often retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A chat message to store and publish.
#[derive(Debug)]
pub struct AppendRequest {
    /// The message.
    pub message: NewMessage,
    /// Where the ack or error goes.
    pub reply: Mailbox,
    /// When its frame arrived (for the accept-to-publish time).
    pub accepted: std::time::Instant,
}

/// Submits messages to the relay. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    tx: mpsc::Sender<AppendRequest>,
}

/// The relay stopped (the node is shutting down); the message was not stored.
#[derive(Debug, thiserror::Error)]
#[error("the relay has stopped")]
pub struct RelayStopped;

impl RelayHandle {
    /// Queues `request`, waiting while the queue is full.
    pub async fn submit(&self, request: AppendRequest) -> Result<(), RelayStopped> {
        self.tx.send(request).await.map_err(|_| RelayStopped)
    }

    /// Requests waiting for the relay.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Starts the relay task; `commit_interval` is the least time between the starts of two commits.
pub fn spawn(
    history: Arc<dyn History>,
    sequencer: Arc<Sequencer>,
    metrics: Arc<Metrics>,
    retention: Retention,
    commit_interval: Duration,
) -> (RelayHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let task = tokio::spawn(run(
        rx,
        history,
        sequencer,
        metrics,
        retention,
        commit_interval,
    ));
    (RelayHandle { tx }, task)
}

async fn run(
    mut rx: mpsc::Receiver<AppendRequest>,
    history: Arc<dyn History>,
    sequencer: Arc<Sequencer>,
    metrics: Arc<Metrics>,
    retention: Retention,
    commit_interval: Duration,
) {
    let mut prune =
        tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // When the next commit may start (`--commit-interval` after the last one started).
    let mut next_commit = tokio::time::Instant::now();
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    break;
                }
                gather(&mut rx, &mut batch).await;
                if batch.len() < MAX_BATCH && next_commit > tokio::time::Instant::now() {
                    // Too soon after the last commit: what queues meanwhile joins this one.
                    tokio::time::sleep_until(next_commit).await;
                    take_waiting(&mut rx, &mut batch);
                }
                next_commit = tokio::time::Instant::now() + commit_interval;
                store_and_publish(std::mem::take(&mut batch), history.as_ref(), &sequencer, &metrics).await;
            }
            _ = prune.tick() => {
                let now = now();
                if let Some(cutoff) = retention.cutoff(now) {
                    sequencer.forget_before(cutoff);
                }
                match history.prune(retention, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "retention applied"),
                    Err(e) => tracing::error!(error = %e, "retention failed"),
                }
            }
        }
    }
    tracing::debug!("relay stopped");
}

/// Lets the connections already woken run before a commit, taking what they queue, for as long as
/// they queue more (at most [`GATHER_ROUNDS`] times): a burst of chats read in the same rounds shares
/// one commit instead of the first going alone, and its recipients get it in one write. Each round is a
/// yield to the runtime, which runs the tasks that are ready and polls the sockets before it comes back.
async fn gather(rx: &mut mpsc::Receiver<AppendRequest>, batch: &mut Vec<AppendRequest>) {
    for _ in 0..GATHER_ROUNDS {
        if batch.len() >= MAX_BATCH {
            return;
        }
        tokio::task::yield_now().await;
        if take_waiting(rx, batch) == 0 {
            return;
        }
    }
}

/// Moves the requests waiting in `rx` into `batch`, up to [`MAX_BATCH`]; returns how many it took.
fn take_waiting(rx: &mut mpsc::Receiver<AppendRequest>, batch: &mut Vec<AppendRequest>) -> usize {
    let before = batch.len();
    while batch.len() < MAX_BATCH
        && let Ok(request) = rx.try_recv()
    {
        batch.push(request);
    }
    batch.len() - before
}

async fn store_and_publish(
    batch: Vec<AppendRequest>,
    history: &dyn History,
    sequencer: &Sequencer,
    metrics: &Metrics,
) {
    let (messages, senders): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|r| {
            let sender = (r.message.origin, r.reply, r.accepted);
            (r.message, sender)
        })
        .unzip();
    let ids: Vec<_> = messages
        .iter()
        .map(|m| (m.client_id.clone(), m.room.clone()))
        .collect();
    match history.append_batch(messages, now()).await {
        Ok(results) => {
            metrics.commits.inc();
            for ((appended, (origin, reply, accepted)), (id, room)) in
                results.into_iter().zip(senders).zip(ids)
            {
                let (stored, is_new) = match appended {
                    Appended::New(m) => (m, true),
                    Appended::Duplicate(m) => (m, false),
                    Appended::Forbidden => {
                        metrics.error(ErrorCode::Forbidden);
                        let refusal = ServerMessage::refusal(
                            ErrorCode::Forbidden,
                            "this room is private",
                            id,
                            Some(room),
                        );
                        reply.push(Outbound::Direct(refusal.to_json().into()));
                        continue;
                    }
                };
                let (room, seq) = (stored.room.clone(), stored.seq);
                let ack = stored.client_id.clone().map(|id| ServerMessage::Ack {
                    id,
                    room: room.clone(),
                    seq,
                });
                if is_new {
                    metrics.chats_stored.inc();
                    metrics
                        .accept_to_publish
                        .observe(accepted.elapsed().as_secs_f64());
                    if !history.broadcasts() {
                        let timestamp = stored.timestamp;
                        let json = stored.into_frame().to_json();
                        let published = Published::new(room.clone(), seq, timestamp, &json);
                        sequencer.deliver(&published, Some(origin));
                    }
                }
                if let Some(ack) = ack {
                    metrics.acks.inc();
                    sequencer.ack_after(&room, seq, &reply, ack.to_json().into());
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, messages = ids.len(), "storing messages failed; nothing acknowledged");
            for ((id, room), (_, reply, _)) in ids.into_iter().zip(senders) {
                metrics.error(ErrorCode::Unavailable);
                let refusal = ServerMessage::refusal(
                    ErrorCode::Unavailable,
                    "the message could not be stored; send it again",
                    id,
                    Some(room),
                );
                reply.push(Outbound::Direct(refusal.to_json().into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::Database,
        history::sqlite::SqliteHistory,
        hub::{ConnId, Hub},
        mailbox::mailbox,
    };
    use shared::{ChatText, ClientMsgId, RoomId, UserName};

    fn request(text: &str, id: &str, origin: ConnId, reply: &Mailbox) -> AppendRequest {
        AppendRequest {
            message: NewMessage {
                room: RoomId::lobby(),
                sender: UserName::new("ann").expect("name"),
                text: ChatText::new(text).expect("text"),
                client_id: Some(ClientMsgId::new(id).expect("id")),
                origin,
            },
            reply: reply.clone(),
            accepted: std::time::Instant::now(),
        }
    }

    fn frames(rx: &mut crate::mailbox::MailboxReceiver) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|item| match item {
                Outbound::Direct(f) => serde_json::from_str(f.as_str()).expect("json"),
                Outbound::Delivery(p) => serde_json::from_str(p.text()).expect("json"),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    /// The acks in `rx` until `n` have come.
    async fn acks(rx: &mut crate::mailbox::MailboxReceiver, n: usize) -> Vec<serde_json::Value> {
        let mut acks = Vec::new();
        while acks.len() < n {
            match rx.recv().await.expect("open") {
                Outbound::Direct(f) => acks.push(serde_json::from_str(f.as_str()).expect("json")),
                other => panic!("unexpected {other:?}"),
            }
        }
        acks
    }

    /// A relay over a new SQLite file (kept while the directory lives), keeping every message.
    fn started(
        commit_interval: Duration,
    ) -> (tempfile::TempDir, RelayHandle, JoinHandle<()>, Arc<Metrics>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = Arc::new(SqliteHistory::new(
            Database::open(dir.path()).expect("open"),
        ));
        let sequencer = Arc::new(Sequencer::new(
            Arc::new(Hub::default()),
            crate::recent::FRAMES,
        ));
        let metrics = Arc::new(Metrics::default());
        let keep_all = Retention {
            count: 0,
            age: Duration::ZERO,
        };
        let (relay, task) = spawn(
            history,
            sequencer,
            Arc::clone(&metrics),
            keep_all,
            commit_interval,
        );
        (dir, relay, task, metrics)
    }

    /// Asserts each of `lines` is a line of `/metrics`.
    fn assert_counted(metrics: &Metrics, lines: &[&str]) {
        let counted = metrics.render(0, 0);
        for line in lines {
            assert!(counted.lines().any(|l| l == *line), "{line} in {counted}");
        }
    }

    #[tokio::test]
    async fn with_a_commit_interval_what_queues_meanwhile_shares_the_next_commit() {
        const INTERVAL: Duration = Duration::from_secs(1);
        let (_dir, relay, task, metrics) = started(INTERVAL);
        let (sender, mut rx) = mailbox(1 << 20);
        let started = std::time::Instant::now();
        relay
            .submit(request("one", "k1", 1, &sender))
            .await
            .expect("submit");
        assert_eq!(
            acks(&mut rx, 1).await[0]["seq"],
            1,
            "the first is stored at once"
        );
        for id in ["k2", "k3", "k4"] {
            relay
                .submit(request(id, id, 1, &sender))
                .await
                .expect("submit");
        }
        let acked = acks(&mut rx, 3).await;
        assert!(
            started.elapsed() >= INTERVAL,
            "the next commit waited for the interval"
        );
        let seqs: Vec<_> = acked.iter().map(|a| a["seq"].clone()).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_counted(
            &metrics,
            &["chat_commits_total 2", "chat_chats_stored_total 4"],
        );
        drop(relay);
        task.await
            .expect("the relay ends when its handles are gone");
    }

    #[tokio::test]
    async fn chats_from_connections_woken_together_share_a_commit() {
        let (_dir, relay, task, metrics) = started(Duration::ZERO);
        let (sender, mut rx) = mailbox(1 << 20);
        // Nine connections whose chats are read in the same round as the first one's, after it has
        // woken the relay (on this one-thread runtime, they run after the relay was queued).
        let woken = Arc::new(tokio::sync::Notify::new());
        let others: Vec<_> = (2..=10)
            .map(|i| {
                let (relay, woken, sender) = (relay.clone(), Arc::clone(&woken), sender.clone());
                tokio::spawn(async move {
                    woken.notified().await;
                    let id = format!("k{i}");
                    relay.submit(request(&id, &id, i, &sender)).await
                })
            })
            .collect();
        tokio::task::yield_now().await; // they all wait
        relay
            .submit(request("k1", "k1", 1, &sender))
            .await
            .expect("submit");
        woken.notify_waiters();
        for other in others {
            other.await.expect("task").expect("submit");
        }
        let seqs: Vec<_> = acks(&mut rx, 10)
            .await
            .iter()
            .map(|a| a["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_counted(
            &metrics,
            &["chat_commits_total 1", "chat_chats_stored_total 10"],
        );
        drop(relay);
        task.await
            .expect("the relay ends when its handles are gone");
    }

    #[tokio::test]
    async fn a_storage_failure_refuses_the_batch_and_publishes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        // A real failure on demand: SQLite aborts any transaction that stores the text "boom".
        rusqlite::Connection::open(db.path())
            .expect("open")
            .execute_batch(
                "CREATE TRIGGER fail BEFORE INSERT ON messages WHEN NEW.text = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .expect("trigger");
        let history = SqliteHistory::new(db);
        let hub = Arc::new(Hub::default());
        let sequencer = Sequencer::new(Arc::clone(&hub), crate::recent::FRAMES);
        let metrics = Metrics::default();
        let (sender, mut sender_rx) = mailbox(1 << 20);
        let (other, mut other_rx) = mailbox(1 << 20);
        let ann = UserName::new("ann").expect("name");
        hub.join(&RoomId::lobby(), 2, &ann, &other);

        let batch = vec![
            request("fine", "k1", 1, &sender),
            request("boom", "k2", 1, &sender),
        ];
        store_and_publish(batch, &history, &sequencer, &metrics).await;
        let refused = frames(&mut sender_rx);
        assert_eq!(refused.len(), 2);
        for (frame, id) in refused.iter().zip(["k1", "k2"]) {
            assert_eq!(
                (
                    frame["type"].as_str(),
                    frame["code"].as_str(),
                    frame["id"].as_str()
                ),
                (Some("error"), Some("unavailable"), Some(id)),
                "{frame}"
            );
        }
        assert!(frames(&mut other_rx).is_empty(), "nothing published");

        // The cached head was reset: the next message takes seq 1, not 3.
        store_and_publish(
            vec![request("fine", "k1", 1, &sender)],
            &history,
            &sequencer,
            &metrics,
        )
        .await;
        let ack = frames(&mut sender_rx);
        assert_eq!(ack[0]["type"], "ack");
        assert_eq!(ack[0]["seq"], 1);
        let published = frames(&mut other_rx);
        assert_eq!(
            (published.len(), &published[0]["seq"]),
            (1, &serde_json::json!(1))
        );
        let counted = metrics.render(0, 0);
        assert!(
            counted.contains("chat_errors_total{code=\"unavailable\"} 2"),
            "{counted}"
        );
        assert!(counted.contains("chat_chats_stored_total 1"), "{counted}");
    }
}
