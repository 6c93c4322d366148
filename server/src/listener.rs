//! The accept loop: TCP connections in, HTTP (and WebSocket upgrades) served by hyper.
//!
//! Our own loop rather than `axum::serve`, for two things a production listener needs:
//! - a deadline for the request headers (`--handshake-timeout`): a client that connects and then sends
//!   nothing, or headers byte by byte, is disconnected instead of holding a socket forever;
//! - `TCP_NODELAY` on every accepted socket, so small frames are not held back by Nagle's algorithm.
//!
//! On shutdown it stops accepting, then lets in-flight HTTP requests finish (upgraded WebSockets are not
//! hyper's any more: their sessions close themselves, see [`crate::ws::session`]).

use axum::{Router, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `router` on `listener` until `stop` is cancelled; then waits up to `grace` for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    handshake_timeout: Duration,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let graceful = GracefulShutdown::new();
    loop {
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
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let builder = builder.clone();
        let graceful_watch = graceful.watcher();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        tokio::spawn(async move {
            // hyper's header deadline starts with the first byte; a client that sends nothing at all is
            // held to the same deadline here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(handshake_timeout, tcp.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            if let Err(e) = graceful_watch.watch(connection).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after the grace period");
    }
}
