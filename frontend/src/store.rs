//! The chat state the view shows, kept per room: pure data with no I/O, so it is unit-tested natively.
//!
//! - Each room has an ordered log of delivered messages (by server `seq`, no duplicates, at most
//!   [`MEMORY_CAP`], of which the newest [`ROOM_CAP`] are saved) and the `last_seq` to ask the server for
//!   on the next `join`. Older pages (`history`) are added in front as the user scrolls back, until the
//!   server says there are no more.
//! - The outbox holds our own messages the server has not acknowledged yet, in the order they were typed.
//!   An `ack` (or a relayed `chat` from our own user in the same room carrying the same id, e.g. from a
//!   replay) moves an entry from the outbox into the room's log; a permanent refusal moves it to the
//!   room's failed list.
//!
//! The whole [`Store`] is saved to localStorage as JSON, so a reload keeps history and unsent messages.
//! Other tabs of the same user save under the same key: [`Store::merged_with`] keeps their pending
//! messages in what this tab saves.

use serde::{Deserialize, Serialize};
use shared::{
    ChatText, ClientMessage, ClientMsgId, RoomId, Seq, ServerMessage, Timestamp, UserName,
};
use std::collections::BTreeMap;

/// How many of a room's newest delivered messages are saved in localStorage.
pub const ROOM_CAP: usize = 200;

/// How many delivered messages a room keeps in memory (scrolling back adds older ones); past it the
/// oldest are dropped.
pub const MEMORY_CAP: usize = 5_000;

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
#[serde(default)]
pub struct RoomLog {
    /// The highest `seq` seen; sent as `since` when (re)joining.
    pub last_seq: Seq,
    /// Delivered messages in `seq` order.
    messages: Vec<Delivered>,
    /// Our messages the server refused for good.
    failed: Vec<Outgoing>,
    /// The server has nothing older than the first message of `messages`.
    complete: bool,
    /// The newest `seq` the user has read (seen in the open room).
    read: Seq,
    /// The room's newest `seq` as the room list said (until the join's replay brings the messages).
    head: Seq,
    /// Only members may use the room.
    private: bool,
    /// Where the user left the room scrolled back (the distance from the list's bottom, in pixels); not
    /// saved.
    #[serde(skip)]
    scrolled: Option<i32>,
}

/// A room in the room list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listed {
    /// The room.
    pub room: RoomId,
    /// Messages after what was read.
    pub unread: Seq,
    /// Only members may use it.
    pub private: bool,
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
    /// Not a message: a quiet line about the room ("ann joined"), never stored.
    System,
}

impl Delivery {
    /// The value of the `data-state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::System => "system",
        }
    }
}

/// One line of the message list, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// A key unique within the room (the message list keys its rows on it together with `delivery`, so a
    /// row is drawn again when its delivery state changes).
    pub key: String,
    /// Who said it; `None` means "You".
    pub sender: Option<UserName>,
    /// What was said.
    pub text: ChatText,
    /// When.
    pub timestamp: Timestamp,
    /// Its delivery state.
    pub delivery: Delivery,
    /// Its position in the room, once stored.
    pub seq: Option<Seq>,
}

/// Every room's log plus the outbox. A field missing from the saved JSON (e.g. saved by an older version)
/// reads as its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Store {
    rooms: BTreeMap<RoomId, RoomLog>,
    outbox: Vec<Outgoing>,
}

impl Default for Store {
    /// An empty store that has joined the lobby.
    fn default() -> Self {
        // `insert` rather than `BTreeMap::from`, whose bulk building would be one more routine in the
        // wasm.
        let mut rooms = BTreeMap::new();
        rooms.insert(RoomId::lobby(), RoomLog::default());
        Self {
            rooms,
            outbox: Vec::new(),
        }
    }
}

impl Store {
    /// The `join` frames to send after (re)connecting: every known room, from its last seen `seq`.
    pub fn joins(&self) -> Vec<ClientMessage> {
        self.rooms
            .keys()
            .map(|room| ClientMessage::Join {
                room: room.clone(),
                since: self.since(room),
            })
            .collect()
    }

    /// What to join `room` with: the newest `seq` this client has of it, or nothing for a room it has
    /// nothing of (the server then replays the newest page).
    pub fn since(&self, room: &RoomId) -> Option<Seq> {
        self.rooms
            .get(room)
            .map(|log| log.last_seq)
            .filter(|&seq| seq > 0)
    }

    /// Takes in what a frame from the server changes in the store (`chat`, `ack`, `joined`, `history`,
    /// `rooms`, a private room `created`, `left`; other frames change nothing). `me` is the current user.
    /// Returns the rooms to join: those the account's list (`rooms`) names and this store did not have.
    pub fn apply(&mut self, message: ServerMessage, me: Option<&UserName>) -> Vec<RoomId> {
        match message {
            ServerMessage::Chat {
                sender,
                text,
                timestamp,
                room,
                seq,
                id,
            } => {
                let message = Delivered {
                    seq,
                    sender: Some(sender),
                    text,
                    timestamp,
                    id,
                };
                self.receive(&room, message, me);
            }
            ServerMessage::Ack { id, room, seq } => self.ack(&id, &room, seq),
            ServerMessage::Joined { room, head } => self.joined(&room, head),
            ServerMessage::History {
                room,
                messages,
                more,
                ..
            } => self.older(&room, messages, more),
            ServerMessage::Rooms { rooms } => return self.list(rooms),
            ServerMessage::Created {
                room,
                private: true,
            } => self.set_private(&room),
            // Left, or taken out of a private room: it leaves the list.
            ServerMessage::Left { room } => self.forget(&room),
            _ => {}
        }
        Vec::new()
    }

    /// The rooms, by name, with their unread counts.
    pub fn rooms(&self) -> Vec<Listed> {
        self.rooms
            .iter()
            .map(|(room, log)| Listed {
                room: room.clone(),
                unread: log.last_seq.max(log.head).saturating_sub(log.read),
                private: log.private,
            })
            .collect()
    }

    /// The account's room list arrived (from any device): adds the rooms this store lacks and raises what
    /// was read; returns the rooms added, to be joined.
    pub fn list(&mut self, rooms: Vec<shared::RoomSummary>) -> Vec<RoomId> {
        let mut added = Vec::new();
        for summary in rooms {
            if !self.rooms.contains_key(&summary.room) {
                added.push(summary.room.clone());
            }
            let log = self.rooms.entry(summary.room).or_default();
            log.read = log.read.max(summary.last_read);
            log.head = log.head.max(summary.head);
            log.private = summary.private;
        }
        added
    }

    /// The user sees `room` up to its newest message: returns that `seq` when it is news.
    pub fn read_up_to(&mut self, room: &RoomId) -> Option<Seq> {
        let log = self.rooms.get_mut(room)?;
        let newest = log.last_seq.max(log.head);
        (log.read < newest).then(|| {
            log.read = newest;
            newest
        })
    }

    /// `room` is private (this user created it, or it is listed as such).
    pub fn set_private(&mut self, room: &RoomId) {
        self.rooms.entry(room.clone()).or_default().private = true;
    }

    /// Forgets `room` (left, or no longer allowed in); the lobby stays.
    pub fn forget(&mut self, room: &RoomId) {
        if *room != RoomId::lobby() {
            self.rooms.remove(room);
        }
    }

    /// Where the user left `room` scrolled back, if they did (see [`Store::scroll`]).
    pub fn scrolled(&self, room: &RoomId) -> Option<i32> {
        self.rooms.get(room)?.scrolled
    }

    /// The user scrolled `room` back to `from_bottom` pixels from its newest message, or to the newest
    /// (`None`), where it opens again.
    pub fn scroll(&mut self, room: &RoomId, from_bottom: Option<i32>) {
        if let Some(log) = self.rooms.get_mut(room) {
            log.scrolled = from_bottom;
        }
    }

    /// The `before` of the next page of older messages of `room`, while the server may have some.
    pub fn older_than(&self, room: &RoomId) -> Option<Seq> {
        let log = self.rooms.get(room)?;
        let first = log.messages.first()?.seq;
        (first > 1 && !log.complete).then_some(first)
    }

    /// A page of older messages of `room` arrived; `more`: the server has older ones still.
    pub fn older(&mut self, room: &RoomId, page: Vec<shared::HistoryEntry>, more: bool) {
        for entry in page {
            self.insert(
                room,
                Delivered {
                    seq: entry.seq,
                    sender: Some(entry.sender),
                    text: entry.text,
                    timestamp: entry.timestamp,
                    id: entry.id,
                },
            );
        }
        if !more {
            self.rooms.entry(room.clone()).or_default().complete = true;
        }
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

    /// One of our messages that can never be sent (e.g. too big for the server): shown as failed at once.
    pub fn refuse(&mut self, message: Outgoing) {
        self.rooms
            .entry(message.room.clone())
            .or_default()
            .failed
            .push(message);
    }

    /// The server stored our message `id` as `seq`.
    pub fn ack(&mut self, id: &ClientMsgId, room: &RoomId, seq: Seq) {
        self.deliver_own(id, room, seq);
    }

    /// A `chat` frame arrived (live or replayed); `me` is the current user. One sent by `me` to the room of
    /// our outbox entry with its id is that message coming back (from a replay, or from another tab of the
    /// same user): it replaces the pending entry. Only then: another user may reuse the same id.
    pub fn receive(&mut self, room: &RoomId, message: Delivered, me: Option<&UserName>) {
        let own = message.sender.is_some() && message.sender.as_ref() == me;
        let claimed = own
            && message
                .id
                .as_ref()
                .is_some_and(|id| self.deliver_own(id, room, message.seq));
        if !claimed {
            self.insert(room, message);
        }
    }

    /// The server refused our message `id` for good.
    pub fn fail(&mut self, id: &ClientMsgId) {
        if let Some(at) = self.outbox.iter().position(|o| &o.id == id) {
            let out = self.outbox.remove(at);
            self.refuse(out);
        }
    }

    /// What to save when `stored` is what was saved last, possibly by another tab of the same user: this
    /// store with each room's newest [`ROOM_CAP`] messages, plus the outbox entries of `stored` this one
    /// knows nothing about (another tab's pending messages), all in the order they were typed. Without it the last tab to save would erase the other
    /// tabs' pending messages; keeping one too many is harmless, since the server deduplicates by id.
    pub fn merged_with(&self, stored: &Store) -> Store {
        let mut merged = self.clone();
        let theirs = stored.outbox.iter().filter(|o| !self.knows(&o.id));
        merged.outbox.extend(theirs.cloned());
        let order = typed_order(merged.outbox.iter().map(|o| o.created));
        let mut slots: Vec<Option<Outgoing>> = merged.outbox.drain(..).map(Some).collect();
        merged.outbox = order.into_iter().filter_map(|i| slots[i].take()).collect();
        for log in merged.rooms.values_mut() {
            let over = log.messages.len().saturating_sub(ROOM_CAP);
            if over > 0 {
                log.messages.drain(..over);
                log.complete = false;
            }
        }
        merged
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
            seq: Some(m.seq),
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
        let mine: Vec<_> = failed.chain(pending).collect();
        let order = typed_order(mine.iter().map(|(o, _)| o.created));
        delivered
            .chain(
                order
                    .into_iter()
                    .map(|i| mine[i])
                    .map(|(o, delivery)| Shown {
                        key: format!("id-{}", o.id),
                        sender: None,
                        text: o.text.clone(),
                        timestamp: o.created,
                        delivery,
                        seq: None,
                    }),
            )
            .collect()
    }

    /// Moves our outbox entry `id` for `room` into the room's log as `seq`, shown as ours; whether there
    /// was one.
    fn deliver_own(&mut self, id: &ClientMsgId, room: &RoomId, seq: Seq) -> bool {
        let Some(at) = self
            .outbox
            .iter()
            .position(|o| &o.id == id && &o.room == room)
        else {
            return false;
        };
        let out = self.outbox.remove(at);
        let message = Delivered {
            seq,
            sender: None,
            text: out.text,
            timestamp: out.created,
            id: Some(out.id),
        };
        self.insert(room, message);
        true
    }

    /// Whether our message `id` is in the outbox, a room's log, or a room's failed list.
    fn knows(&self, id: &ClientMsgId) -> bool {
        let logged = |l: &RoomLog| {
            l.messages.iter().any(|m| m.id.as_ref() == Some(id))
                || l.failed.iter().any(|o| &o.id == id)
        };
        self.outbox.iter().any(|o| &o.id == id) || self.rooms.values().any(logged)
    }

    fn insert(&mut self, room: &RoomId, message: Delivered) {
        let log = self.rooms.entry(room.clone()).or_default();
        log.last_seq = log.last_seq.max(message.seq);
        if let Err(at) = log.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            log.messages.insert(at, message);
            if log.messages.len() > MEMORY_CAP {
                log.messages.remove(0);
                log.complete = false;
            }
        }
    }
}

/// The positions of messages in the order they were typed (by `created`, then by position). The one sort
/// of the store: an unstable sort with the position as a tie-break orders as a stable one would, and
/// sorting plain keys keeps a single copy of the sort routine in the wasm.
fn typed_order(created: impl Iterator<Item = Timestamp>) -> Vec<usize> {
    let mut keys: Vec<(Timestamp, usize)> = created.zip(0..).collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, i)| i).collect()
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
            store.receive(&room(), theirs(seq, &format!("m{seq}")), None);
        }
        let texts: Vec<_> = summary(&store).into_iter().map(|(t, _)| t).collect();
        assert_eq!(texts, ["m1", "m2", "m3"]);
        assert_eq!(store.rooms[&room()].last_seq, 3);
        assert_eq!(
            store.joins(),
            [ClientMessage::Join {
                room: room(),
                since: Some(3),
            }]
        );
    }

    #[test]
    fn pending_goes_after_delivered_and_becomes_sent_on_ack() {
        let mut store = Store::default();
        store.queue(mine("a", "first", 10));
        store.queue(mine("b", "second", 20));
        store.receive(&room(), theirs(1, "hello"), None);
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

    fn ann() -> UserName {
        UserName::new("ann").expect("valid name")
    }

    #[test]
    fn relayed_copy_of_our_message_replaces_the_pending_one() {
        let mut store = Store::default();
        store.queue(mine("a", "mine", 10));
        let copy = Delivered {
            id: Some(id("a")),
            ..theirs(5, "mine")
        };
        store.receive(&room(), copy, Some(&ann()));
        store.ack(&id("a"), &room(), 5);
        assert_eq!(summary(&store), [("mine".into(), Delivery::Sent)]);
        assert!(store.outbox().is_empty());
    }

    #[test]
    fn only_our_user_in_the_same_room_claims_an_outbox_entry() {
        let mut store = Store::default();
        store.queue(mine("a", "mine", 10));
        let same_id = Delivered {
            id: Some(id("a")),
            ..theirs(5, "someone else's")
        };
        let bob = UserName::new("bob").expect("valid name");
        store.receive(&room(), same_id.clone(), Some(&bob));
        let elsewhere = RoomId::new("elsewhere").expect("valid room");
        store.receive(&elsewhere, Delivered { seq: 1, ..same_id }, Some(&ann()));
        assert_eq!(
            summary(&store),
            [
                ("someone else's".into(), Delivery::Received),
                ("mine".into(), Delivery::Pending)
            ]
        );
        assert_eq!(store.outbox(), [mine("a", "mine", 10)]);
    }

    #[test]
    fn saving_keeps_other_tabs_pending_messages_in_typed_order() {
        let mut ours = Store::default();
        ours.queue(mine("a", "ours", 10));
        ours.queue(mine("c", "acked here", 30));
        ours.ack(&id("c"), &room(), 1);
        let mut stored = Store::default();
        stored.queue(mine("b", "other tab", 20));
        stored.queue(mine("c", "acked here", 30));
        stored.queue(mine("a", "ours", 10));
        let merged = ours.merged_with(&stored);
        let ids: Vec<_> = merged.outbox().iter().map(|o| o.id.to_string()).collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "ours and the unknown one, not the acked one"
        );
        assert_eq!(ours.merged_with(&Store::default()), ours);
    }

    #[test]
    fn a_message_that_can_never_be_sent_fails_at_once() {
        let mut store = Store::default();
        store.refuse(mine("a", "huge", 10));
        assert_eq!(summary(&store), [("huge".into(), Delivery::Failed)]);
        assert!(store.outbox().is_empty());
    }

    #[test]
    fn missing_fields_read_as_defaults() {
        let store: Store = serde_json::from_str(r#"{"outbox": []}"#).expect("deserializes");
        assert_eq!(store, Store::default());
        let log: RoomLog = serde_json::from_str(r#"{"last_seq": 3}"#).expect("deserializes");
        assert_eq!(log.last_seq, 3);
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
            store.receive(&room(), theirs(seq, "x"), None);
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
    fn rooms_are_capped_in_memory_and_more_tightly_in_storage() {
        let mut store = Store::default();
        for seq in 1..=(MEMORY_CAP as Seq + 10) {
            store.receive(&room(), theirs(seq, "x"), None);
        }
        let shown = store.shown(&room());
        assert_eq!(shown.len(), MEMORY_CAP);
        assert_eq!(shown[0].key, "seq-11");
        let saved = store.merged_with(&Store::default());
        let kept = saved.shown(&room());
        assert_eq!(kept.len(), ROOM_CAP);
        assert_eq!(
            kept[0].key,
            format!("seq-{}", MEMORY_CAP + 10 - ROOM_CAP + 1)
        );
        assert_eq!(
            saved.older_than(&room()),
            Some((MEMORY_CAP + 10 - ROOM_CAP + 1) as Seq)
        );
    }

    fn entry(seq: Seq) -> shared::HistoryEntry {
        let d = theirs(seq, &format!("m{seq}"));
        shared::HistoryEntry {
            seq,
            sender: d.sender.expect("theirs"),
            text: d.text,
            timestamp: d.timestamp,
            id: None,
        }
    }

    #[test]
    fn a_new_room_joins_for_the_newest_page_and_pages_back_to_the_first_message() {
        let mut store = Store::default();
        assert_eq!(
            store.joins(),
            [ClientMessage::Join {
                room: room(),
                since: None
            }],
            "nothing of the room yet: the server sends its newest page"
        );
        assert_eq!(store.older_than(&room()), None, "nothing to page back from");
        for seq in 51..=100 {
            store.receive(&room(), theirs(seq, &format!("m{seq}")), None);
        }
        assert_eq!(store.older_than(&room()), Some(51));
        store.older(&room(), (1..=50).skip(25).map(entry).collect(), true);
        assert_eq!(store.older_than(&room()), Some(26));
        store.older(&room(), (1..=25).map(entry).collect(), false);
        assert_eq!(
            store.older_than(&room()),
            None,
            "the first message is there"
        );
        let texts: Vec<_> = summary(&store).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            texts,
            (1..=100).map(|s| format!("m{s}")).collect::<Vec<_>>()
        );
        assert_eq!(
            store.since(&room()),
            Some(100),
            "older pages leave the join point"
        );

        // A room whose retention dropped its start says so with `more: false` before seq 1.
        let other = RoomId::new("kept").expect("room");
        store.receive(&other, theirs(500, "late"), None);
        store.older(&other, vec![entry(499)], false);
        assert_eq!(store.older_than(&other), None);
    }

    #[test]
    fn the_room_list_adds_rooms_counts_unread_and_reading_clears_it() {
        let mut store = Store::default();
        let dev = RoomId::new("dev").expect("room");
        let team = RoomId::new("team").expect("room");
        let summary = |room: &RoomId, last_read, head, private| shared::RoomSummary {
            room: room.clone(),
            last_read,
            head,
            private,
        };
        let added = store.list(vec![
            summary(&room(), 0, 0, false),
            summary(&dev, 40, 42, false),
            summary(&team, 0, 3, true),
        ]);
        assert_eq!(
            added,
            [dev.clone(), team.clone()],
            "the lobby was there already"
        );
        assert_eq!(
            store.since(&dev),
            None,
            "a listed room still joins for its newest page"
        );
        let unread: Vec<_> = store
            .rooms()
            .iter()
            .map(|r| (r.room.to_string(), r.unread, r.private))
            .collect();
        assert_eq!(
            unread,
            [
                ("dev".into(), 2, false),
                ("lobby".into(), 0, false),
                ("team".into(), 3, true)
            ]
        );
        store.receive(&dev, theirs(43, "new"), None);
        assert_eq!(store.rooms()[0].unread, 3);
        assert_eq!(store.read_up_to(&dev), Some(43));
        assert_eq!(store.read_up_to(&dev), None, "nothing new");
        assert_eq!(store.rooms()[0].unread, 0);
        store.forget(&team);
        store.forget(&room());
        assert_eq!(store.rooms().len(), 2, "team is gone, the lobby stays");
    }

    #[test]
    fn persistence_round_trips() {
        let mut store = Store::default();
        store.receive(&room(), theirs(1, "hello"), None);
        store.queue(mine("a", "unsent", 10));
        store.queue(mine("b", "refused", 11));
        store.fail(&id("b"));
        let json = serde_json::to_string(&store).expect("serializes");
        assert!(json.contains("\"unsent\""), "{json}");
        let back: Store = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, store);
    }
}
