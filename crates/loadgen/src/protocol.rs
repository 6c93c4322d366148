//! The three wire protocols the generator speaks, and how it reads what servers send.
//!
//! - [`Protocol::Chat`]: ours (`shared`): a `status` welcome with a token, `join` / `joined` for rooms,
//!   `chat` with a client id, `ack` with the stored `seq`, and `chat` deliveries carrying `seq`.
//! - [`Protocol::Plain`]: the design article's relay (`seed-ws`, and `lean-axum`): a `status` welcome,
//!   `{"type":"chat","text":...}` relayed as is to every other client; no rooms, acks or `seq`.
//! - [`Protocol::Socketio`]: Socket.IO 4 over a WebSocket (Engine.IO 4 framing): `0{..}` open, `40`
//!   connect, `42["chat",{...}]` events, `2`/`3` pings answered by the client.
//!
//! Every chat the generator sends carries its send time in its text (`<µs since start> <sender> <n>`),
//! so a receiver measures latency without any clock but the generator's own. Reading a delivery scans
//! the frame for the few fields needed instead of parsing it: at millions of deliveries a second the
//! generator's core is the limit, and the frames come from servers whose field names are known.

use memchr::memmem::Finder;
use serde::Serialize;
use shared::{ChatText, ClientMessage, ClientMsgId, RoomId};
use std::sync::OnceLock;

/// A wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ours: rooms, acks, `seq`, tokens.
    Chat,
    /// The article's plain JSON relay (seed-ws, lean-axum).
    Plain,
    /// Socket.IO 4.
    Socketio,
}

/// What a frame from the server is, as far as a scenario cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The server's welcome (ours carries a token for the next connection).
    Welcome {
        /// The token, if any.
        token: Option<&'a str>,
    },
    /// Engine.IO's open packet: the client must now connect to the namespace.
    Open,
    /// A relayed chat: its `seq` (ours only) and text.
    Chat {
        /// The room's sequence number (ours only).
        seq: Option<u64>,
        /// The text as sent.
        text: &'a str,
    },
    /// Our ack of a stored chat.
    Ack {
        /// The client id it answers.
        id: &'a str,
        /// The stored `seq`.
        seq: u64,
    },
    /// Our `joined`: the room's head.
    Joined {
        /// The room's newest `seq`.
        head: u64,
    },
    /// Engine.IO's ping: answer with [`Protocol::pong`].
    Ping,
    /// An error frame.
    Error(&'a str),
    /// Anything else.
    Other,
}

impl Protocol {
    /// The WebSocket path and query on the server (with `token` for ours).
    pub fn path(self, token: Option<&str>) -> String {
        match (self, token) {
            (Self::Chat, Some(token)) => format!("/ws?token={token}"),
            (Self::Chat, None) => "/ws".to_owned(),
            // The baselines accept any path; ours serves the plain protocol at /ws too.
            (Self::Plain, _) => "/ws".to_owned(),
            (Self::Socketio, _) => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        }
    }

    /// Whether the protocol has rooms, acks and `seq` (ours).
    pub fn is_ours(self) -> bool {
        self == Self::Chat
    }

    /// What the client sends after Engine.IO's open packet.
    pub fn connect_namespace(self) -> Option<&'static str> {
        (self == Self::Socketio).then_some("40")
    }

    /// The answer to [`Incoming::Ping`].
    pub fn pong(self) -> &'static str {
        "3"
    }

    /// A chat frame: `text` into `room` (ours; the others have one room) with client id `id` (ours).
    pub fn chat(self, room: &str, id: &str, text: &str) -> String {
        match self {
            Self::Chat => {
                let message = ClientMessage::Chat {
                    text: ChatText::new(text).expect("generated texts are valid"),
                    room: Some(RoomId::new(room).expect("generated room names are valid")),
                    id: Some(ClientMsgId::new(id).expect("generated ids are valid")),
                };
                serde_json::to_string(&message).expect("serializable")
            }
            Self::Plain => format!(r#"{{"type":"chat","text":"{text}"}}"#),
            Self::Socketio => format!(r#"42["chat",{{"text":"{text}"}}]"#),
        }
    }

    /// Our `join` frame.
    pub fn join(room: &str, since: Option<u64>) -> String {
        let message = ClientMessage::Join {
            room: RoomId::new(room).expect("generated room names are valid"),
            since,
        };
        serde_json::to_string(&message).expect("serializable")
    }

    /// What `frame` is.
    pub fn read(self, frame: &str) -> Incoming<'_> {
        match self {
            Self::Socketio => read_socketio(frame),
            Self::Chat | Self::Plain => read_json(frame),
        }
    }
}

/// A field's key as it appears in JSON (`"name":`), with its searcher made once: reading deliveries is
/// most of the generator's work, and finding a key is most of reading one.
struct Key {
    pattern: &'static str,
    finder: OnceLock<Finder<'static>>,
}

impl Key {
    const fn new(pattern: &'static str) -> Self {
        Self {
            pattern,
            finder: OnceLock::new(),
        }
    }

    /// Where the key's value starts in `json`.
    fn value_start(&self, json: &str) -> Option<usize> {
        let finder = self.finder.get_or_init(|| Finder::new(self.pattern));
        Some(finder.find(json.as_bytes())? + self.pattern.len())
    }
}

static TYPE: Key = Key::new(r#""type":"#);
static TEXT: Key = Key::new(r#""text":"#);
static SEQ: Key = Key::new(r#""seq":"#);
static ID: Key = Key::new(r#""id":"#);
static HEAD: Key = Key::new(r#""head":"#);
static TOKEN: Key = Key::new(r#""token":"#);

fn read_json(frame: &str) -> Incoming<'_> {
    let Some(kind) = string_field(frame, &TYPE) else {
        return Incoming::Other;
    };
    match kind {
        "chat" => match string_field(frame, &TEXT) {
            Some(text) => Incoming::Chat {
                seq: number_field(frame, &SEQ),
                text,
            },
            None => Incoming::Other,
        },
        "ack" => match (string_field(frame, &ID), number_field(frame, &SEQ)) {
            (Some(id), Some(seq)) => Incoming::Ack { id, seq },
            _ => Incoming::Other,
        },
        "joined" => match number_field(frame, &HEAD) {
            Some(head) => Incoming::Joined { head },
            None => Incoming::Other,
        },
        "status" => Incoming::Welcome {
            token: string_field(frame, &TOKEN),
        },
        "error" => Incoming::Error(frame),
        _ => Incoming::Other,
    }
}

fn read_socketio(frame: &str) -> Incoming<'_> {
    if frame == "2" {
        Incoming::Ping
    } else if frame.starts_with("40") {
        Incoming::Welcome { token: None }
    } else if frame.starts_with('0') {
        Incoming::Open
    } else if let Some(event) = frame.strip_prefix("42") {
        match string_field(event, &TEXT) {
            Some(text) if event.starts_with(r#"["chat""#) => Incoming::Chat { seq: None, text },
            _ => Incoming::Other,
        }
    } else if frame.starts_with("44") {
        Incoming::Error(frame)
    } else {
        Incoming::Other
    }
}

/// The string value of `"name":"..."` in `json` (no escapes in the values this reads).
fn string_field<'a>(json: &'a str, key: &Key) -> Option<&'a str> {
    let start = key.value_start(json)?;
    let rest = json[start..].strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The number value of `"name":123` in `json`.
fn number_field(json: &str, key: &Key) -> Option<u64> {
    let start = key.value_start(json)?;
    let rest = &json[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The text of a generated chat: its send time, sender and number.
pub fn stamp(sent_us: u64, sender: usize, n: u64, pad_to: usize) -> String {
    let mut text = format!("{sent_us} {sender} {n}");
    if text.len() < pad_to {
        text.push(' ');
        text.extend(std::iter::repeat_n('x', pad_to - text.len()));
    }
    text
}

/// The client id of a sender's chat number `n` sent at `sent_us`: the ack carries its send time back.
/// Ids grow with time, as the web client's do (the server's dedupe index is laid out for that).
pub fn chat_id(n: u64, sent_us: u64) -> String {
    format!("{sent_us:016}-{n}")
}

/// The send time in a [`chat_id`].
pub fn id_sent_us(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// The send time, sender and number of a generated chat's text.
pub fn unstamp(text: &str) -> Option<(u64, usize, u64)> {
    let mut parts = text.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_each_server_sends() {
        let ours = r#"{"type":"chat","sender":"guest-1","text":"5 1 2","timestamp":"2026-01-01T00:00:00.000Z","room":"lobby","seq":42,"id":"a"}"#;
        assert_eq!(
            Protocol::Chat.read(ours),
            Incoming::Chat {
                seq: Some(42),
                text: "5 1 2"
            }
        );
        assert_eq!(
            Protocol::Chat.read(r#"{"type":"ack","id":"7-5","room":"lobby","seq":9}"#),
            Incoming::Ack { id: "7-5", seq: 9 }
        );
        assert_eq!(
            Protocol::Chat.read(r#"{"type":"joined","room":"r","head":12}"#),
            Incoming::Joined { head: 12 }
        );
        assert_eq!(
            Protocol::Chat.read(
                r#"{"type":"status","message":"hi","user":"guest-1","token":"t.k","protocol":2}"#
            ),
            Incoming::Welcome { token: Some("t.k") }
        );
        let plain = Protocol::Plain.chat("lobby", "x", "5 1 2");
        assert_eq!(
            Protocol::Plain.read(&plain),
            Incoming::Chat {
                seq: None,
                text: "5 1 2"
            }
        );
        let io = Protocol::Socketio.chat("lobby", "x", "5 1 2");
        assert_eq!(
            Protocol::Socketio.read(&io),
            Incoming::Chat {
                seq: None,
                text: "5 1 2"
            }
        );
        assert_eq!(
            Protocol::Socketio.read(r#"0{"sid":"a","pingInterval":25000}"#),
            Incoming::Open
        );
        assert_eq!(
            Protocol::Socketio.read(r#"40{"sid":"b"}"#),
            Incoming::Welcome { token: None }
        );
        assert_eq!(Protocol::Socketio.read("2"), Incoming::Ping);
        // A field name inside a value is not the field.
        assert_eq!(string_field(r#"{"text":"seq","seq":3}"#, &SEQ), None);
        assert_eq!(number_field(r#"{"text":"seq","seq":3}"#, &SEQ), Some(3));
        assert_eq!(
            number_field(r#"{"text":"\"seq\":4","seq":3}"#, &SEQ),
            Some(3)
        );
    }

    #[test]
    fn our_frames_are_what_shared_defines() {
        let chat = Protocol::Chat.chat("r1", "3-17", "17 3 0");
        let parsed: ClientMessage = serde_json::from_str(&chat).expect("valid");
        assert!(matches!(
            parsed,
            ClientMessage::Chat {
                id: Some(_),
                room: Some(_),
                ..
            }
        ));
        assert_eq!(unstamp(&stamp(17, 3, 0, 40)), Some((17, 3, 0)));
        assert_eq!(stamp(17, 3, 0, 40).len(), 40);
        assert_eq!(id_sent_us(&chat_id(7, 1234)), Some(1234));
        assert!(
            chat_id(9, 999) < chat_id(1, 1000),
            "ids sort by send time, as the web client's do"
        );
    }
}
