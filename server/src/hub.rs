//! Who is in which room on this node, and fan-out to them.
//!
//! The hub maps each room to the mailboxes of the connections in it. Publishing a message takes the
//! room's members under a read lock (never held across an await) and pushes the same [`Published`] — one
//! allocation, one serialization — into every member's [`Mailbox`] except the sender's. A full mailbox never
//! blocks the others: the slow connection is told to close instead (see [`crate::mailbox`]).
//!
//! Each entry also names the connection's user, so that when a private room changes hands or a member is
//! removed, [`Hub::evict`] takes exactly the connections no longer allowed out of the room, and so that
//! ephemeral notices (someone is typing: [`Hub::announce`]) skip the user they are about.

use crate::mailbox::{Mailbox, Outbound, Published};
use shared::{RoomId, ServerMessage, UserName};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard},
};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How long a `typing` notice holds on the clients (they send one every few seconds while typing).
pub const TYPING_EXPIRES_MS: u32 = 5_000;

/// A connection's id, unique within this node's lifetime.
pub type ConnId = u64;

/// Room membership of this node's connections.
#[derive(Debug, Default)]
pub struct Hub {
    rooms: RwLock<HashMap<RoomId, Room>>,
    /// Rooms whose set of users changed since [`Hub::take_changed`] last ran (see [`crate::presence`]).
    changed: Mutex<HashSet<RoomId>>,
}

/// One room's connections here.
#[derive(Debug, Default)]
struct Room {
    members: Vec<Member>,
    /// How many of `members` each user has: its keys are the room's distinct users, kept as members
    /// come and go so that no join or leave counts them again.
    users: HashMap<UserName, usize>,
    /// The `presence` frame last announced here, for joiners: computing one per join would pass over
    /// the members each time, quadratic in a reconnect storm.
    announced: Option<Utf8Bytes>,
}

/// One connection in a room.
#[derive(Debug)]
struct Member {
    conn: ConnId,
    user: UserName,
    mailbox: Mailbox,
    /// Sent `presence` frames: the connection joined the room itself (not the lobby every connection is
    /// put in, which keeps the article's page free of frames it does not know).
    presence: bool,
}

impl Hub {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<RoomId, Room>> {
        self.rooms.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<RoomId, Room>> {
        self.rooms.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The connections in `room` (none if nobody here is in it).
    fn members<'a>(
        rooms: &'a HashMap<RoomId, Room>,
        room: &RoomId,
    ) -> impl Iterator<Item = &'a Member> {
        rooms.get(room).into_iter().flat_map(|r| &r.members)
    }

    /// Adds connection `conn` of `user` to `room` (no-op if already there).
    pub fn join(&self, room: &RoomId, conn: ConnId, user: &UserName, mailbox: &Mailbox) {
        let mut rooms = self.write();
        let here = rooms.entry(room.clone()).or_default();
        if !here.members.iter().any(|m| m.conn == conn) {
            let tabs = here.users.entry(user.clone()).or_default();
            *tabs += 1;
            if *tabs == 1 {
                self.mark_changed(room);
            }
            here.members.push(Member {
                conn,
                user: user.clone(),
                mailbox: mailbox.clone(),
                presence: false,
            });
        }
    }

    /// Removes connection `conn` from `room`; forgets the room when it empties.
    pub fn leave(&self, room: &RoomId, conn: ConnId) {
        self.remove_where(room, |m| m.conn == conn);
    }

    /// Takes every connection whose user `allowed` refuses out of `room`, telling each (so that it stops
    /// expecting the room and says `left`).
    pub fn evict(&self, room: &RoomId, allowed: impl Fn(&UserName) -> bool) {
        self.remove_where(room, |m| {
            let out = !allowed(&m.user);
            if out {
                m.mailbox.push(Outbound::Evicted(room.clone()));
            }
            out
        });
    }

    fn remove_where(&self, room: &RoomId, mut out: impl FnMut(&Member) -> bool) {
        let mut rooms = self.write();
        let Some(here) = rooms.get_mut(room) else {
            return;
        };
        let Room { members, users, .. } = here;
        let mut someone_left = false;
        members.retain(|m| {
            if !out(m) {
                return true;
            }
            // A user whose last connection left is no longer present.
            if let Some(tabs) = users.get_mut(&m.user) {
                *tabs -= 1;
                if *tabs == 0 {
                    users.remove(&m.user);
                    someone_left = true;
                }
            }
            false
        });
        if someone_left {
            self.mark_changed(room);
        }
        if here.members.is_empty() {
            rooms.remove(room);
        }
    }

    fn mark_changed(&self, room: &RoomId) {
        self.changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room.clone());
    }

    /// The rooms whose set of users changed since the last call.
    pub fn take_changed(&self) -> Vec<RoomId> {
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        changed.drain().collect()
    }

    /// The distinct users with a connection in `room` here: how many, and the first `names` of them (in
    /// the order they came).
    pub fn users(&self, room: &RoomId, names: usize) -> (usize, Vec<UserName>) {
        let rooms = self.read();
        let count = rooms.get(room).map_or(0, |r| r.users.len());
        let wanted = names.min(count);
        let mut first: Vec<UserName> = Vec::with_capacity(wanted);
        for member in Self::members(&rooms, room) {
            if first.len() == wanted {
                break;
            }
            if !first.contains(&member.user) {
                first.push(member.user.clone());
            }
        }
        (count, first)
    }

    /// Connection `conn` joined `room` itself: it gets the room's `presence` frames from now on.
    pub fn want_presence(&self, room: &RoomId, conn: ConnId) {
        let mut rooms = self.write();
        for member in rooms.get_mut(room).into_iter().flat_map(|r| &mut r.members) {
            if member.conn == conn {
                member.presence = true;
            }
        }
    }

    /// The `presence` frame last announced in `room`, if any.
    pub fn last_presence(&self, room: &RoomId) -> Option<Utf8Bytes> {
        self.read().get(room)?.announced.clone()
    }

    /// Delivers the `presence` `frame` to every connection in `room` that wants it, and keeps it for
    /// the room's next joiners.
    pub fn announce_presence(&self, room: &RoomId, frame: &Utf8Bytes) {
        let mut rooms = self.write();
        let Some(here) = rooms.get_mut(room) else {
            return;
        };
        here.announced = Some(frame.clone());
        for member in here.members.iter().filter(|m| m.presence) {
            member.mailbox.push(Outbound::Direct(frame.clone()));
        }
    }

    /// Delivers `message` to every connection in its room except `except`.
    pub fn publish(&self, message: &Arc<Published>, except: Option<ConnId>) {
        let rooms = self.read();
        for member in Self::members(&rooms, &message.room) {
            if Some(member.conn) != except {
                member.mailbox.push(Outbound::Delivery(Arc::clone(message)));
            }
        }
    }

    /// Delivers the ephemeral `frame` (serialized once) to every connection in `room` whose user is not
    /// `from` (a user's own tabs do not hear about themselves).
    pub fn announce(&self, room: &RoomId, frame: &Utf8Bytes, from: &UserName) {
        let rooms = self.read();
        for member in Self::members(&rooms, room) {
            if member.user != *from {
                member.mailbox.push(Outbound::Direct(frame.clone()));
            }
        }
    }

    /// The ephemeral `typing` frame for `user` in `room`, ready for [`Hub::announce`].
    pub fn typing_frame(room: &RoomId, user: &UserName) -> Utf8Bytes {
        ServerMessage::Typing {
            room: room.clone(),
            user: user.clone(),
            expires_ms: TYPING_EXPIRES_MS,
        }
        .to_json()
        .into()
    }

    /// Bytes queued in the mailboxes of every connection in any room (each connection counted once).
    pub fn queued_bytes(&self) -> usize {
        let rooms = self.read();
        let mut seen = HashSet::new();
        rooms
            .values()
            .flat_map(|r| &r.members)
            .filter(|m| seen.insert(m.conn))
            .map(|m| m.mailbox.queued())
            .sum()
    }

    /// The rooms that have connections.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.read().keys().cloned().collect()
    }

    /// How many connections are in `room`.
    pub fn member_count(&self, room: &RoomId) -> usize {
        self.read().get(room).map_or(0, |r| r.members.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::mailbox;

    fn published(room: &RoomId, seq: u64) -> Arc<Published> {
        Published::new(room.clone(), seq, shared::Timestamp::from_unix_ms(0), "{}")
    }

    #[tokio::test]
    async fn publish_skips_the_sender_and_other_rooms() {
        let hub = Hub::default();
        let lobby = RoomId::lobby();
        let dev = RoomId::new("dev").expect("room");
        let (a, mut ra) = mailbox(1024);
        let (b, mut rb) = mailbox(1024);
        let (c, mut rc) = mailbox(1024);
        let ann = UserName::new("ann").expect("name");
        hub.join(&lobby, 1, &ann, &a);
        hub.join(&lobby, 2, &ann, &b);
        hub.join(&lobby, 2, &ann, &b);
        hub.join(&dev, 3, &ann, &c);
        assert_eq!(hub.member_count(&lobby), 2);

        hub.publish(&published(&lobby, 1), Some(1));
        assert!(ra.try_recv().is_none());
        assert!(matches!(rb.try_recv(), Some(Outbound::Delivery(p)) if p.seq == 1));
        assert!(rb.try_recv().is_none(), "joined twice, delivered once");
        assert!(rc.try_recv().is_none());

        hub.leave(&lobby, 2);
        hub.publish(&published(&lobby, 2), Some(1));
        assert!(rb.try_recv().is_none());
        hub.leave(&lobby, 1);
        assert_eq!(hub.member_count(&lobby), 0);
    }

    #[test]
    fn users_count_once_per_user_and_change_only_with_a_first_or_last_connection() {
        let hub = Hub::default();
        let room = RoomId::new("dev").expect("room");
        let (m, _r) = mailbox(1024);
        let (ann, bob) = (
            UserName::new("ann").expect("name"),
            UserName::new("bob").expect("name"),
        );
        hub.join(&room, 1, &ann, &m);
        hub.join(&room, 2, &ann, &m);
        hub.join(&room, 3, &bob, &m);
        assert_eq!(hub.users(&room, 50), (2, vec![ann.clone(), bob.clone()]));
        assert_eq!(
            hub.users(&room, 1),
            (2, vec![ann.clone()]),
            "named up to the limit"
        );
        assert_eq!(hub.take_changed(), vec![room.clone()]);
        hub.leave(&room, 1);
        assert!(
            hub.take_changed().is_empty(),
            "ann is still here in another tab"
        );
        hub.evict(&room, |u| *u != ann);
        assert_eq!(hub.take_changed(), vec![room.clone()]);
        assert_eq!(hub.users(&room, 50), (1, vec![bob]));
    }
}
