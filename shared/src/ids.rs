//! Validated identifiers and text: a value of these types is known to be well formed, so code past the
//! decoder never re-checks it. Each deserializes from a JSON string and fails with a readable message.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A room's sequence number: the position of a chat message in its room, assigned by the server, starting at 1
/// and growing by exactly one per stored message. `0` means "before the first message".
pub type Seq = u64;

/// Why a string was refused as an identifier or as chat text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A room name that is empty, too long, or has characters outside letters, digits, `_` and `-`.
    #[error("room must be 1 to {max} characters of letters, digits, '_' or '-'", max = RoomId::MAX_LEN)]
    Room,
    /// A user name that is empty, too long, or has characters outside letters, digits, `_` and `-`.
    #[error("name must be 1 to {max} characters of letters, digits, '_' or '-'", max = UserName::MAX_LEN)]
    User,
    /// A client message id that is empty, too long, or has whitespace or control characters.
    #[error("id must be 1 to {max} characters without spaces or control characters", max = ClientMsgId::MAX_LEN)]
    ClientMsgId,
    /// Chat text that is empty or only whitespace.
    #[error("text must not be empty or only whitespace")]
    EmptyText,
    /// Chat text with a control character other than newline or tab.
    #[error("text must not contain control characters other than newline and tab")]
    ControlChar,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(is_name_char)
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr, $err:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                let check: fn(&str) -> bool = $check;
                if check(&s) { Ok(Self(s)) } else { Err($err) }
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A room name: 1 to 64 characters of ASCII letters, digits, `_` and `-` (case-sensitive).
    RoomId,
    |s| is_name(s, RoomId::MAX_LEN),
    IdError::Room
);

string_newtype!(
    /// A user name, always assigned or authenticated by the server: 1 to 32 characters of ASCII letters,
    /// digits, `_` and `-`.
    UserName,
    |s| is_name(s, UserName::MAX_LEN),
    IdError::User
);

string_newtype!(
    /// A client-generated message id, unique per sender and room: 1 to 64 characters, no whitespace, no
    /// control characters. Sending the same id again is safe: the server stores and relays it once.
    ClientMsgId,
    |s| {
        !s.is_empty()
            && s.chars().count() <= ClientMsgId::MAX_LEN
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    },
    IdError::ClientMsgId
);

impl RoomId {
    /// Longest room name, in characters.
    pub const MAX_LEN: usize = 64;

    /// The default room, [`crate::LOBBY`].
    pub fn lobby() -> Self {
        Self(crate::LOBBY.to_owned())
    }
}

impl Default for RoomId {
    fn default() -> Self {
        Self::lobby()
    }
}

impl UserName {
    /// Longest user name, in characters.
    pub const MAX_LEN: usize = 32;
}

impl ClientMsgId {
    /// Longest message id, in characters.
    pub const MAX_LEN: usize = 64;
}

/// The text of a chat message: not empty, not only whitespace, and free of control characters other than
/// newline and tab. Its size is bounded by the server's frame limit, not here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChatText(String);

impl ChatText {
    /// Validates `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.trim().is_empty() {
            Err(IdError::EmptyText)
        } else if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            Err(IdError::ControlChar)
        } else {
            Ok(Self(s))
        }
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChatText {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<ChatText> for String {
    fn from(v: ChatText) -> String {
        v.0
    }
}

impl fmt::Display for ChatText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomId::new("lobby").is_ok());
        assert!(RoomId::new("a-b_C9").is_ok());
        assert_eq!(RoomId::new(""), Err(IdError::Room));
        assert_eq!(RoomId::new("has space"), Err(IdError::Room));
        assert_eq!(RoomId::new("é"), Err(IdError::Room));
        assert!(RoomId::new("x".repeat(64)).is_ok());
        assert_eq!(RoomId::new("x".repeat(65)), Err(IdError::Room));
    }

    #[test]
    fn user_names() {
        assert!(UserName::new("guest-1a2b").is_ok());
        assert!(UserName::new("x".repeat(32)).is_ok());
        assert_eq!(UserName::new("x".repeat(33)), Err(IdError::User));
        assert_eq!(UserName::new("<b>"), Err(IdError::User));
    }

    #[test]
    fn client_ids() {
        assert!(ClientMsgId::new("01J9-abc").is_ok());
        assert!(
            ClientMsgId::new("é".repeat(64)).is_ok(),
            "64 characters, more bytes"
        );
        assert_eq!(ClientMsgId::new("x".repeat(65)), Err(IdError::ClientMsgId));
        assert_eq!(ClientMsgId::new(""), Err(IdError::ClientMsgId));
        assert_eq!(ClientMsgId::new("a b"), Err(IdError::ClientMsgId));
        assert_eq!(ClientMsgId::new("a\u{0}"), Err(IdError::ClientMsgId));
    }

    #[test]
    fn chat_text() {
        assert!(ChatText::new("hi\nthere\t!").is_ok());
        assert_eq!(ChatText::new(""), Err(IdError::EmptyText));
        assert_eq!(ChatText::new(" \n\t "), Err(IdError::EmptyText));
        assert_eq!(ChatText::new("bell\u{7}"), Err(IdError::ControlChar));
        assert_eq!(ChatText::new("esc\u{1b}[2J"), Err(IdError::ControlChar));
    }
}
