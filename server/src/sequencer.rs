//! Each room's messages into the [`Hub`] in `seq` order, each exactly once, and acks only after them.
//!
//! Whoever learns of a stored message hands it to [`Sequencer::deliver`]: the relay in the embedded mode
//! (which stores and publishes in order itself), the [`crate::broker::subscriber`] in the Redis mode
//! (where messages from every node arrive over one subscription). The sequencer remembers, per room, the
//! last `seq` it put into the hub and
//! - passes on the next one;
//! - passes on again one it already passed (a message read from history to fill a gap, then also
//!   received live), which each session drops by `seq`;
//! - reports a gap when a message arrives after some were missed (the subscription was down), so that the
//!   caller reads the missing ones from history first ([`Delivered::Gap`]).
//!
//! An `ack` tells a client that everything up to its `seq` is settled (the client asks for what came
//! after its newest `seq` when it reconnects), so an ack must never overtake an earlier message of its
//! room. [`Sequencer::ack_after`] therefore holds an ack until its message has been delivered.
//!
//! A room this node knows nothing of starts at the first message or `join` that names it: a session that
//! joins has just replayed history up to some head, and everything after that head reaches it live.
//!
//! Each room's newest frames as delivered stay in a [`Recent`], from which a `join` replays when they
//! cover what its client missed ([`Sequencer::replay`], [`Sequencer::newest`]).

use crate::{
    hub::{ConnId, Hub},
    mailbox::{Mailbox, Outbound, Published},
    recent::Recent,
};
use shared::{RoomId, Seq, Timestamp};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What [`Sequencer::deliver`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Put into the hub (and released the acks waiting for it).
    Now,
    /// Already delivered: passed on again, for sessions to drop.
    Stale,
    /// Messages after `after` (up to this one) are missing: read them from history, deliver them, then
    /// this one.
    Gap {
        /// The last `seq` delivered in the room.
        after: Seq,
    },
}

/// Where each room's delivery stands on this node.
#[derive(Debug)]
pub struct Sequencer {
    hub: Arc<Hub>,
    /// Frames kept per room (see [`crate::recent`]).
    keep: usize,
    rooms: Mutex<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    orders: HashMap<RoomId, RoomOrder>,
    /// The bytes of every room's recent frames.
    recent_bytes: usize,
}

#[derive(Debug, Default)]
struct RoomOrder {
    delivered: Seq,
    /// Acks waiting for their message, by `seq`.
    acks: BTreeMap<Seq, Vec<(Mailbox, Utf8Bytes)>>,
    /// The newest frames delivered, up to `delivered`.
    recent: Recent,
}

impl RoomOrder {
    fn release(&mut self) {
        let waiting = self.acks.split_off(&(self.delivered + 1));
        for (_, acks) in std::mem::replace(&mut self.acks, waiting) {
            for (mailbox, ack) in acks {
                mailbox.push(Outbound::Direct(ack));
            }
        }
    }
}

impl Sequencer {
    /// Delivers into `hub`, keeping each room's newest `keep` frames for replays (at most
    /// [`crate::recent::FRAMES`]; never more than retention keeps).
    pub fn new(hub: Arc<Hub>, keep: usize) -> Self {
        Self {
            hub,
            keep: keep.min(crate::recent::FRAMES),
            rooms: Mutex::default(),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `message` to its room's connections on this node except `except` (its sender's), if it is
    /// the room's next. One already delivered is passed on again (each session drops what it has already
    /// written, by `seq`): a `join` may have moved the room's position past a message still on its way.
    pub fn deliver(&self, message: &Arc<Published>, except: Option<ConnId>) -> Delivered {
        let mut guard = self.rooms();
        let Rooms {
            orders,
            recent_bytes,
        } = &mut *guard;
        let order = match orders.get_mut(&message.room) {
            Some(order) => order,
            // Nobody here follows the room: nothing to order.
            None if self.hub.member_count(&message.room) == 0 => return Delivered::Now,
            None => orders
                .entry(message.room.clone())
                .or_insert_with(|| RoomOrder {
                    delivered: message.seq.saturating_sub(1),
                    ..RoomOrder::default()
                }),
        };
        if message.seq > order.delivered + 1 {
            return Delivered::Gap {
                after: order.delivered,
            };
        }
        self.hub.publish(message, except);
        if message.seq <= order.delivered {
            return Delivered::Stale;
        }
        order.delivered = message.seq;
        order.recent.push(message, self.keep, recent_bytes);
        order.release();
        Delivered::Now
    }

    /// Messages of `room` up to `seq` will never come (no longer kept): stop waiting for them.
    pub fn skip_to(&self, room: &RoomId, seq: Seq) {
        let mut guard = self.rooms();
        let Rooms {
            orders,
            recent_bytes,
        } = &mut *guard;
        if let Some(order) = orders.get_mut(room)
            && order.delivered < seq
        {
            order.delivered = seq;
            // The frames kept no longer end at `delivered`.
            order.recent.clear(recent_bytes);
            order.release();
        }
    }

    /// Pushes `ack` into `reply` once message `seq` of `room` has been delivered (now, if it has).
    pub fn ack_after(&self, room: &RoomId, seq: Seq, reply: &Mailbox, ack: Utf8Bytes) {
        let mut rooms = self.rooms();
        // A room this node does not follow: its sender never joined it here (a `join` is followed), so no
        // message the sender expects can be overtaken. (The ack may also be a duplicate's, for a message
        // stored long ago.)
        let Some(order) = rooms.orders.get_mut(room) else {
            reply.push(Outbound::Direct(ack));
            return;
        };
        if seq <= order.delivered {
            reply.push(Outbound::Direct(ack));
        } else {
            order
                .acks
                .entry(seq)
                .or_default()
                .push((reply.clone(), ack));
        }
    }

    /// The last `seq` of `room` delivered here, if this node follows the room.
    pub fn delivered(&self, room: &RoomId) -> Option<Seq> {
        self.rooms().orders.get(room).map(|order| order.delivered)
    }

    /// The frames of `room` after `since` and the `seq` they end at, if this node follows the room and
    /// still holds every one of them (see [`crate::recent`]); `None`: read them from history.
    pub fn replay(&self, room: &RoomId, since: Seq) -> Option<(Vec<Arc<Published>>, Seq)> {
        let rooms = self.rooms();
        let order = rooms.orders.get(room)?;
        let frames = order.recent.after(since, order.delivered)?;
        Some((frames, order.delivered))
    }

    /// The newest page of `room` (at most `count` frames within `bytes`) and the `seq` it ends at, if
    /// this node follows the room and holds that page; `None`: read it from history.
    pub fn newest(
        &self,
        room: &RoomId,
        count: usize,
        bytes: usize,
    ) -> Option<(Vec<Arc<Published>>, Seq)> {
        let rooms = self.rooms();
        let order = rooms.orders.get(room)?;
        let frames = order.recent.newest(count, bytes, order.delivered)?;
        Some((frames, order.delivered))
    }

    /// Drops the kept frames of messages sent before `cutoff` (retention by age deleted them).
    pub fn forget_before(&self, cutoff: Timestamp) {
        let mut guard = self.rooms();
        let Rooms {
            orders,
            recent_bytes,
        } = &mut *guard;
        for order in orders.values_mut() {
            order.recent.forget_before(cutoff, recent_bytes);
        }
    }

    /// A connection joined `room` having replayed history up to `head`.
    pub fn joined(&self, room: &RoomId, head: Seq) {
        self.rooms()
            .orders
            .entry(room.clone())
            .or_insert_with(|| RoomOrder {
                delivered: head,
                ..RoomOrder::default()
            });
    }

    /// Every room followed, with its last delivered `seq`. Rooms without connections on this node and
    /// without waiting acks are forgotten first (a later `join` starts them again).
    pub fn positions(&self) -> Vec<(RoomId, Seq)> {
        let mut guard = self.rooms();
        let Rooms {
            orders,
            recent_bytes,
        } = &mut *guard;
        orders.retain(|room, order| {
            let keep = !order.acks.is_empty() || self.hub.member_count(room) > 0;
            if !keep {
                order.recent.clear(recent_bytes);
            }
            keep
        });
        orders
            .iter()
            .map(|(room, order)| (room.clone(), order.delivered))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::mailbox;
    use shared::UserName;

    fn published(room: &RoomId, seq: Seq) -> Arc<Published> {
        Published::new(
            room.clone(),
            seq,
            Timestamp::from_unix_ms(seq as i64),
            &seq.to_string(),
        )
    }

    fn drain(rx: &mut crate::mailbox::MailboxReceiver) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = rx.try_recv() {
            match item {
                Outbound::Delivery(p) => out.push(format!("chat {}", p.text())),
                Outbound::Direct(f) => out.push(f.as_str().to_owned()),
                other => out.push(format!("{other:?}")),
            }
        }
        out
    }

    #[tokio::test]
    async fn delivers_in_order_once_reports_gaps_and_holds_acks() {
        let hub = Arc::new(Hub::default());
        let sequencer = Sequencer::new(Arc::clone(&hub), crate::recent::FRAMES);
        let room = RoomId::lobby();
        let (reader, mut rx) = mailbox(1 << 20);
        let (sender, mut sent) = mailbox(1 << 20);
        let ann = UserName::new("ann").expect("name");
        hub.join(&room, 1, &ann, &reader);
        hub.join(&room, 2, &ann, &sender);
        sequencer.joined(&room, 4);

        // The sender's message 6 is stored before the reader has seen 5: its ack waits for 5 and 6.
        sequencer.ack_after(&room, 6, &sender, "ack 6".into());
        assert!(drain(&mut sent).is_empty(), "ack held back");
        assert_eq!(
            sequencer.deliver(&published(&room, 4), None),
            Delivered::Stale
        );
        assert_eq!(
            sequencer.deliver(&published(&room, 6), Some(2)),
            Delivered::Gap { after: 4 }
        );
        assert_eq!(
            sequencer.deliver(&published(&room, 5), None),
            Delivered::Now
        );
        assert_eq!(
            drain(&mut sent),
            ["chat 4", "chat 5"],
            "still no ack before 6"
        );
        assert_eq!(
            sequencer.deliver(&published(&room, 6), Some(2)),
            Delivered::Now
        );
        assert_eq!(
            sequencer.deliver(&published(&room, 6), Some(2)),
            Delivered::Stale
        );
        assert_eq!(drain(&mut rx), ["chat 4", "chat 5", "chat 6", "chat 6"]);
        assert_eq!(
            drain(&mut sent),
            ["ack 6"],
            "the sender gets its ack, not its copy"
        );

        // An ack for something already delivered goes at once (so does one in a room nobody here
        // follows); one past a gap that history no longer holds goes when the gap is skipped.
        sequencer.ack_after(
            &RoomId::new("elsewhere").expect("room"),
            3,
            &sender,
            "ack elsewhere".into(),
        );
        assert_eq!(drain(&mut sent), ["ack elsewhere"]);
        sequencer.ack_after(&room, 6, &sender, "dup 6".into());
        assert_eq!(drain(&mut sent), ["dup 6"]);
        sequencer.ack_after(&room, 9, &sender, "ack 9".into());
        sequencer.skip_to(&room, 9);
        assert_eq!(drain(&mut sent), ["ack 9"]);
        assert_eq!(sequencer.positions(), [(room.clone(), 9)]);

        hub.leave(&room, 1);
        hub.leave(&room, 2);
        assert!(sequencer.positions().is_empty(), "idle rooms are forgotten");
    }

    fn seqs(frames: Option<(Vec<Arc<Published>>, Seq)>) -> Option<(Vec<Seq>, Seq)> {
        frames.map(|(f, head)| (f.iter().map(|p| p.seq).collect(), head))
    }

    #[tokio::test]
    async fn keeps_the_newest_frames_without_a_hole_for_replays() {
        let hub = Arc::new(Hub::default());
        let sequencer = Sequencer::new(Arc::clone(&hub), 3);
        let room = RoomId::lobby();
        let (reader, _rx) = mailbox(1 << 20);
        hub.join(&room, 1, &UserName::new("ann").expect("name"), &reader);
        sequencer.joined(&room, 0);
        for seq in 1..=4 {
            assert_eq!(
                sequencer.deliver(&published(&room, seq), None),
                Delivered::Now
            );
        }
        assert_eq!(seqs(sequencer.replay(&room, 1)), Some((vec![2, 3, 4], 4)));
        assert_eq!(seqs(sequencer.replay(&room, 4)), Some((vec![], 4)));
        assert_eq!(seqs(sequencer.replay(&room, 0)), None, "1 is not kept");
        assert_eq!(
            seqs(sequencer.newest(&room, 2, 1 << 20)),
            Some((vec![3, 4], 4))
        );
        assert_eq!(
            seqs(sequencer.newest(&room, 5, 1 << 20)),
            None,
            "1 is elsewhere"
        );
        let elsewhere = RoomId::new("elsewhere").expect("room");
        assert_eq!(
            sequencer.deliver(&published(&elsewhere, 1), None),
            Delivered::Now
        );
        assert_eq!(
            seqs(sequencer.replay(&elsewhere, 0)),
            None,
            "not followed here"
        );

        // A gap filled from history is kept in order; messages skipped leave nothing to replay from.
        assert_eq!(
            sequencer.deliver(&published(&room, 6), None),
            Delivered::Gap { after: 4 }
        );
        sequencer.deliver(&published(&room, 5), None);
        sequencer.deliver(&published(&room, 6), None);
        assert_eq!(seqs(sequencer.replay(&room, 3)), Some((vec![4, 5, 6], 6)));
        sequencer.skip_to(&room, 9);
        assert_eq!(seqs(sequencer.replay(&room, 6)), None);
        assert_eq!(seqs(sequencer.replay(&room, 9)), Some((vec![], 9)));

        // Retention by age drops old frames; a room no longer followed drops them all.
        sequencer.deliver(&published(&room, 10), None);
        sequencer.deliver(&published(&room, 11), None);
        sequencer.forget_before(Timestamp::from_unix_ms(11));
        assert_eq!(seqs(sequencer.replay(&room, 9)), None);
        assert_eq!(seqs(sequencer.replay(&room, 10)), Some((vec![11], 11)));
        hub.leave(&room, 1);
        assert!(sequencer.positions().is_empty());
        assert_eq!(seqs(sequencer.replay(&room, 10)), None);
        assert_eq!(sequencer.rooms().recent_bytes, 0, "every byte given back");
    }
}
