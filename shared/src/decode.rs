//! Decoding one inbound text frame.
//!
//! The happy path is a single `serde_json` parse straight into [`ClientMessage`]. Only when that fails is the
//! frame parsed a second time, loosely, to say precisely what was wrong (and to recover the `id` of a refused
//! chat message, so the sender can mark it failed instead of retrying it forever).

use crate::{ClientMessage, ClientMsgId, ErrorCode};

/// The `type` values of [`ClientMessage`].
const KNOWN_TYPES: &[&str] = &[
    "chat", "join", "create", "leave", "invite", "remove", "history", "read", "typing", "ping",
];

/// Why a frame was refused; becomes a [`crate::ServerMessage::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    /// The machine-readable reason.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// The refused message's `id`, when it had a valid one.
    pub id: Option<ClientMsgId>,
}

/// Decodes one text frame.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    serde_json::from_str(text).map_err(|e| explain(text, e))
}

fn explain(text: &str, typed_error: serde_json::Error) -> DecodeError {
    let fail = |code, message: String, id| DecodeError { code, message, id };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return fail(ErrorCode::InvalidJson, format!("invalid JSON: {e}"), None),
    };
    let Some(object) = value.as_object() else {
        return fail(
            ErrorCode::InvalidMessage,
            "expected a JSON object".into(),
            None,
        );
    };
    let id = object
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| ClientMsgId::new(s).ok());
    match object.get("type").and_then(|t| t.as_str()) {
        None => fail(
            ErrorCode::InvalidMessage,
            "expected a string field \"type\"".into(),
            id,
        ),
        Some(t) if !KNOWN_TYPES.contains(&t) => {
            let shown: String = t.chars().take(40).collect();
            fail(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}"),
                id,
            )
        }
        Some(_) => {
            let mut message = typed_error.to_string();
            // serde_json appends " at line L column C"; for one-line frames that is noise.
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            fail(ErrorCode::BadField, message, id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatText, RoomId};

    fn code(text: &str) -> ErrorCode {
        decode_client(text).expect_err(text).code
    }

    #[test]
    fn article_client_chat_is_accepted_and_its_timestamp_ignored() {
        let m =
            decode_client(r#"{"type":"chat","text":"hi","timestamp":"2024-01-01T00:00:00.000Z"}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Chat {
                text: ChatText::new("hi").expect("valid"),
                room: None,
                id: None
            })
        );
    }

    /// One example of every variant. The `match` has no wildcard, so adding a variant fails to compile
    /// until it is listed here, and the test below then checks the decoder knows its `type`.
    fn one_of_each() -> Vec<ClientMessage> {
        let room = RoomId::new("r").expect("valid");
        let user = crate::UserName::new("bob").expect("valid");
        let all = vec![
            ClientMessage::Chat {
                text: ChatText::new("hi").expect("valid"),
                room: None,
                id: None,
            },
            ClientMessage::Join {
                room: room.clone(),
                since: None,
            },
            ClientMessage::Create {
                room: room.clone(),
                private: true,
            },
            ClientMessage::Leave { room: room.clone() },
            ClientMessage::Invite {
                room: room.clone(),
                user: user.clone(),
            },
            ClientMessage::History {
                room: room.clone(),
                before: 7,
            },
            ClientMessage::Read {
                room: room.clone(),
                seq: 9,
            },
            ClientMessage::Typing { room: room.clone() },
            ClientMessage::Remove { room, user },
            ClientMessage::Ping,
        ];
        for m in &all {
            match m {
                ClientMessage::Chat { .. }
                | ClientMessage::Join { .. }
                | ClientMessage::Create { .. }
                | ClientMessage::Leave { .. }
                | ClientMessage::Invite { .. }
                | ClientMessage::Remove { .. }
                | ClientMessage::History { .. }
                | ClientMessage::Read { .. }
                | ClientMessage::Typing { .. }
                | ClientMessage::Ping => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_is_known_to_the_decoder() {
        let examples = one_of_each();
        assert_eq!(examples.len(), KNOWN_TYPES.len(), "one type per variant");
        for m in examples {
            let json = m.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).expect("json");
            let t = value["type"].as_str().expect("tagged");
            assert!(KNOWN_TYPES.contains(&t), "{t} missing from KNOWN_TYPES");
            assert_eq!(decode_client(&json), Ok(m), "round trip of {json}");
            // With its required fields missing it is a bad field, never an unknown type.
            let bare = decode_client(&format!(r#"{{"type":"{t}"}}"#)).err();
            assert_ne!(bare.map(|e| e.code), Some(ErrorCode::UnknownType), "{t}");
        }
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code(""), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"text":"hi"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"type":"info","message":"Hello"}"#),
            ErrorCode::UnknownType
        );
        assert_eq!(code(r#"{"type":"chat"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"chat","text":7}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"chat","text":"   "}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"join","room":"a b"}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"type":"join","room":"r","since":-1}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"join","room":"r","since":1e999}"#),
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!(
            r#"{{"type":"chat","text":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(code(&deep), ErrorCode::InvalidJson);
    }

    #[test]
    fn refused_chat_keeps_its_id() {
        let e = decode_client(r#"{"type":"chat","text":"","id":"m-1"}"#).expect_err("empty");
        assert_eq!(e.code, ErrorCode::BadField);
        assert_eq!(e.id, Some(ClientMsgId::new("m-1").expect("valid")));
        assert!(e.message.contains("empty"), "{}", e.message);
    }

    #[test]
    fn join_with_since() {
        assert_eq!(
            decode_client(r#"{"type":"join","room":"dev","since":41}"#),
            Ok(ClientMessage::Join {
                room: RoomId::new("dev").expect("valid"),
                since: Some(41),
            })
        );
    }
}
