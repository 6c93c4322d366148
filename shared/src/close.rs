//! WebSocket close codes the server uses, and what a client should do after each.
//!
//! | code | name | meaning | client reconnects? |
//! |------|------|---------|--------------------|
//! | 1000 | normal | a normal close (the server never sends it; a proxy might) | yes |
//! | 1001 | [`GOING_AWAY`] | the server is shutting down or restarting | yes |
//! | 1002 | [`PROTOCOL_ERROR`] | the client broke the WebSocket protocol | yes |
//! | 1003 | [`UNSUPPORTED_DATA`] | (reserved) a frame kind the protocol does not use | yes |
//! | 1007 | [`INVALID_PAYLOAD`] | a text frame that is not UTF-8 | yes |
//! | 1008 | [`POLICY_VIOLATION`] | the client broke a rule (e.g. flooding) | yes, after backoff |
//! | 1009 | [`MESSAGE_TOO_BIG`] | a frame exceeded the server's size limit; nothing of it was kept | yes |
//! | 1011 | [`INTERNAL_ERROR`] | the server failed | yes |
//! | 1013 | [`TRY_AGAIN_LATER`] | the client read too slowly and its queue overflowed; rejoin with `since` | yes |
//! | 4000-4499 | application, transient | [`HEARTBEAT_TIMEOUT`], [`RATE_LIMITED`] | yes |
//! | 4500-4999 | application, terminal | [`UNAUTHORIZED`]: the token expired or its session was signed out; sign in again first | no |
//!
//! Any other code (including 1006, an abnormal drop seen only by the client) means: reconnect with backoff.

/// The server is shutting down; reconnect (another instance, or this one after its restart, will answer).
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol (e.g. an unmasked frame).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A frame kind the protocol does not use.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A text frame whose payload is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client broke a rule.
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame exceeded the server's size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server failed while serving this connection.
pub const INTERNAL_ERROR: u16 = 1011;
/// The connection's outgoing queue overflowed because the client read too slowly.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The peer stopped answering pings within the server's timeout.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The client kept sending after `rate_limited` errors without waiting their `retry_after_ms`.
pub const RATE_LIMITED: u16 = 4029;
/// The connection's credentials are no longer valid (its token expired, or its session was signed out,
/// its password changed or its account deleted): sign in, then connect.
pub const UNAUTHORIZED: u16 = 4501;

/// Whether a client should reconnect (with backoff) after the server closed with `code`: always, except
/// after an application-terminal code (4500-4999). A client that closes on purpose simply stops.
pub fn should_reconnect(code: u16) -> bool {
    !(4500..5000).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_table() {
        for code in [
            1000,
            GOING_AWAY,
            1006,
            MESSAGE_TOO_BIG,
            TRY_AGAIN_LATER,
            HEARTBEAT_TIMEOUT,
            RATE_LIMITED,
            4499,
        ] {
            assert!(should_reconnect(code), "{code}");
        }
        for code in [UNAUTHORIZED, 4500, 4999] {
            assert!(!should_reconnect(code), "{code}");
        }
    }
}
