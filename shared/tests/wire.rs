//! The wire contract as literal JSON, checked both ways: each server frame serializes to exactly this text,
//! and each client frame decodes from it. Changing one of these strings is a breaking protocol change.

use shared::{
    ChatText, ClientMessage, ClientMsgId, ErrorCode, RoomId, ServerMessage, Timestamp, UserName,
    decode_client,
};

fn room(s: &str) -> RoomId {
    RoomId::new(s).expect("room")
}

fn id(s: &str) -> ClientMsgId {
    ClientMsgId::new(s).expect("id")
}

#[test]
fn server_frames() {
    let ts = Timestamp::parse("2026-11-25T10:40:31.123Z").expect("ts");
    let cases = [
        (
            ServerMessage::Status {
                message: "Welcome to the chat!".into(),
                user: None,
                token: None,
                protocol: None,
                app: None,
            },
            r#"{"type":"status","message":"Welcome to the chat!"}"#,
        ),
        (
            ServerMessage::Status {
                message: "Welcome to the chat!".into(),
                user: Some(UserName::new("ann").expect("name")),
                token: None,
                protocol: Some(3),
                app: Some("5f1a9c0e2b7d4a61".into()),
            },
            r#"{"type":"status","message":"Welcome to the chat!","user":"ann","protocol":3,"app":"5f1a9c0e2b7d4a61"}"#,
        ),
        (
            ServerMessage::Chat {
                sender: UserName::new("ann").expect("name"),
                text: ChatText::new("hi").expect("text"),
                timestamp: ts,
                room: room("lobby"),
                seq: 7,
                id: Some(id("k1")),
            },
            r#"{"type":"chat","sender":"ann","text":"hi","timestamp":"2026-11-25T10:40:31.123Z","room":"lobby","seq":7,"id":"k1"}"#,
        ),
        (
            ServerMessage::Ack {
                id: id("k1"),
                room: room("lobby"),
                seq: 7,
            },
            r#"{"type":"ack","id":"k1","room":"lobby","seq":7}"#,
        ),
        (
            ServerMessage::Joined {
                room: room("dev"),
                head: 12,
            },
            r#"{"type":"joined","room":"dev","head":12}"#,
        ),
        (
            ServerMessage::Left { room: room("dev") },
            r#"{"type":"left","room":"dev"}"#,
        ),
        (
            ServerMessage::Invited {
                room: room("team"),
                user: UserName::new("bob").expect("name"),
            },
            r#"{"type":"invited","room":"team","user":"bob"}"#,
        ),
        (
            ServerMessage::error(ErrorCode::UnknownType, "unknown message type \"x\""),
            r#"{"type":"error","code":"unknown_type","message":"unknown message type \"x\""}"#,
        ),
        (
            ServerMessage::refusal(ErrorCode::HistoryTruncated, "gone", None, Some(room("dev"))),
            r#"{"type":"error","code":"history_truncated","message":"gone","room":"dev"}"#,
        ),
        (
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                id: Some(id("k2")),
                room: Some(room("dev")),
                retry_after_ms: Some(250),
            },
            r#"{"type":"error","code":"rate_limited","message":"slow down","id":"k2","room":"dev","retry_after_ms":250}"#,
        ),
        (
            ServerMessage::refusal(ErrorCode::RoomExists, "taken", None, Some(room("team"))),
            r#"{"type":"error","code":"room_exists","message":"taken","room":"team"}"#,
        ),
        (
            ServerMessage::refusal(ErrorCode::UnknownUser, "who?", None, Some(room("team"))),
            r#"{"type":"error","code":"unknown_user","message":"who?","room":"team"}"#,
        ),
        (
            ServerMessage::Created {
                room: room("team"),
                private: true,
            },
            r#"{"type":"created","room":"team","private":true}"#,
        ),
        (
            ServerMessage::Removed {
                room: room("team"),
                user: UserName::new("bob").expect("name"),
            },
            r#"{"type":"removed","room":"team","user":"bob"}"#,
        ),
        (
            ServerMessage::Created {
                room: room("open"),
                private: false,
            },
            r#"{"type":"created","room":"open"}"#,
        ),
        (
            ServerMessage::History {
                room: room("dev"),
                before: 3,
                messages: vec![shared::HistoryEntry {
                    seq: 2,
                    sender: UserName::new("ann").expect("name"),
                    text: ChatText::new("hi").expect("text"),
                    timestamp: ts,
                    id: Some(id("k1")),
                }],
                more: true,
            },
            r#"{"type":"history","room":"dev","before":3,"messages":[{"seq":2,"sender":"ann","text":"hi","timestamp":"2026-11-25T10:40:31.123Z","id":"k1"}],"more":true}"#,
        ),
        (
            ServerMessage::History {
                room: room("dev"),
                before: 1,
                messages: vec![],
                more: false,
            },
            r#"{"type":"history","room":"dev","before":1,"messages":[]}"#,
        ),
        (
            ServerMessage::Rooms {
                rooms: vec![
                    shared::RoomSummary {
                        room: room("dev"),
                        last_read: 40,
                        head: 42,
                        private: false,
                    },
                    shared::RoomSummary {
                        room: room("team"),
                        last_read: 0,
                        head: 0,
                        private: true,
                    },
                ],
            },
            r#"{"type":"rooms","rooms":[{"room":"dev","last_read":40,"head":42},{"room":"team","last_read":0,"head":0,"private":true}]}"#,
        ),
        (
            ServerMessage::Typing {
                room: room("dev"),
                user: UserName::new("ann").expect("name"),
                expires_ms: 5000,
            },
            r#"{"type":"typing","room":"dev","user":"ann","expires_ms":5000}"#,
        ),
        (
            ServerMessage::Presence {
                room: room("dev"),
                count: 2,
                users: vec![
                    UserName::new("ann").expect("name"),
                    UserName::new("bob").expect("name"),
                ],
            },
            r#"{"type":"presence","room":"dev","count":2,"users":["ann","bob"]}"#,
        ),
        (ServerMessage::Pong, r#"{"type":"pong"}"#),
    ];
    for (message, json) in cases {
        assert_eq!(message.to_json(), json);
        let back: ServerMessage = serde_json::from_str(json).expect("decodes");
        assert_eq!(back, message, "{json}");
    }
}

#[test]
fn server_frames_missing_a_required_field_are_refused() {
    let complete = [
        r#"{"type":"status","message":"hi"}"#,
        r#"{"type":"chat","sender":"ann","text":"hi","timestamp":"2026-11-25T10:40:31.123Z","room":"lobby","seq":7}"#,
        r#"{"type":"ack","id":"k1","room":"lobby","seq":7}"#,
        r#"{"type":"joined","room":"dev","head":12}"#,
        r#"{"type":"invited","room":"team","user":"bob"}"#,
        r#"{"type":"removed","room":"team","user":"bob"}"#,
        r#"{"type":"created","room":"team"}"#,
        r#"{"type":"left","room":"dev"}"#,
        r#"{"type":"error","code":"forbidden","message":"no"}"#,
        r#"{"type":"history","room":"dev","before":3,"messages":[]}"#,
        r#"{"type":"rooms","rooms":[]}"#,
        r#"{"type":"typing","room":"dev","user":"ann","expires_ms":5000}"#,
        r#"{"type":"presence","room":"dev","count":1,"users":["ann"]}"#,
    ];
    for json in complete {
        serde_json::from_str::<ServerMessage>(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).expect("object");
        for field in object.keys().filter(|k| *k != "type") {
            let mut without = object.clone();
            without.remove(field);
            let text = serde_json::to_string(&without).expect("json");
            let error = serde_json::from_str::<ServerMessage>(&text)
                .expect_err(&format!("accepted without `{field}`: {text}"));
            assert!(
                error.to_string().contains(field.as_str()),
                "{text}: {error}"
            );
        }
    }
    assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"nope"}"#).is_err());
    assert!(serde_json::from_str::<ServerMessage>(r#"{"message":"no type"}"#).is_err());
}

#[test]
fn client_frames() {
    let cases = [
        (
            r#"{"type":"chat","text":"hi"}"#,
            ClientMessage::Chat {
                text: ChatText::new("hi").expect("t"),
                room: None,
                id: None,
            },
        ),
        (
            r#"{"type":"chat","text":"hi","room":"dev","id":"k1"}"#,
            ClientMessage::Chat {
                text: ChatText::new("hi").expect("t"),
                room: Some(room("dev")),
                id: Some(id("k1")),
            },
        ),
        (
            r#"{"type":"join","room":"dev","since":41}"#,
            ClientMessage::Join {
                room: room("dev"),
                since: Some(41),
            },
        ),
        (
            r#"{"type":"join","room":"dev"}"#,
            ClientMessage::Join {
                room: room("dev"),
                since: None,
            },
        ),
        (
            r#"{"type":"typing","room":"dev"}"#,
            ClientMessage::Typing { room: room("dev") },
        ),
        (
            r#"{"type":"read","room":"dev","seq":42}"#,
            ClientMessage::Read {
                room: room("dev"),
                seq: 42,
            },
        ),
        (
            r#"{"type":"history","room":"dev","before":951}"#,
            ClientMessage::History {
                room: room("dev"),
                before: 951,
            },
        ),
        (
            r#"{"type":"create","room":"team","private":true}"#,
            ClientMessage::Create {
                room: room("team"),
                private: true,
            },
        ),
        (
            r#"{"type":"create","room":"open"}"#,
            ClientMessage::Create {
                room: room("open"),
                private: false,
            },
        ),
        (
            r#"{"type":"remove","room":"team","user":"bob"}"#,
            ClientMessage::Remove {
                room: room("team"),
                user: UserName::new("bob").expect("name"),
            },
        ),
        (
            r#"{"type":"invite","room":"team","user":"bob"}"#,
            ClientMessage::Invite {
                room: room("team"),
                user: UserName::new("bob").expect("name"),
            },
        ),
        (
            r#"{"type":"leave","room":"dev"}"#,
            ClientMessage::Leave { room: room("dev") },
        ),
        (r#"{"type":"ping"}"#, ClientMessage::Ping),
    ];
    for (json, message) in cases {
        assert_eq!(decode_client(json).as_ref(), Ok(&message), "{json}");
        assert_eq!(message.to_json(), json);
    }
}

#[test]
fn unknown_error_codes_from_newer_servers_still_decode() {
    let m: ServerMessage =
        serde_json::from_str(r#"{"type":"error","code":"something_new","message":"m"}"#)
            .expect("decodes");
    assert!(matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Other,
            ..
        }
    ));
}
