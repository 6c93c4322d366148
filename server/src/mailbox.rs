//! A connection's outgoing queue, bounded in bytes.
//!
//! Everything a connection is sent from elsewhere (room deliveries from the [`crate::hub`], acks and errors
//! from the [`crate::relay`], word from [`crate::sessions`] that the account's rooms changed) goes through
//! its mailbox; only the connection's own task writes to its socket.
//! Pushing never waits: when a slow reader lets more than its byte budget pile up, the mailbox refuses
//! further frames and tells the connection to close with 1013 ("try again later"). The client then rejoins
//! with `since` and recovers from history, so nobody waits for a slow client and nothing is lost.

use axum::extract::ws::Utf8Bytes;
use shared::{RoomId, Seq, Timestamp};
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};
use tokio::sync::mpsc;

/// A chat message as published to a room: serialized once, shared by every recipient.
#[derive(Debug)]
pub struct Published {
    /// The room it was published in.
    pub room: RoomId,
    /// Its sequence number in the room.
    pub seq: Seq,
    /// When it was stored.
    pub timestamp: Timestamp,
    /// The `chat` frame, ready to write.
    pub frame: Utf8Bytes,
}

/// An item in a mailbox.
#[derive(Debug)]
pub enum Outbound {
    /// A room message; the connection drops it if it already sent that room's `seq` (replay overlap).
    Delivery(Arc<Published>),
    /// A frame for this connection only (an ack, an error).
    Direct(Utf8Bytes),
    /// The connection was taken out of this room (removed from a private room): stop expecting it.
    Evicted(RoomId),
    /// The account's list of rooms changed elsewhere (it was invited to a room): send it again.
    Relist,
    /// The byte budget was exceeded: close with 1013.
    Overflow,
}

/// The sending side, held by the hub and by pending relay requests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailbox {
    tx: mpsc::UnboundedSender<Outbound>,
    shared: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
}

/// The receiving side, owned by the connection's task.
#[derive(Debug)]
pub struct MailboxReceiver {
    rx: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Budget>,
}

/// Creates a mailbox that holds at most `limit_bytes` of frames at once.
pub fn mailbox(limit_bytes: usize) -> (Mailbox, MailboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Budget {
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
    });
    (
        Mailbox {
            tx,
            shared: Arc::clone(&shared),
        },
        MailboxReceiver { rx, shared },
    )
}

fn frame_len(item: &Outbound) -> usize {
    match item {
        Outbound::Delivery(p) => p.frame.len(),
        Outbound::Direct(f) => f.len(),
        Outbound::Evicted(_) | Outbound::Overflow => 0,
        // Counted as a small frame (the list it leads to is read when it is written), so that a flood
        // of invitations is bounded by the budget like anything else.
        Outbound::Relist => 64,
    }
}

impl Mailbox {
    /// Queues `item` unless the budget is exhausted (then the connection is told to close) or the
    /// connection is gone. Returns `false` when the item was not queued.
    pub fn push(&self, item: Outbound) -> bool {
        let budget = &self.shared;
        if budget.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let len = frame_len(&item);
        let before = budget.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > budget.limit {
            budget.queued.fetch_sub(len, Ordering::Relaxed);
            if !budget.overflowed.swap(true, Ordering::Relaxed) {
                let _ = self.tx.send(Outbound::Overflow);
            }
            return false;
        }
        if self.tx.send(item).is_err() {
            budget.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Mailbox {
    /// Bytes queued and not yet taken by the connection.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

impl MailboxReceiver {
    /// The next item, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let item = self.rx.recv().await?;
        self.release(&item);
        Some(item)
    }

    /// The next item if one is ready.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.rx.try_recv().ok()?;
        self.release(&item);
        Some(item)
    }

    fn release(&self, item: &Outbound) {
        self.shared
            .queued
            .fetch_sub(frame_len(item), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(n: usize) -> Outbound {
        Outbound::Direct(Utf8Bytes::from("x".repeat(n)))
    }

    #[tokio::test]
    async fn overflow_refuses_and_signals_once() {
        let (tx, mut rx) = mailbox(10);
        assert!(tx.push(direct(6)));
        assert!(!tx.push(direct(6)), "over budget");
        assert!(!tx.push(direct(1)), "stays refused after overflow");
        assert!(matches!(rx.recv().await, Some(Outbound::Direct(_))));
        assert!(matches!(rx.recv().await, Some(Outbound::Overflow)));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn reading_frees_budget() {
        let (tx, mut rx) = mailbox(10);
        for _ in 0..5 {
            assert!(tx.push(direct(8)));
            assert!(rx.recv().await.is_some());
        }
    }
}
