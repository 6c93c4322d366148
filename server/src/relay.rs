//! The relay: the one writer of room history on this node, and the publisher of what it writes.
//!
//! Connections submit [`AppendRequest`]s into a bounded queue. The relay task takes every request waiting
//! (up to [`MAX_BATCH`]), stores them with one [`History::append_batch`] call (one commit), and only then,
//! in `seq` order, publishes each new message to the [`Hub`] and acknowledges it to its sender. So:
//! - an `ack` always means "durably stored";
//! - every room's messages are published in `seq` order with no gaps, because one task assigns and
//!   publishes them;
//! - a duplicate (same sender, room and client id) is acknowledged again with its original `seq` and not
//!   published again.
//!
//! The queue holds senders' [`Mailbox`]es, not oneshot channels: acks reach the sender through the same
//! ordered queue as everything else, and a sender never waits for its own commit before reading its next
//! frame. The task ends when every [`RelayHandle`] is dropped, after storing what was already queued.

use crate::now;
use crate::{
    history::{Appended, History, NewMessage, Retention},
    hub::{ConnId, Hub},
    mailbox::{Mailbox, Outbound, Published},
};
use shared::{ErrorCode, ServerMessage};
use std::{sync::Arc, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle};

/// Most requests stored in one commit.
pub const MAX_BATCH: usize = 512;
/// Requests that may wait for the relay before submitters wait too.
const QUEUE_CAPACITY: usize = 4096;
/// How often retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A chat message to store and publish.
#[derive(Debug)]
pub struct AppendRequest {
    /// The message.
    pub message: NewMessage,
    /// The connection that sent it: it gets the ack, not the relayed copy.
    pub origin: ConnId,
    /// Where the ack or error goes.
    pub reply: Mailbox,
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
}

/// Starts the relay task.
pub fn spawn(
    history: Arc<dyn History>,
    hub: Arc<Hub>,
    retention: Retention,
) -> (RelayHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let task = tokio::spawn(run(rx, history, hub, retention));
    (RelayHandle { tx }, task)
}

async fn run(
    mut rx: mpsc::Receiver<AppendRequest>,
    history: Arc<dyn History>,
    hub: Arc<Hub>,
    retention: Retention,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    break;
                }
                store_and_publish(std::mem::take(&mut batch), history.as_ref(), &hub).await;
            }
            _ = prune.tick() => {
                match history.prune(retention, now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "retention applied"),
                    Err(e) => tracing::error!(error = %e, "retention failed"),
                }
            }
        }
    }
    tracing::debug!("relay stopped");
}

async fn store_and_publish(batch: Vec<AppendRequest>, history: &dyn History, hub: &Hub) {
    let (messages, senders): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|r| (r.message, (r.origin, r.reply)))
        .unzip();
    let ids: Vec<_> = messages
        .iter()
        .map(|m| (m.client_id.clone(), m.room.clone()))
        .collect();
    match history.append_batch(messages, now()).await {
        Ok(results) => {
            for (appended, (origin, reply)) in results.into_iter().zip(senders) {
                let (stored, is_new) = match appended {
                    Appended::New(m) => (m, true),
                    Appended::Duplicate(m) => (m, false),
                };
                let ack = stored.client_id.clone().map(|id| ServerMessage::Ack {
                    id,
                    room: stored.room.clone(),
                    seq: stored.seq,
                });
                if is_new {
                    let room = stored.room.clone();
                    let seq = stored.seq;
                    let frame = stored.into_frame().to_json().into();
                    hub.publish(&Arc::new(Published { room, seq, frame }), origin);
                }
                if let Some(ack) = ack {
                    reply.push(Outbound::Direct(ack.to_json().into()));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, messages = ids.len(), "storing messages failed; nothing acknowledged");
            for ((id, room), (_, reply)) in ids.into_iter().zip(senders) {
                let refusal = ServerMessage::Error {
                    code: ErrorCode::Unavailable,
                    message: "the message could not be stored; send it again".into(),
                    id,
                    room: Some(room),
                };
                reply.push(Outbound::Direct(refusal.to_json().into()));
            }
        }
    }
}
