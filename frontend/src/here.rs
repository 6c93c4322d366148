//! What is happening in each room right now that is not history: who is there and who is typing.
//! Ephemeral, as on the server: never saved, never replayed, gone after a reload. It lives apart from
//! the [`Store`](crate::store::Store) (which is saved to localStorage on every change) in a signal of its
//! own, so a presence or typing frame does not rewrite the saved history. Pure data with no I/O, so it is
//! unit-tested natively; the time is passed in.
//!
//! Presence is the server's last `presence` frame for the room (a count, and the names while the room
//! has at most [`shared::PRESENCE_NAMES`] users; two tabs of one user count once). From the second frame
//! on, names that came or went become quiet lines in the timeline ("ann joined", "bob left"), the newest
//! [`LINES`] kept; a crowd (a count without every name) gives none, so a reconnect storm is not a storm
//! of lines. A typing notice holds until it lapses (`expires_ms` after it arrived) or the user's next
//! message arrives.

use crate::store::{Delivery, Shown};
use shared::{ChatText, RoomId, Timestamp, UserName};

/// How many join and leave lines are kept (over all rooms; the oldest go first).
pub const LINES: usize = 50;

/// Who is typing where (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Here {
    /// Room, user, and until when (`Date.now()` milliseconds), in the order the notices came.
    typing: Vec<(RoomId, UserName, i64)>,
    /// Each room's last `presence` frame: how many users, and their names (all of them up to
    /// [`shared::PRESENCE_NAMES`]).
    presence: Vec<(RoomId, u32, Vec<UserName>)>,
    /// Join and leave lines, each with its room, as they are shown.
    lines: Vec<(RoomId, Shown)>,
    /// The number of the last line.
    counted: u64,
}

impl Here {
    /// A `presence` frame for `room` arrived at `now`: it replaces the last one, and what changed
    /// between two full lists of names, except for `me` (the reader), becomes lines.
    pub fn presence(
        &mut self,
        room: &RoomId,
        count: u32,
        users: Vec<UserName>,
        me: Option<&UserName>,
        now: Timestamp,
    ) {
        let full = |count: u32, users: &[UserName]| count as usize == users.len();
        if let Some((before_count, before)) = self.present(room)
            && full(before_count, before)
            && full(count, &users)
        {
            let missing = |from: &[UserName], what: &'static str, to: &[UserName]| {
                from.iter()
                    .filter(|u| !to.contains(u) && Some(*u) != me)
                    .map(move |u| format!("{u} {what}"))
                    .collect::<Vec<_>>()
            };
            let mut texts = missing(&users, "joined", before);
            texts.extend(missing(before, "left", &users));
            for text in texts.into_iter().filter_map(|t| ChatText::new(t).ok()) {
                self.counted += 1;
                let line = Shown {
                    key: format!("line-{}", self.counted),
                    sender: None,
                    text,
                    timestamp: now,
                    delivery: Delivery::System,
                    seq: None,
                };
                self.lines.push((room.clone(), line));
            }
            let over = self.lines.len().saturating_sub(LINES);
            self.lines.drain(..over);
        }
        self.presence.retain(|(r, ..)| r != room);
        self.presence.push((room.clone(), count, users));
    }

    /// Puts `room`'s join and leave lines among `shown` (the room's messages, in order) by time, each
    /// after the messages of its time or before.
    pub fn add_lines(&self, room: &RoomId, shown: &mut Vec<Shown>) {
        for (_, line) in self.lines.iter().filter(|(r, _)| r == room) {
            let place = shown.partition_point(|s| s.timestamp <= line.timestamp);
            shown.insert(place, line.clone());
        }
    }

    /// How many users are in `room`, and the names the server listed, once it said.
    pub fn present(&self, room: &RoomId) -> Option<(u32, &[UserName])> {
        self.presence
            .iter()
            .find(|(r, ..)| r == room)
            .map(|(_, count, users)| (*count, users.as_slice()))
    }

    /// "3 here: ann, bob, cat" (every name the server listed), "70 here" past the names it lists, or ""
    /// before the server said; as HTML, each name in its own `presence-user` element. A [`UserName`] is
    /// letters, digits, `_` and `-` only, so no name can be markup. (One element per name built as a
    /// view costs 1.2 KB more of a first visit than this one string.)
    pub fn presence_html(&self, room: &RoomId) -> String {
        let Some((count, users)) = self.present(room) else {
            return String::new();
        };
        let mut line = count.to_string();
        line.push_str(" here");
        for (i, user) in users.iter().enumerate() {
            line.push_str(if i == 0 { ": " } else { ", " });
            line.push_str("<b data-testid=presence-user>");
            line.push_str(user.as_str());
            line.push_str("</b>");
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

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    fn line_texts(here: &Here, r: &RoomId) -> Vec<String> {
        let mut shown = Vec::new();
        here.add_lines(r, &mut shown);
        shown.iter().map(|s| s.text.as_str().to_owned()).collect()
    }

    #[test]
    fn presence_is_the_last_frame_of_each_room() {
        let mut here = Here::default();
        let (lobby, dev) = (room("lobby"), room("dev"));
        assert_eq!(here.present(&lobby), None, "not said yet");
        here.presence(&lobby, 2, vec![name("ann"), name("bob")], None, at(1));
        here.presence(&dev, 70, vec![name("cat")], None, at(1));
        here.presence(&lobby, 1, vec![name("ann")], None, at(2));
        assert_eq!(here.present(&lobby), Some((1, &[name("ann")][..])));
        assert_eq!(
            here.present(&dev),
            Some((70, &[name("cat")][..])),
            "per room"
        );
        here.presence(
            &lobby,
            3,
            vec![name("ann"), name("bob"), name("cat")],
            None,
            at(3),
        );
        assert_eq!(
            here.presence_html(&lobby),
            "3 here: <b data-testid=presence-user>ann</b>, <b data-testid=presence-user>bob</b>, \
             <b data-testid=presence-user>cat</b>"
        );
        here.presence(&dev, 70, vec![], None, at(3));
        assert_eq!(here.presence_html(&dev), "70 here", "a crowd: its count");
        assert_eq!(here.presence_html(&room("ops")), "");
    }

    #[test]
    fn changes_between_full_lists_become_lines_among_the_messages_by_time() {
        let mut here = Here::default();
        let lobby = room("lobby");
        here.presence(&lobby, 2, vec![name("ann"), name("bob")], None, at(1_000));
        assert!(
            line_texts(&here, &lobby).is_empty(),
            "the first frame is how it was"
        );
        here.presence(&lobby, 2, vec![name("ann"), name("cat")], None, at(2_000));
        assert_eq!(line_texts(&here, &lobby), ["cat joined", "bob left"]);
        // The reader's own coming and going is no line for them.
        let dan = name("dan");
        let with_dan = vec![name("ann"), name("cat"), dan.clone()];
        here.presence(&lobby, 3, with_dan, Some(&dan), at(2_000));
        here.presence(
            &lobby,
            2,
            vec![name("ann"), name("cat")],
            Some(&dan),
            at(2_000),
        );
        assert_eq!(line_texts(&here, &lobby).len(), 2, "none for dan");
        // Among messages: after those of its time or before, before later ones.
        let message = |ms| Shown {
            key: format!("m{ms}"),
            sender: Some(name("ann")),
            text: ChatText::new("hi").expect("text"),
            timestamp: at(ms),
            delivery: Delivery::Received,
            seq: Some(1),
        };
        let mut shown = vec![message(1_500), message(2_000), message(2_500)];
        here.add_lines(&lobby, &mut shown);
        let order: Vec<&str> = shown.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(order, ["m1500", "m2000", "line-1", "line-2", "m2500"]);
        assert!(shown[2].delivery == Delivery::System && shown[2].sender.is_none());
        // A crowd gives no lines, in or out of it.
        let crowd: Vec<UserName> = (0..50).map(|i| name(&format!("u{i}"))).collect();
        here.presence(&lobby, 60, crowd.clone(), None, at(3_000));
        here.presence(&lobby, 61, crowd, None, at(4_000));
        here.presence(&lobby, 1, vec![name("ann")], None, at(5_000));
        assert_eq!(line_texts(&here, &lobby).len(), 2);
        assert!(line_texts(&here, &room("dev")).is_empty(), "per room");
        // The newest are kept.
        for i in 0..LINES {
            here.presence(&lobby, 0, vec![], None, at(6_000));
            here.presence(&lobby, 1, vec![name(&format!("v{i}"))], None, at(6_000));
        }
        let texts = line_texts(&here, &lobby);
        assert_eq!(texts.len(), LINES);
        assert_eq!(texts.last().map(String::as_str), Some("v49 joined"));
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
