//! What is happening in each room right now that is not history: who is there and who is typing.
//! Ephemeral, as on the server: never saved, never replayed, gone after a reload. It lives apart from
//! the [`Store`](crate::store::Store) (which is saved to localStorage on every change) in a signal of its
//! own, so a presence or typing frame does not rewrite the saved history. Pure data with no I/O, so it is
//! unit-tested natively; the time is passed in.
//!
//! Presence is the server's last `presence` frame for the room (a count, and the names while the room
//! has at most [`shared::PRESENCE_NAMES`] users; two tabs of one user count once). A typing notice holds
//! until it lapses (`expires_ms` after it arrived) or the user's next message arrives.

use shared::{RoomId, UserName};

/// Who is typing where (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Here {
    /// Room, user, and until when (`Date.now()` milliseconds), in the order the notices came.
    typing: Vec<(RoomId, UserName, i64)>,
    /// Each room's last `presence` frame: how many users, and their names (all of them up to
    /// [`shared::PRESENCE_NAMES`]).
    presence: Vec<(RoomId, u32, Vec<UserName>)>,
}

impl Here {
    /// A `presence` frame for `room`: it replaces the last one.
    pub fn presence(&mut self, room: &RoomId, count: u32, users: Vec<UserName>) {
        self.presence.retain(|(r, ..)| r != room);
        self.presence.push((room.clone(), count, users));
    }

    /// How many users are in `room`, and the names the server listed, once it said.
    pub fn present(&self, room: &RoomId) -> Option<(u32, &[UserName])> {
        self.presence
            .iter()
            .find(|(r, ..)| r == room)
            .map(|(_, count, users)| (*count, users.as_slice()))
    }

    /// "3 here: ann, bob, cat" (every name the server listed), "70 here" past the names it lists, or ""
    /// before the server said.
    pub fn presence_line(&self, room: &RoomId) -> String {
        let Some((count, users)) = self.present(room) else {
            return String::new();
        };
        let mut line = count.to_string();
        line.push_str(" here");
        for (i, user) in users.iter().enumerate() {
            line.push_str(if i == 0 { ": " } else { ", " });
            line.push_str(user.as_str());
        }
        line
    }

    /// `user` is typing in `room` until `until` (`Date.now()` milliseconds); `None`: stopped (a message
    /// of theirs arrived).
    pub fn typing(&mut self, room: &RoomId, user: &UserName, until: Option<i64>) {
        self.typing.retain(|(r, u, _)| !(r == room && u == user));
        if let Some(until) = until {
            self.typing.push((room.clone(), user.clone(), until));
        }
    }

    /// Whether a typing notice ended by `now` (looked at before [`Here::lapse`], so that nothing is
    /// written, and nothing redrawn, when nothing ended).
    pub fn lapsed(&self, now: i64) -> bool {
        self.typing.iter().any(|(_, _, until)| *until <= now)
    }

    /// Forgets the typing notices that ended by `now`.
    pub fn lapse(&mut self, now: i64) {
        self.typing.retain(|(_, _, until)| *until > now);
    }

    /// Who is typing in `room`, in the order they started.
    pub fn typists(&self, room: &RoomId) -> Vec<&UserName> {
        self.typing
            .iter()
            .filter(|(r, _, _)| r == room)
            .map(|(_, user, _)| user)
            .collect()
    }

    /// "ann is typing…", "ann, bob and cat are typing…", or "" when nobody is typing in `room`. (Built
    /// with `push_str` rather than `format!` and `join`: this is in the page's wasm.)
    pub fn typing_line(&self, room: &RoomId) -> String {
        let names = self.typists(room);
        let mut line = String::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                line.push_str(if i + 1 == names.len() { " and " } else { ", " });
            }
            line.push_str(name.as_str());
        }
        match names.len() {
            0 => {}
            1 => line.push_str(" is typing…"),
            _ => line.push_str(" are typing…"),
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> UserName {
        UserName::new(n).expect("name")
    }

    fn room(r: &str) -> RoomId {
        RoomId::new(r).expect("room")
    }

    #[test]
    fn presence_is_the_last_frame_of_each_room() {
        let mut here = Here::default();
        let (lobby, dev) = (room("lobby"), room("dev"));
        assert_eq!(here.present(&lobby), None, "not said yet");
        here.presence(&lobby, 2, vec![name("ann"), name("bob")]);
        here.presence(&dev, 70, vec![name("cat")]);
        here.presence(&lobby, 1, vec![name("ann")]);
        assert_eq!(here.present(&lobby), Some((1, &[name("ann")][..])));
        assert_eq!(
            here.present(&dev),
            Some((70, &[name("cat")][..])),
            "per room"
        );
    }

    #[test]
    fn typing_notices_hold_until_they_lapse_or_a_message_comes() {
        let mut here = Here::default();
        let (lobby, dev) = (room("lobby"), room("dev"));
        let (ann, bob) = (name("ann"), name("bob"));
        here.typing(&lobby, &ann, Some(5_000));
        here.typing(&lobby, &bob, Some(6_000));
        here.typing(&dev, &bob, Some(9_000));
        assert_eq!(here.typists(&lobby), [&ann, &bob]);
        here.typing(&lobby, &ann, Some(8_000)); // again: moves on, not twice
        assert_eq!(here.typists(&lobby), [&bob, &ann]);
        assert_eq!(here.typing_line(&lobby), "bob and ann are typing…");
        here.typing(&lobby, &name("cat"), Some(9_000));
        assert_eq!(here.typing_line(&lobby), "bob, ann and cat are typing…");
        here.typing(&lobby, &name("cat"), None);
        assert!(!here.lapsed(5_500), "nothing ended yet");
        assert!(here.lapsed(6_000));
        here.lapse(6_000);
        assert_eq!(here.typists(&lobby), [&ann]);
        assert_eq!(here.typing_line(&lobby), "ann is typing…");
        here.typing(&lobby, &ann, None);
        assert!(here.typists(&lobby).is_empty());
        assert_eq!(here.typing_line(&lobby), "");
        assert_eq!(here.typists(&dev), [&bob], "per room");
        here.typing(&room("ops"), &ann, None);
        assert!(here.typists(&room("ops")).is_empty());
    }
}
