//! The WebSocket endpoint, `GET /ws`.
//!
//! [`upgrade`] runs the handshake checks before any upgrade (identity from `?token=`, the connection
//! limit), sizes the socket's buffers small, and hands the upgraded socket to a [`session`] task tracked
//! by the node, so that shutdown can close it with 1001 and wait for it.

pub mod session;

use crate::{
    identity::{self, GUEST_TOKEN_TTL},
    node::Node,
};
use axum::{
    extract::{ConnectInfo, Query, State, WebSocketUpgrade},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use std::net::SocketAddr;

/// tungstenite reads in chunks of this size (its default, 128 KiB per connection, is far too much for
/// many idle connections).
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Writes are buffered up to this size before going to the socket; a flush always writes everything.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// Query parameters of `GET /ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// A session token from an earlier welcome.
    pub token: Option<String>,
}

/// Checks the handshake and upgrades.
pub async fn upgrade(
    State(node): State<Node>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let user = match query.token.as_deref() {
        Some(token) => match node.tokens.verify(token) {
            Ok(user) => user,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "refused upgrade");
                return (StatusCode::UNAUTHORIZED, "invalid or expired token\n").into_response();
            }
        },
        None => identity::guest_name(),
    };
    let Ok(permit) = node.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "refused upgrade: connection limit reached");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let token = node.tokens.issue(&user, GUEST_TOKEN_TTL);
    let max = node.config.max_message_bytes;
    let queue = node.config.queue_bytes;
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES + queue + max)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let tracked = node.sessions.token();
            async move {
                let peer_info = session::Peer {
                    addr: peer,
                    user,
                    token,
                };
                session::run(socket, node, peer_info).await;
                drop(permit);
                drop(tracked);
            }
        })
}
