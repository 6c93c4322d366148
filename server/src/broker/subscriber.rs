//! The node's one subscription to Redis: every room's messages and the control channel.
//!
//! Redis delivers what one connection subscribed to in publish order, and the append script publishes a
//! room's messages in `seq` order, so messages normally arrive in order and go straight to the
//! [`Sequencer`]. When the subscription is lost (Redis restarted, the network failed), the task
//! reconnects with backoff, subscribes again, then reads from each followed room's stream whatever was
//! published while it was away, before it counts as ready again; a message that still arrives after a gap
//! has the gap read from the stream first. Nothing published while the subscription was down is missed.
//!
//! Control messages (room changes, revocations) make this node reload a room's access or close a
//! session's connections; after a lost subscription every room's access and the revoked sessions are
//! reloaded, since announcements may have been missed.
//!
//! A published room message is `format \n seq \n node \n conn \n timestamp \n sender \n client id \n
//! text` (see `append.lua`), format `1`: this node builds the `chat` frame from it once, whoever the
//! recipients. Every format to come keeps its first two lines, so that during a rolling deploy a node
//! meeting a newer node's format still delivers the message: it reads it from the room's stream (whose
//! entries have named fields, to which a newer version may add but never change) as it fills a gap.

use super::{Broker, CONTROL_CHANNEL, ROOM_CHANNELS};
use crate::{
    access::RoomAccess,
    history::{self, History, HistoryError, PageLimit, StoredMessage},
    hub::Hub,
    mailbox::Published,
    sequencer::{Delivered, Sequencer},
    sessions::Sessions,
    users::StoreError,
};
use futures_util::StreamExt;
use shared::{RoomId, Seq, UserName};
use std::{sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Messages read from a stream per request when filling a gap.
const FILL_PAGE: usize = 512;
/// How often rooms nobody here follows any more are forgotten.
const TIDY_EVERY: Duration = Duration::from_secs(60);

/// What the subscriber works with.
#[derive(Debug)]
pub struct Subscriber {
    /// The Redis connection.
    pub broker: Arc<Broker>,
    /// Where room messages go.
    pub sequencer: Arc<Sequencer>,
    /// Where gaps are read from.
    pub history: Arc<dyn History>,
    /// Reloaded when a room changes.
    pub access: RoomAccess,
    /// The rooms with connections here, whose access is checked again after a lost subscription.
    pub hub: Arc<Hub>,
    /// Told of revocations.
    pub sessions: Arc<Sessions>,
}

/// A subscription attempt ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the connection closed")]
    Closed,
}

impl Subscriber {
    /// Runs the subscription until `stop` is cancelled.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            let mut failing = false;
            loop {
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    result = self.subscribe_and_follow() => result,
                };
                if self.broker.take_subscribed() {
                    // It was up: this is a new outage, said once.
                    failing = false;
                    backoff = Duration::from_millis(50);
                }
                let Err(e) = result else { return };
                if !failing {
                    tracing::error!(error = %e, "redis subscription lost; resubscribing (the node is not ready until then)");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        })
    }

    async fn subscribe_and_follow(&self) -> Result<(), Lost> {
        let mut pubsub = self.broker.pubsub().await?;
        pubsub.psubscribe(ROOM_CHANNELS).await?;
        pubsub.subscribe(CONTROL_CHANNEL).await?;
        // Subscribed: from here on nothing is missed. Now catch up on what was published before.
        self.access.reload_all();
        for room in self.hub.rooms() {
            self.access.reload(&room).await?;
        }
        self.sessions.reload().await?;
        for (room, delivered) in self.sequencer.positions() {
            self.fill(&room, delivered, Seq::MAX).await?;
        }
        self.broker.set_subscribed();
        tracing::info!("subscribed to redis");
        let mut messages = pubsub.on_message();
        let mut tidy = tokio::time::interval(TIDY_EVERY);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return Err(Lost::Closed) };
                    self.handle(message.get_channel_name(), message.get_payload_bytes()).await?;
                }
                _ = tidy.tick() => {
                    self.sequencer.positions();
                }
            }
        }
    }

    async fn handle(&self, channel: &str, payload: &[u8]) -> Result<(), Lost> {
        let Ok(payload) = std::str::from_utf8(payload) else {
            tracing::warn!(channel, "ignoring a message that is not UTF-8");
            return Ok(());
        };
        if channel == CONTROL_CHANNEL {
            self.control(payload).await;
            return Ok(());
        }
        let Some(room) = channel
            .strip_prefix("chat:room:")
            .and_then(|r| RoomId::new(r).ok())
        else {
            return Ok(());
        };
        let (message, origin) = match parse(&room, payload) {
            Payload::Known(message, origin) => (message, origin),
            Payload::Newer { seq } => {
                if let Some(after) = self.sequencer.delivered(&room) {
                    self.fill(&room, after, seq + 1).await?;
                }
                return Ok(());
            }
            Payload::Malformed => {
                tracing::warn!(%room, "ignoring a malformed room message");
                return Ok(());
            }
        };
        let except = origin.and_then(|(node, conn)| (node == self.broker.node()).then_some(conn));
        let published = published(message);
        if let Delivered::Gap { after } = self.sequencer.deliver(&published, except) {
            self.fill(&room, after, published.seq).await?;
            self.sequencer.deliver(&published, except);
        }
        Ok(())
    }

    /// Delivers `room`'s messages after `after` and before `until` from its stream.
    async fn fill(&self, room: &RoomId, after: Seq, until: Seq) -> Result<(), Lost> {
        let limit = PageLimit {
            messages: FILL_PAGE,
            bytes: usize::MAX,
        };
        let mut cursor = after;
        while cursor + 1 < until {
            let page = self.history.read_since(room.clone(), cursor, limit).await?;
            if page.first_retained > cursor + 1 {
                // Gone for good (retention): nobody can have them.
                self.sequencer
                    .skip_to(room, (page.first_retained - 1).min(until - 1));
            }
            let Some(last) = page.messages.last().map(|m| m.seq) else {
                break;
            };
            for message in page.messages.into_iter().filter(|m| m.seq < until) {
                self.sequencer.deliver(&published(message), None);
            }
            cursor = last;
        }
        Ok(())
    }

    async fn control(&self, payload: &str) {
        let mut parts = payload.split('\n');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("presence"), Some(room), None) => {
                if let Ok(room) = RoomId::new(room)
                    && self.hub.member_count(&room) > 0
                {
                    let frame = crate::presence::of(&self.hub, Some(&self.broker), &room).await;
                    self.hub.announce_presence(&room, &frame);
                }
            }
            (Some("typing"), Some(room), Some(user)) => {
                // This node announced its own users already.
                if parts.next() != Some(self.broker.node())
                    && let (Ok(room), Ok(user)) = (RoomId::new(room), UserName::new(user))
                {
                    self.hub
                        .announce(&room, &Hub::typing_frame(&room, &user), &user);
                }
            }
            (Some("room"), Some(room), None) => {
                if let Ok(room) = RoomId::new(room)
                    && let Err(e) = self.access.reload(&room).await
                {
                    tracing::error!(%room, error = %e, "reloading a room's access failed");
                }
            }
            (Some("session"), Some(sid), Some(expires)) => {
                if let Ok(expires) = expires.parse() {
                    self.sessions.close_revoked(sid.to_owned(), expires);
                }
            }
            (Some("rooms"), Some(user), Some(from)) => {
                // The inviting node told its own connections already.
                if from != self.broker.node()
                    && let Ok(user) = UserName::new(user)
                {
                    self.sessions.relist(&user);
                }
            }
            (Some("user"), Some(user), None) => {
                if let Ok(user) = UserName::new(user) {
                    self.sessions.close_user(&user);
                }
            }
            // A newer node's announcement during a rolling deploy, or garbage: nothing this node acts on.
            _ => tracing::debug!(payload, "ignoring an unknown control message"),
        }
    }
}

/// The format of the room messages this node publishes.
const FORMAT: &str = "1";

/// A published room message, as far as this node understands it.
#[derive(Debug)]
enum Payload {
    /// The message, and the node and connection it came from.
    Known(StoredMessage, Option<(String, u64)>),
    /// A format newer than this node's (published by a newer node during a rolling deploy).
    Newer {
        seq: Seq,
    },
    Malformed,
}

fn parse(room: &RoomId, payload: &str) -> Payload {
    let mut parts = payload.splitn(8, '\n');
    let (Some(format), Some(Ok(seq))) = (parts.next(), parts.next().map(str::parse::<Seq>)) else {
        return Payload::Malformed;
    };
    if format != FORMAT {
        return match format.parse::<u32>() {
            Ok(n) if n > 1 => Payload::Newer { seq },
            _ => Payload::Malformed,
        };
    }
    let mut field = || parts.next().map(str::to_owned);
    let (Some(node), Some(conn), Some(ts), Some(sender), Some(id), Some(text)) =
        (field(), field(), field(), field(), field(), field())
    else {
        return Payload::Malformed;
    };
    match history::redis::stored(room, seq, Some(sender), Some(text), Some(ts), Some(id)) {
        Ok(message) => Payload::Known(message, conn.parse().ok().map(|conn| (node, conn))),
        Err(_) => Payload::Malformed,
    }
}

fn published(message: StoredMessage) -> Arc<Published> {
    let (room, seq, timestamp) = (message.room.clone(), message.seq, message.timestamp);
    Published::new(room, seq, timestamp, &message.into_frame().to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_append_script_publishes() {
        let room = RoomId::lobby();
        let Payload::Known(message, origin) =
            parse(&room, "1\n42\nn1\n7\n1700000000000\nann\nk1\nhello\nworld")
        else {
            panic!("parses");
        };
        assert_eq!(origin, Some(("n1".to_owned(), 7)));
        assert_eq!(
            (message.seq, message.sender.as_str(), message.text.as_str()),
            (42, "ann", "hello\nworld")
        );
        assert_eq!(
            message.client_id.map(|i| i.as_str().to_owned()),
            Some("k1".into())
        );
        let Payload::Known(anonymous, _) = parse(&room, "1\n43\nn1\n7\n1\nann\n\nhi") else {
            panic!("parses");
        };
        assert!(anonymous.client_id.is_none());
        assert!(matches!(
            parse(&room, "1\nnot-a-seq\nn1\n7\n1\nann\n\nhi"),
            Payload::Malformed
        ));
        assert!(matches!(
            parse(&room, "1\n44\nn1\n7\n1\n\n\nhi"),
            Payload::Malformed
        ));
        assert!(matches!(
            parse(&room, "2\n45\nwhatever a newer node adds"),
            Payload::Newer { seq: 45 }
        ));
        assert!(matches!(parse(&room, "x\n45\n"), Payload::Malformed));
    }
}
