//! The WebSocket handshake (RFC 6455, section 4.2) and the task that serves the upgraded connection.
//!
//! axum's `WebSocketUpgrade` would do the same checks, but it wraps the socket in layers this server
//! does not need (a boxed `dyn` stream, a second `Message` type) and keeps its own setup alive next to
//! the session for as long as the connection lives. Here the task is one future that is first the
//! upgrade and then the session, never both: idle memory per connection is mostly that future.

use super::io::Io;
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::{FutureExt, future::Either};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig},
};

/// A WebSocket on an upgraded connection.
pub type Socket = WebSocketStream<Io>;

/// A valid WebSocket upgrade request, not yet answered.
#[derive(Debug)]
pub struct Handshake {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub enum NotUpgrade {
    /// A WebSocket version other than 13 (RFC 6455's): 426 naming the one this server speaks.
    #[error("not a WebSocket upgrade: Sec-WebSocket-Version must be 13")]
    Version,
    /// A header the handshake needs is missing or wrong.
    #[error("not a WebSocket upgrade: {0}")]
    Header(&'static str),
    /// The connection cannot be taken over (not HTTP/1.1 with upgrades).
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        let status = match self {
            NotUpgrade::Header(_) => StatusCode::BAD_REQUEST,
            NotUpgrade::Version | NotUpgrade::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
        };
        let body = format!("{self}\n");
        if matches!(self, NotUpgrade::Version) {
            // RFC 6455, section 4.2.2: say which versions are spoken.
            let version = (
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return (status, [version], body).into_response();
        }
        (status, body).into_response()
    }
}

/// Whether `headers[name]` is a comma-separated list holding `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The route takes GET only (`crate::http`).
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(NotUpgrade::Header("Connection must include upgrade"));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(NotUpgrade::Header("Upgrade must be websocket"));
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            return Err(NotUpgrade::Version);
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(NotUpgrade::Header("Sec-WebSocket-Key is missing"));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| NotUpgrade::Header("Sec-WebSocket-Key is invalid"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotUpgrade::NotUpgradable)?;
        Ok(Self { accept, on_upgrade })
    }
}

impl Handshake {
    /// Answers `101 Switching Protocols` and spawns the task that, once the connection is upgraded,
    /// serves it with the future `serve` makes. `serve` runs after the upgrade, on the task; a connection
    /// that is never upgraded (the client left) just ends the task.
    pub fn accept<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // `then` keeps the upgrade's state and the session's in one place, one after the other; an
        // `async` block would keep its captures beside the session for the connection's whole life.
        let task = self
            .on_upgrade
            .then(move |upgraded| match upgraded.map(io) {
                Ok(Some(io)) => Either::Left(
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).then(serve),
                ),
                Ok(None) => {
                    tracing::error!("an upgraded connection is not a TCP stream; it is closed");
                    Either::Right(std::future::ready(()))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "an accepted WebSocket upgrade did not complete");
                    Either::Right(std::future::ready(()))
                }
            });
        tokio::spawn(task);
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// The TCP socket under an upgraded connection (the listener serves HTTP on plain TCP streams), with
/// whatever the client sent after its request.
fn io(upgraded: Upgraded) -> Option<Io> {
    let parts = upgraded.downcast::<TokioIo<TcpStream>>().ok()?;
    Some(Io::new(parts.io.into_inner(), &parts.read_buf))
}
