//! Who is in which room: the `presence` frames.
//!
//! The [`Hub`] notes the rooms whose set of users changed (a user's first connection came in, or its last
//! one left; a second tab changes nothing). Once every [`EVERY`] the presence task takes those rooms and
//! tells their members who is there: `presence {room, count, users}`, with at most
//! [`shared::PRESENCE_NAMES`] names, so a reconnect storm costs each room one frame a second, and a room
//! of thousands a count rather than a crowd. A connection that joins a room gets its presence right after
//! `joined`: the frame last announced there ([`for_joiner`]), so that a storm of joins does not count the
//! room's members once per join. Presence is ephemeral: never stored, never replayed, and sent only to connections that
//! joined the room themselves (see [`Hub::want_presence`]).
//!
//! In the Redis mode a room's users are spread over nodes. Each node keeps its own share of each room
//! in Redis ([`Broker::set_here`]: count and names per node) with a liveness that it renews every
//! [`RENEW_EVERY`]; after a change it announces the room on the control channel, and every node, itself
//! included, reads the union ([`Broker::here`]) and tells its own connections. The share of a node that
//! died without cleaning up is ignored once its liveness lapses. A user with tabs on two nodes is one
//! name; the count of a room with more than [`shared::PRESENCE_NAMES`] users per node adds the nodes'
//! counts, so such a user counts twice there.

use crate::{broker::Broker, hub::Hub};
use shared::{PRESENCE_NAMES, RoomId, ServerMessage, UserName};
use std::{sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

/// How often changed rooms are told who is there.
pub const EVERY: Duration = Duration::from_secs(1);
/// How often a node renews its liveness and rewrites its share of every room (Redis mode).
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The `presence` frame of `room` with `count` users, of whom `users` are named, in alphabetical order
/// (so that the names a page shows do not reorder as people come and go).
pub fn frame(room: &RoomId, count: usize, mut users: Vec<UserName>) -> Utf8Bytes {
    users.sort_unstable();
    ServerMessage::Presence {
        room: room.clone(),
        count: u32::try_from(count).unwrap_or(u32::MAX),
        users,
    }
    .to_json()
    .into()
}

/// Who is in `room`, for a connection that just joined: the frame last announced there (at most a
/// tick old; the joiner's own arrival is announced at the next tick), else [`of`].
pub async fn for_joiner(hub: &Hub, broker: Option<&Broker>, room: &RoomId) -> Utf8Bytes {
    match hub.last_presence(room) {
        Some(frame) => frame,
        None => of(hub, broker, room).await,
    }
}

/// Who is in `room`, on every node: this node's users from the hub, in the Redis mode joined with the
/// other live nodes' shares (only this node's if Redis does not answer).
pub async fn of(hub: &Hub, broker: Option<&Broker>, room: &RoomId) -> Utf8Bytes {
    let mut shares = vec![hub.users(room, PRESENCE_NAMES)];
    if let Some(broker) = broker {
        match broker.here(room).await {
            Ok(others) => shares.extend(others),
            Err(e) => tracing::debug!(%room, error = %e, "reading presence failed"),
        }
    }
    let (count, users) = union(shares);
    frame(room, count, users)
}

/// The users of several nodes' shares: each name once; the count is exact when every share named all
/// its users, else the sum of the counts.
fn union(shares: Vec<(usize, Vec<UserName>)>) -> (usize, Vec<UserName>) {
    let mut names: Vec<UserName> = Vec::new();
    let (mut sum, mut complete) = (0, true);
    for (count, users) in shares {
        sum += count;
        complete &= users.len() == count;
        for user in users {
            if !names.contains(&user) {
                names.push(user);
            }
        }
    }
    let count = if complete { names.len() } else { sum };
    names.truncate(PRESENCE_NAMES);
    (count, names)
}

/// Starts the presence task; it ends when `stop` is cancelled.
pub fn spawn(
    hub: Arc<Hub>,
    broker: Option<Arc<Broker>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks_per_renewal = (RENEW_EVERY.as_millis() / EVERY.as_millis()).max(1) as u64;
        for tick in 0u64.. {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let changed = hub.take_changed();
            let Some(broker) = &broker else {
                for room in changed {
                    let (count, users) = hub.users(&room, PRESENCE_NAMES);
                    hub.announce_presence(&room, &frame(&room, count, users));
                }
                continue;
            };
            // Every so often, all of this node's rooms too (not announced): its liveness and shares stay
            // fresh even after Redis lost them.
            let renew = tick % ticks_per_renewal == 0;
            let mut rooms: Vec<(RoomId, bool)> = changed.into_iter().map(|r| (r, true)).collect();
            if renew {
                for room in hub.rooms() {
                    if !rooms.iter().any(|(r, _)| *r == room) {
                        rooms.push((room, false));
                    }
                }
            }
            if rooms.is_empty() && !renew {
                continue;
            }
            let shares: Vec<_> = rooms
                .into_iter()
                .map(|(room, changed)| {
                    let (count, users) = hub.users(&room, PRESENCE_NAMES);
                    (room, count, users, changed)
                })
                .collect();
            if let Err(e) = broker.set_here(&shares, RENEW_EVERY * 3).await {
                tracing::debug!(error = %e, "storing presence failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<UserName> {
        list.iter()
            .map(|n| UserName::new(*n).expect("name"))
            .collect()
    }

    #[test]
    fn a_user_on_two_nodes_is_one_and_crowds_are_summed() {
        assert_eq!(
            union(vec![(2, names(&["ann", "bob"])), (1, names(&["ann"]))]),
            (2, names(&["ann", "bob"]))
        );
        assert_eq!(union(vec![(0, vec![]), (0, vec![])]), (0, vec![]));
        // A share that could not name everyone: the counts add up.
        let many: Vec<String> = (0..PRESENCE_NAMES).map(|i| format!("u{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (count, listed) = union(vec![
            (PRESENCE_NAMES + 7, names(&many)),
            (1, names(&["zed"])),
        ]);
        assert_eq!((count, listed.len()), (PRESENCE_NAMES + 8, PRESENCE_NAMES));
    }

    #[test]
    fn a_frame_names_the_users_in_alphabetical_order() {
        let room = RoomId::new("lobby").expect("room");
        let sent = frame(&room, 3, names(&["cat", "ann", "bob"]));
        let ServerMessage::Presence { users, .. } = serde_json::from_str(&sent).expect("frame")
        else {
            panic!("not presence: {sent}");
        };
        assert_eq!(users, names(&["ann", "bob", "cat"]));
    }
}
