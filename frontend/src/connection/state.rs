//! The connection's state as the view shows it.

use std::fmt;

/// Where the connection stands. Its [`Display`](fmt::Display) text is what the status bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Opening a WebSocket.
    Connecting,
    /// The WebSocket is open.
    Open,
    /// Waiting before the next connection attempt.
    Reconnecting {
        /// Consecutive failed attempts so far (1 for the first retry).
        attempt: u32,
        /// How long until the next try, in milliseconds.
        delay_ms: u32,
    },
    /// Stopped for good: the server said not to reconnect, or the connection was closed on purpose.
    Closed,
    /// Stopped for good because the server closed with [`shared::close::UNAUTHORIZED`]: the session (e.g.
    /// its token) is no longer valid, and only signing in again helps.
    Unauthorized,
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => f.write_str("Connecting…"),
            Self::Open => f.write_str("Connected"),
            // Tenths of a second in integers: float formatting would add kilobytes to the wasm.
            Self::Reconnecting { attempt, delay_ms } => {
                let tenths = delay_ms / 100;
                write!(
                    f,
                    "Reconnecting (attempt {attempt}, next try in {}.{} s)",
                    tenths / 10,
                    tenths % 10
                )
            }
            Self::Closed => f.write_str("Closed"),
            Self::Unauthorized => f.write_str("Session expired"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_name_the_state() {
        assert!(
            ConnState::Connecting
                .to_string()
                .to_lowercase()
                .contains("connecting")
        );
        assert!(
            ConnState::Open
                .to_string()
                .to_lowercase()
                .contains("connected")
        );
        assert_eq!(
            ConnState::Reconnecting {
                attempt: 3,
                delay_ms: 1250
            }
            .to_string(),
            "Reconnecting (attempt 3, next try in 1.2 s)"
        );
        assert!(
            ConnState::Closed
                .to_string()
                .to_lowercase()
                .contains("closed")
        );
        assert!(
            ConnState::Unauthorized
                .to_string()
                .to_lowercase()
                .contains("expired")
        );
    }
}
