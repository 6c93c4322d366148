//! The accept loop: TCP connections in, HTTP (and WebSocket upgrades) served by hyper.
//!
//! Our own loop rather than `axum::serve`, for what a production listener needs:
//! - a deadline for the request headers (`--handshake-timeout`): a client that connects and then sends
//!   nothing, or headers byte by byte, is disconnected instead of holding a socket forever. Only HTTP/1.1
//!   is spoken (the WebSocket upgrade is HTTP/1.1, and plain-text HTTP/2 has no browser using it), so any
//!   first bytes, an HTTP/2 preface included, are held to that deadline;
//! - a cap on plain HTTP connections, in total (`--max-http-connections`) and per address
//!   (`--max-connections-per-ip`, not applied to a `--trusted-proxy`). At the total cap the loop stops
//!   accepting until a connection is done, so a reconnect storm waits in the kernel's accept queue
//!   ([`bind`] makes it [`BACKLOG`] long) instead of being turned away; past the per-address cap a
//!   connection is closed at once. An upgraded WebSocket leaves this count for the WebSocket limits
//!   (see [`crate::ws`]);
//! - `TCP_NODELAY` on every accepted socket, so small frames are not held back by Nagle's algorithm.
//!
//! On shutdown it stops accepting, then lets in-flight HTTP requests finish (upgraded WebSockets are not
//! hyper's any more: their sessions close themselves, see [`crate::ws::session`]).

use crate::{http, limits::PerIp, node::Node};
use axum::{extract::ConnectInfo, http::Request};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{sync::Arc, time::Duration};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::Semaphore,
};

/// How many connections the kernel queues for the accept loop (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default). Tokio's `TcpListener::bind` asks for 1,024, which a reconnect
/// storm overflows into SYN retransmits (a second or more of delay per dropped SYN).
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-long accept queue.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Serves the node's routes on `listener` until the node shuts down; then waits up to the shutdown grace
/// period for open requests.
pub async fn serve(listener: TcpListener, node: Node) {
    let config = &node.config;
    let (handshake_timeout, grace) = (config.handshake_timeout, config.shutdown_grace);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let open = Arc::new(Semaphore::new(config.max_http_connections.max(1)));
    let per_ip = PerIp::default();
    let router = http::router(node.clone());
    let stop = node.shutdown.clone();
    let connections = TaskTracker::new();
    loop {
        // At the cap, connections wait in the accept queue (clients see a slower connect, not a refusal).
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let max_per_ip = if config.trusted_proxies.contains(&peer.ip()) {
            0
        } else {
            config.max_connections_per_ip
        };
        let Some(ip_slot) = per_ip.acquire(peer.ip(), max_per_ip) else {
            tracing::debug!(%peer, "refused connection: per-address limit reached");
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        connections.spawn(async move {
            // hyper's header deadline starts with the first byte; a client that sends nothing at all is
            // held to the same deadline here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(handshake_timeout, tcp.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            let connection = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            // Done with HTTP (closed, or upgraded to a WebSocket that the WebSocket limits count).
            drop((permit, ip_slot));
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after the grace period");
    }
}
