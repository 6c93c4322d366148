//! The chat state the view shows, kept per room: pure data with no I/O, so it is unit-tested natively.
//!
//! - Each room has an ordered log of delivered messages (by server `seq`, no duplicates, at most
//!   [`ROOM_CAP`]) and the `last_seq` to ask the server for on the next `join`.
//! - The outbox holds our own messages the server has not acknowledged yet, in the order they were typed.
//!   An `ack` (or a relayed `chat` carrying the same id, e.g. from a replay) moves an entry from the outbox
//!   into the room's log; a permanent refusal moves it to the room's failed list.
//!
//! The whole [`Store`] is saved to localStorage as JSON, so a reload keeps history and unsent messages.

use serde::{Deserialize, Serialize};
use shared::{ChatText, ClientMessage, ClientMsgId, RoomId, Seq, Timestamp, UserName};
use std::collections::BTreeMap;

/// How many delivered messages a room keeps (older ones are dropped, in memory and in storage).
pub const ROOM_CAP: usize = 200;

/// A message the server stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Its position in the room.
    pub seq: Seq,
    /// Who said it; `None` for a message sent from this browser.
    pub sender: Option<UserName>,
    /// What was said.
    pub text: ChatText,
    /// When the server stored it (for our own messages: when it was typed).
    pub timestamp: Timestamp,
    /// The sender's client id, if it gave one.
    pub id: Option<ClientMsgId>,
}

/// One of our messages that is not (yet) in the room's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Our id for it; resending with the same id is safe.
    pub id: ClientMsgId,
    /// Where it goes.
    pub room: RoomId,
    /// What it says.
    pub text: ChatText,
    /// When it was typed.
    pub created: Timestamp,
}

impl Outgoing {
    /// The frame that sends (or resends) this message.
    pub fn to_message(&self) -> ClientMessage {
        ClientMessage::Chat {
            text: self.text.clone(),
            room: Some(self.room.clone()),
            id: Some(self.id.clone()),
        }
    }
}

/// One room's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLog {
    /// The highest `seq` seen; sent as `since` when (re)joining.
    pub last_seq: Seq,
    /// Delivered messages in `seq` order.
    messages: Vec<Delivered>,
    /// Our messages the server refused for good.
    failed: Vec<Outgoing>,
}

/// Where one of the messages shown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Someone else's message.
    Received,
    /// Ours, waiting for the server's acknowledgement.
    Pending,
    /// Ours, stored by the server.
    Sent,
    /// Ours, refused by the server; it will not be retried.
    Failed,
}

impl Delivery {
    /// The value of the `data-state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// One line of the message list, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// A key unique within the room that stays the same when a pending message becomes sent.
    pub key: String,
    /// Who said it; `None` means "You".
    pub sender: Option<UserName>,
    /// What was said.
    pub text: ChatText,
    /// When.
    pub timestamp: Timestamp,
    /// Its delivery state.
    pub delivery: Delivery,
}

/// Every room's log plus the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    rooms: BTreeMap<RoomId, RoomLog>,
    outbox: Vec<Outgoing>,
}

impl Default for Store {
    /// An empty store that has joined the lobby.
    fn default() -> Self {
        Self {
            rooms: BTreeMap::from([(RoomId::lobby(), RoomLog::default())]),
            outbox: Vec::new(),
        }
    }
}

impl Store {
    /// The `join` frames to send after (re)connecting: every known room, from its last seen `seq`.
    pub fn joins(&self) -> Vec<ClientMessage> {
        self.rooms
            .iter()
            .map(|(room, log)| ClientMessage::Join {
                room: room.clone(),
                since: Some(log.last_seq),
                private: false,
            })
            .collect()
    }

    /// Messages waiting for an acknowledgement, oldest first.
    pub fn outbox(&self) -> &[Outgoing] {
        &self.outbox
    }

    /// Adds one of our messages to the outbox (shown as pending until acknowledged).
    pub fn queue(&mut self, message: Outgoing) {
        self.rooms.entry(message.room.clone()).or_default();
        self.outbox.push(message);
    }

    /// The server stored our message `id` as `seq`.
    pub fn ack(&mut self, id: &ClientMsgId, room: &RoomId, seq: Seq) {
        if let Some(out) = self.take_outgoing(id) {
            self.insert(
                room,
                Delivered {
                    seq,
                    sender: None,
                    text: out.text,
                    timestamp: out.created,
                    id: Some(out.id),
                },
            );
        }
    }

    /// A `chat` frame arrived (live or replayed). One whose id is in our outbox is our own message coming
    /// back (from a replay, or another tab of the same user): it replaces the pending entry.
    pub fn receive(&mut self, room: &RoomId, message: Delivered) {
        let mine = message.id.as_ref().and_then(|id| self.take_outgoing(id));
        let message = match mine {
            Some(out) => Delivered {
                sender: None,
                timestamp: out.created,
                ..message
            },
            None => message,
        };
        self.insert(room, message);
    }

    /// The server refused our message `id` for good.
    pub fn fail(&mut self, id: &ClientMsgId) {
        if let Some(out) = self.take_outgoing(id) {
            self.rooms
                .entry(out.room.clone())
                .or_default()
                .failed
                .push(out);
        }
    }

    /// A `join` finished replaying; `head` is the room's newest `seq`. If we have seen more than that, the
    /// server lost history: forget what it no longer has, so new messages reusing those numbers show.
    pub fn joined(&mut self, room: &RoomId, head: Seq) {
        let log = self.rooms.entry(room.clone()).or_default();
        if head < log.last_seq {
            log.last_seq = head;
            log.messages.retain(|m| m.seq <= head);
        }
    }

    /// What to show for `room`: delivered messages in `seq` order, then our failed and pending ones in the
    /// order they were typed.
    pub fn shown(&self, room: &RoomId) -> Vec<Shown> {
        let log = self.rooms.get(room);
        let delivered = log.into_iter().flat_map(|l| &l.messages).map(|m| Shown {
            key: m
                .id
                .as_ref()
                .map_or_else(|| format!("seq-{}", m.seq), |id| format!("id-{id}")),
            sender: m.sender.clone(),
            text: m.text.clone(),
            timestamp: m.timestamp,
            delivery: if m.sender.is_none() {
                Delivery::Sent
            } else {
                Delivery::Received
            },
        });
        let failed = log
            .into_iter()
            .flat_map(|l| &l.failed)
            .map(|o| (o, Delivery::Failed));
        let pending = self
            .outbox
            .iter()
            .filter(|o| &o.room == room)
            .map(|o| (o, Delivery::Pending));
        let mut mine: Vec<_> = failed.chain(pending).collect();
        mine.sort_by_key(|(o, _)| o.created);
        delivered
            .chain(mine.into_iter().map(|(o, delivery)| Shown {
                key: format!("id-{}", o.id),
                sender: None,
                text: o.text.clone(),
                timestamp: o.created,
                delivery,
            }))
            .collect()
    }

    fn take_outgoing(&mut self, id: &ClientMsgId) -> Option<Outgoing> {
        let at = self.outbox.iter().position(|o| &o.id == id)?;
        Some(self.outbox.remove(at))
    }

    fn insert(&mut self, room: &RoomId, message: Delivered) {
        let log = self.rooms.entry(room.clone()).or_default();
        log.last_seq = log.last_seq.max(message.seq);
        if let Err(at) = log.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            log.messages.insert(at, message);
            if log.messages.len() > ROOM_CAP {
                log.messages.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::lobby()
    }

    fn text(s: &str) -> ChatText {
        ChatText::new(s).expect("valid text")
    }

    fn id(s: &str) -> ClientMsgId {
        ClientMsgId::new(s).expect("valid id")
    }

    fn theirs(seq: Seq, body: &str) -> Delivered {
        Delivered {
            seq,
            sender: Some(UserName::new("ann").expect("valid name")),
            text: text(body),
            timestamp: Timestamp::from_unix_ms(seq as i64),
            id: None,
        }
    }

    fn mine(key: &str, body: &str, at: i64) -> Outgoing {
        Outgoing {
            id: id(key),
            room: room(),
            text: text(body),
            created: Timestamp::from_unix_ms(at),
        }
    }

    fn summary(store: &Store) -> Vec<(String, Delivery)> {
        store
            .shown(&room())
            .into_iter()
            .map(|s| (s.text.to_string(), s.delivery))
            .collect()
    }

    #[test]
    fn messages_are_ordered_by_seq_and_deduplicated() {
        let mut store = Store::default();
        for seq in [3, 1, 2, 3, 1] {
            store.receive(&room(), theirs(seq, &format!("m{seq}")));
        }
        let texts: Vec<_> = summary(&store).into_iter().map(|(t, _)| t).collect();
        assert_eq!(texts, ["m1", "m2", "m3"]);
        assert_eq!(store.rooms[&room()].last_seq, 3);
        assert_eq!(
            store.joins(),
            [ClientMessage::Join {
                room: room(),
                since: Some(3),
                private: false,
            }]
        );
    }

    #[test]
    fn pending_goes_after_delivered_and_becomes_sent_on_ack() {
        let mut store = Store::default();
        store.queue(mine("a", "first", 10));
        store.queue(mine("b", "second", 20));
        store.receive(&room(), theirs(1, "hello"));
        assert_eq!(
            summary(&store),
            [
                ("hello".into(), Delivery::Received),
                ("first".into(), Delivery::Pending),
                ("second".into(), Delivery::Pending)
            ]
        );
        let before: Vec<_> = store.shown(&room()).into_iter().map(|s| s.key).collect();
        store.ack(&id("a"), &room(), 2);
        store.ack(&id("a"), &room(), 2); // a repeated ack changes nothing
        assert_eq!(
            summary(&store),
            [
                ("hello".into(), Delivery::Received),
                ("first".into(), Delivery::Sent),
                ("second".into(), Delivery::Pending)
            ]
        );
        let after: Vec<_> = store.shown(&room()).into_iter().map(|s| s.key).collect();
        assert_eq!(before, after, "keys survive pending -> sent");
        assert_eq!(store.outbox(), [mine("b", "second", 20)]);
    }

    #[test]
    fn relayed_copy_of_our_message_replaces_the_pending_one() {
        let mut store = Store::default();
        store.queue(mine("a", "mine", 10));
        store.receive(
            &room(),
            Delivered {
                id: Some(id("a")),
                ..theirs(5, "mine")
            },
        );
        store.ack(&id("a"), &room(), 5);
        assert_eq!(summary(&store), [("mine".into(), Delivery::Sent)]);
        assert!(store.outbox().is_empty());
    }

    #[test]
    fn refused_message_is_failed_and_leaves_the_outbox() {
        let mut store = Store::default();
        store.queue(mine("a", "bad", 10));
        store.fail(&id("a"));
        assert_eq!(summary(&store), [("bad".into(), Delivery::Failed)]);
        assert!(store.outbox().is_empty());
    }

    #[test]
    fn lost_history_resets_last_seq() {
        let mut store = Store::default();
        for seq in 1..=5 {
            store.receive(&room(), theirs(seq, "x"));
        }
        store.joined(&room(), 7);
        assert_eq!(
            store.rooms[&room()].last_seq,
            5,
            "a higher head changes nothing"
        );
        store.joined(&room(), 2);
        assert_eq!(store.rooms[&room()].last_seq, 2);
        assert_eq!(store.shown(&room()).len(), 2);
    }

    #[test]
    fn rooms_are_capped() {
        let mut store = Store::default();
        for seq in 1..=(ROOM_CAP as Seq + 10) {
            store.receive(&room(), theirs(seq, "x"));
        }
        let shown = store.shown(&room());
        assert_eq!(shown.len(), ROOM_CAP);
        assert_eq!(shown[0].key, "seq-11");
    }

    #[test]
    fn persistence_round_trips() {
        let mut store = Store::default();
        store.receive(&room(), theirs(1, "hello"));
        store.queue(mine("a", "unsent", 10));
        store.queue(mine("b", "refused", 11));
        store.fail(&id("b"));
        let json = serde_json::to_string(&store).expect("serializes");
        assert!(json.contains("\"unsent\""), "{json}");
        let back: Store = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, store);
    }
}
