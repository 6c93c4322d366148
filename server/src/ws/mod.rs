//! The WebSocket endpoint, `GET /ws`.
//!
//! [`upgrade`] runs every check before any upgrade, each refusal a plain HTTP status:
//! - `Origin` must be the app's own origin, one allowed by `--allowed-origin`, or (with
//!   `--loopback-origins`, the default of debug builds, for `trunk serve`) a page on this machine (403),
//!   against cross-site WebSocket hijacking;
//! - the token (cookie, `Authorization: Bearer`, or `?token=`) must be valid, unexpired and its session
//!   not signed out (401); without one the connection is a new guest's if `--allow-anonymous` (minting
//!   guests is budgeted per address: 429), else 401;
//! - the total, per-address and per-user connection limits (503, 429, 429).
//!
//! It then answers the [`handshake`] and hands the upgraded socket to a [`session`] task tracked by the
//! node, so that shutdown can close it with 1001 and wait for it.

pub mod handshake;
pub mod io;
pub mod session;

use crate::{api::request_token, forwarded::ClientInfo, identity, node::Node};
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::FutureExt;
use serde::Deserialize;
use std::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// tungstenite keeps a buffer of this size per connection from the start, and asks for at most this
/// much at a time; [`io::Io`] reads the socket in larger reads through one buffer per thread, so this
/// one only has to hold a frame's header and a short frame. A larger frame gets room for all of it once
/// its header is read, and is taken 128 bytes at a time from what `Io` already read (copies in memory,
/// not system calls: a 16 KiB frame is 128 of them).
const READ_BUFFER_BYTES: usize = 128;
/// tungstenite writes only control frames (a pong, the close frame): each goes at once into
/// [`io::Io`]'s write buffer, where the session queues its own frames itself. This bounds what tungstenite
/// holds while that buffer is full (a control frame's payload is at most 125 bytes).
const CONTROL_BUFFER_BYTES: usize = 1024;

/// Query parameters of `GET /ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// A session token (an account's from `/api/login`, or a guest's from an earlier welcome).
    pub token: Option<String>,
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// Whether a page from `origin` may open a WebSocket here.
fn origin_allowed(node: &Node, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser: cross-site hijacking needs a browser, which always sends Origin
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
    let public = node.config.public_origin.as_deref();
    own || public.is_some_and(|p| p.trim_end_matches('/').eq_ignore_ascii_case(origin))
        || (node.config.loopback_origins && loopback(origin))
        || node
            .config
            .allowed_origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// Whether `origin` is a page served over http from this machine (any port).
fn loopback(origin: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "[::1]") || host.eq_ignore_ascii_case("localhost")
}

/// Checks the handshake and upgrades.
pub async fn upgrade(
    State(node): State<Node>,
    client: ClientInfo,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    ws: handshake::Handshake,
) -> Response {
    let peer = client.addr;
    if !origin_allowed(&node, &headers) {
        tracing::warn!(%peer, origin = ?headers.get(header::ORIGIN), "refused upgrade: origin not allowed");
        return refuse(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let anonymous = node.config.allow_anonymous;
    let token = request_token(&headers, query.token.as_deref(), client);
    let (user, sid, guest, expires_at) = match token {
        Some(token) => match node.tokens.verify(&token) {
            Ok(v) if !v.guest => match v.sid {
                Some(sid) if !node.sessions.is_revoked(&sid) => {
                    (v.user, Some(sid), false, Some(v.expires_at))
                }
                _ => {
                    tracing::debug!(%peer, "refused upgrade: signed-out session");
                    return refuse(StatusCode::UNAUTHORIZED, "signed out: sign in again\n");
                }
            },
            Ok(v) if anonymous => (v.user, None, true, None),
            Ok(_) | Err(_) => {
                tracing::debug!(%peer, "refused upgrade: invalid token");
                return refuse(StatusCode::UNAUTHORIZED, "invalid or expired token\n");
            }
        },
        None if anonymous => {
            if node
                .limits
                .guests
                .take(&crate::limits::client_key(peer), Instant::now())
                .is_err()
            {
                tracing::warn!(%peer, "refused upgrade: too many new guests from this address");
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many new guests from this address\n",
                );
            }
            (identity::guest_name(), None, true, None)
        }
        None => return refuse(StatusCode::UNAUTHORIZED, "sign in first: no token\n"),
    };
    let Ok(permit) = node.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "refused upgrade: connection limit reached");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
    };
    let Some(ip_slot) = node
        .limits
        .per_ip
        .acquire(peer, node.config.max_connections_per_ip)
    else {
        tracing::warn!(%peer, "refused upgrade: per-address connection limit reached");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address\n",
        );
    };
    let conn = node.next_conn_id();
    let Ok(attached) = node.sessions.attach(&user, conn, sid, &node.shutdown).await else {
        tracing::warn!(%peer, %user, "refused upgrade: per-user connection limit reached");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this user\n",
        );
    };
    // Guests get a token for their next connection, to keep their name; accounts already have one.
    let token = guest.then(|| node.tokens.issue_guest(&user));
    let max = node.config.max_message_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(CONTROL_BUFFER_BYTES)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let tracked = node.tasks.token();
    ws.accept(config, move |socket| {
        // Made here, after the upgrade (see `Attached::reach`).
        let (mailbox, rx) = crate::mailbox::mailbox(node.config.queue_bytes);
        attached.reach(mailbox.clone());
        let peer = session::Peer {
            conn,
            addr: peer,
            user,
            token,
            expires_at,
            revoked: attached.revoked.clone(),
            mailbox: (mailbox, rx),
        };
        // The limits' slots are held until the session ends.
        session::run(socket, node, peer).map(move |()| drop((permit, ip_slot, attached, tracked)))
    })
}
