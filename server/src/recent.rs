//! The newest messages of a room, as the frames that were delivered, kept in memory so that a `join`
//! replays them without reading history or serializing anything again.
//!
//! The [`crate::sequencer::Sequencer`] keeps one [`Recent`] per room it follows and pushes each message
//! as it delivers it, in `seq` order, so the frames held are always the room's last ones without a hole:
//! those after `delivered - len` up to `delivered`. Whatever breaks that (messages skipped because history
//! no longer has them) empties it. A `join` whose `since` falls inside gets the frames from here, one
//! whose `since` is older (or a room not followed, or a node just started) reads history as before; both
//! end at the same position, so the client cannot tell them apart.
//!
//! Bounded three ways: [`FRAMES`] per room (fewer when retention keeps fewer messages, so nothing
//! retention deleted is replayed from here), [`ROOM_BYTES`] per room, and [`TOTAL_BYTES`] over all rooms
//! (a room pushing past it drops its own oldest frames). Frames older than an age retention are dropped
//! when retention runs ([`Recent::forget_before`]).

use crate::mailbox::Published;
use shared::{Seq, Timestamp};
use std::{collections::VecDeque, sync::Arc};

/// Most frames kept per room (a replay page's worth).
pub const FRAMES: usize = 256;
/// Most bytes of frames kept per room.
pub const ROOM_BYTES: usize = 64 * 1024;
/// Most bytes of frames kept over all rooms.
pub const TOTAL_BYTES: usize = 64 << 20;

/// One room's newest frames, oldest first (see the module docs).
#[derive(Debug, Default)]
pub struct Recent {
    frames: VecDeque<Arc<Published>>,
    bytes: usize,
}

impl Recent {
    /// Appends `message`, the room's next after the last one pushed, keeping at most `keep` frames;
    /// `total` counts the bytes of every room's frames. Dropped frames are the oldest.
    pub fn push(&mut self, message: &Arc<Published>, keep: usize, total: &mut usize) {
        let size = message.frame.len();
        if keep == 0 || size > ROOM_BYTES {
            self.clear(total);
            return;
        }
        while !self.frames.is_empty()
            && (self.frames.len() >= keep
                || self.bytes + size > ROOM_BYTES
                || *total + size > TOTAL_BYTES)
        {
            self.pop(total);
        }
        if *total + size > TOTAL_BYTES {
            return;
        }
        self.bytes += size;
        *total += size;
        self.frames.push_back(Arc::clone(message));
    }

    /// The frames after `since`, if every one of them is here, given that the last pushed is `delivered`.
    pub fn after(&self, since: Seq, delivered: Seq) -> Option<Vec<Arc<Published>>> {
        let first = (delivered + 1).saturating_sub(self.frames.len() as Seq);
        if since > delivered || since + 1 < first {
            return None;
        }
        Some(
            self.frames
                .range((since + 1 - first) as usize..)
                .cloned()
                .collect(),
        )
    }

    /// The newest `count` frames within `bytes`, if that is the room's newest page: there are that many,
    /// or these are all of the room's messages (`delivered`, the last pushed, is how many it ever had).
    pub fn newest(
        &self,
        count: usize,
        bytes: usize,
        delivered: Seq,
    ) -> Option<Vec<Arc<Published>>> {
        if self.frames.len() < count && self.frames.len() as Seq != delivered {
            return None;
        }
        let mut taken = 0;
        let mut size = 0;
        for frame in self.frames.iter().rev().take(count) {
            size += frame.frame.len();
            if size > bytes && taken > 0 {
                break;
            }
            taken += 1;
        }
        let from = self.frames.len() - taken;
        Some(self.frames.range(from..).cloned().collect())
    }

    /// Drops the frames of messages sent before `cutoff`.
    pub fn forget_before(&mut self, cutoff: Timestamp, total: &mut usize) {
        while self.frames.front().is_some_and(|f| f.timestamp < cutoff) {
            self.pop(total);
        }
    }

    /// Drops every frame.
    pub fn clear(&mut self, total: &mut usize) {
        *total -= self.bytes;
        self.bytes = 0;
        self.frames.clear();
    }

    fn pop(&mut self, total: &mut usize) {
        if let Some(frame) = self.frames.pop_front() {
            self.bytes -= frame.frame.len();
            *total -= frame.frame.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::RoomId;

    /// A message whose frame is `size` bytes (header included: that is what is held).
    fn frame(seq: Seq, size: usize) -> Arc<Published> {
        let header = if size - 2 <= 125 { 2 } else { 4 };
        let published = Published::new(
            RoomId::lobby(),
            seq,
            Timestamp::from_unix_ms(seq as i64 * 1000),
            &"x".repeat(size - header),
        );
        assert_eq!(published.frame.len(), size);
        published
    }

    fn seqs(frames: Option<Vec<Arc<Published>>>) -> Option<Vec<Seq>> {
        frames.map(|f| f.iter().map(|p| p.seq).collect())
    }

    #[test]
    fn replays_what_it_holds_and_nothing_it_does_not() {
        let (mut recent, mut total) = (Recent::default(), 0);
        for seq in 11..=15 {
            recent.push(&frame(seq, 10), 4, &mut total);
        }
        assert_eq!(total, 40, "the oldest went past 4 frames");
        assert_eq!(seqs(recent.after(12, 15)), Some(vec![13, 14, 15]));
        assert_eq!(seqs(recent.after(11, 15)), Some(vec![12, 13, 14, 15]));
        assert_eq!(seqs(recent.after(15, 15)), Some(vec![]), "nothing missed");
        assert_eq!(seqs(recent.after(10, 15)), None, "11 is no longer here");
        assert_eq!(
            seqs(recent.after(16, 15)),
            None,
            "ahead of what was delivered"
        );
        // The newest page: here when there are enough frames, or when they are the room's every message.
        assert_eq!(seqs(recent.newest(3, 1 << 20, 15)), Some(vec![13, 14, 15]));
        assert_eq!(
            seqs(recent.newest(5, 1 << 20, 15)),
            None,
            "1 to 11 are elsewhere"
        );
        let (mut young, mut young_total) = (Recent::default(), 0);
        young.push(&frame(1, 10), 4, &mut young_total);
        assert_eq!(seqs(young.newest(50, 1 << 20, 1)), Some(vec![1]));
        assert_eq!(seqs(Recent::default().newest(50, 1 << 20, 0)), Some(vec![]));
        // Within the bytes of a page, and at least one frame.
        assert_eq!(seqs(recent.newest(3, 25, 15)), Some(vec![14, 15]));
        assert_eq!(seqs(recent.newest(3, 5, 15)), Some(vec![15]));
    }

    #[test]
    fn bounded_per_room_over_all_rooms_and_by_age() {
        let mut total = 0;
        let mut big = Recent::default();
        for seq in 1..=5 {
            big.push(&frame(seq, ROOM_BYTES / 2), FRAMES, &mut total);
        }
        assert_eq!(seqs(big.after(3, 5)), Some(vec![4, 5]), "two halves fit");
        assert_eq!(total, ROOM_BYTES);
        big.push(&frame(6, ROOM_BYTES + 1), FRAMES, &mut total);
        assert_eq!(
            (seqs(big.after(5, 6)), total),
            (None, 0),
            "too large: emptied"
        );

        let mut full = TOTAL_BYTES - 30;
        let mut room = Recent::default();
        for seq in 1..=4 {
            room.push(&frame(seq, 10), FRAMES, &mut full);
        }
        assert_eq!(
            seqs(room.after(1, 4)),
            Some(vec![2, 3, 4]),
            "its own oldest made room"
        );
        assert_eq!(full, TOTAL_BYTES);
        let mut none = 0;
        let mut off = Recent::default();
        off.push(&frame(1, 10), 0, &mut none);
        assert_eq!(
            (seqs(off.after(0, 1)), none),
            (None, 0),
            "keep 0: nothing kept"
        );

        room.forget_before(Timestamp::from_unix_ms(3_500), &mut full);
        assert_eq!(seqs(room.after(3, 4)), Some(vec![4]));
        assert_eq!(seqs(room.after(2, 4)), None, "3 was older than the cutoff");
        room.clear(&mut full);
        assert_eq!(full, TOTAL_BYTES - 30);
    }
}
