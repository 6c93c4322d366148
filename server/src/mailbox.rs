//! A connection's outgoing queue, bounded in bytes.
//!
//! Everything a connection is sent from elsewhere (room deliveries from the [`crate::hub`], acks and errors
//! from the [`crate::relay`], word from [`crate::sessions`] that the account's rooms changed) goes through
//! its mailbox; only the connection's own task writes to its socket.
//! Pushing never waits: when a slow reader lets more than its byte budget pile up, the mailbox refuses
//! further frames and tells the connection to close with 1013 ("try again later"). The client then rejoins
//! with `since` and recovers from history, so nobody waits for a slow client and nothing is lost.
//!
//! The queue is a `VecDeque` behind a mutex that nobody holds across anything but a push or a pop, with
//! the receiver's waker beside it. An idle connection's mailbox holds no buffer at all (a channel would
//! allocate its first block of slots up front, 1.3 KB), and one that emptied after a burst gives its
//! buffer back.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use shared::{RoomId, Seq, Timestamp};
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::Poll,
};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A chat message as published to a room: serialized and framed once, shared by every recipient.
#[derive(Debug)]
pub struct Published {
    /// The room it was published in.
    pub room: RoomId,
    /// Its sequence number in the room.
    pub seq: Seq,
    /// When it was stored.
    pub timestamp: Timestamp,
    /// The WebSocket frame of its `chat` message, the bytes written to every recipient.
    pub frame: Bytes,
}

impl Published {
    /// `json` (a `chat` message), framed for every connection it goes to.
    pub fn new(room: RoomId, seq: Seq, timestamp: Timestamp, json: &str) -> Arc<Self> {
        Arc::new(Self {
            room,
            seq,
            timestamp,
            frame: crate::ws::io::text_frame(json.as_bytes()),
        })
    }

    /// The message's JSON.
    #[cfg(test)]
    pub fn text(&self) -> &str {
        std::str::from_utf8(crate::ws::io::frame_payload(&self.frame)).expect("a text frame")
    }
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
#[derive(Debug)]
pub struct Mailbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Outbound>>,
    /// The receiver's task, woken by a push.
    waker: AtomicWaker,
    /// Bytes queued (see [`frame_len`]).
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    /// Live [`Mailbox`] handles; the receiver hears `None` when none is left.
    senders: AtomicUsize,
    /// The receiver was dropped: nothing more is queued.
    closed: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The receiving side, owned by the connection's task.
#[derive(Debug)]
pub struct MailboxReceiver {
    shared: Arc<Shared>,
}

/// A queue emptied with more room than this gives its buffer back.
const KEPT_CAPACITY: usize = 64;

/// Creates a mailbox that holds at most `limit_bytes` of frames at once.
pub fn mailbox(limit_bytes: usize) -> (Mailbox, MailboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        waker: AtomicWaker::new(),
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        overflowed: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
    });
    (
        Mailbox {
            shared: Arc::clone(&shared),
        },
        MailboxReceiver { shared },
    )
}

impl Clone for Mailbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.waker.wake();
        }
    }
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
                self.enqueue(Outbound::Overflow);
            }
            return false;
        }
        if !self.enqueue(item) {
            budget.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Appends `item` and wakes the receiver; `false` if the receiver is gone.
    fn enqueue(&self, item: Outbound) -> bool {
        {
            let mut queue = self.shared.queue();
            if self.shared.closed.load(Ordering::Relaxed) {
                return false;
            }
            queue.push_back(item);
        }
        self.shared.waker.wake();
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
        std::future::poll_fn(|cx| {
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            self.shared.waker.register(cx.waker());
            // Looked at again after registering, so that a push in between is not missed.
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                // The last sender may have pushed just before it went.
                return Poll::Ready(self.try_recv());
            }
            Poll::Pending
        })
        .await
    }

    /// The next item if one is ready.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = {
            let mut queue = self.shared.queue();
            let item = queue.pop_front()?;
            if queue.is_empty() && queue.capacity() > KEPT_CAPACITY {
                *queue = VecDeque::new();
            }
            item
        };
        self.shared
            .queued
            .fetch_sub(frame_len(&item), Ordering::Relaxed);
        Some(item)
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        let dropped = {
            let mut queue = self.shared.queue();
            self.shared.closed.store(true, Ordering::Relaxed);
            std::mem::take(&mut *queue)
        };
        drop(dropped); // outside the lock: dropping frames may free memory
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

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_hears_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox(1 << 10);
        let other = tx.clone();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.is_some();
            (first, rx.recv().await.is_none())
        });
        tokio::task::yield_now().await;
        assert!(other.push(direct(1)));
        drop(tx);
        drop(other);
        assert_eq!(waiting.await.expect("receiver"), (true, true));
    }

    #[test]
    fn nothing_is_queued_for_a_receiver_that_is_gone_and_an_emptied_queue_gives_its_room_back() {
        let (tx, mut rx) = mailbox(1 << 20);
        for _ in 0..1000 {
            assert!(tx.push(direct(1)));
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.queue().capacity(), 0);
        assert_eq!(tx.queued(), 0);
        drop(rx);
        assert!(!tx.push(direct(1)));
        assert_eq!(tx.queued(), 0, "what was refused is not counted");
    }
}
