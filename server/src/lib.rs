//! The chat relay server.
//!
//! How one chat message travels through this crate:
//!
//! 1. [`ws`] accepts `GET /ws` (identity, limits) and starts a [`ws::session`] task per connection.
//! 2. The session decodes the frame once ([`shared::decode_client`]) and submits it to the [`relay`].
//! 3. The relay stores a batch of messages in the [`history`] (one commit), which assigns each its room's
//!    next `seq`; only then does it publish them, in order.
//! 4. The [`hub`] pushes the one serialized frame into the [`mailbox`] of every other connection in the
//!    room, and the relay pushes an `ack` into the sender's.
//! 5. Each session writes its mailbox to its socket, dropping anything a replay already sent.
//!
//! [`run`] wires it together and owns shutdown: on the signal it stops accepting, tells every session to
//! close with 1001, waits for them, and lets the relay store what is still queued.

pub mod access;
pub mod accounts;
pub mod api;
pub mod config;
pub mod db;
pub mod forwarded;
pub mod history;
pub mod http;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod node;
pub mod relay;
pub mod sessions;
pub mod ws;

pub use config::Config;

use access::RoomAccess;
use accounts::Accounts;
use db::Database;
use history::{History, Retention, sqlite::SqliteHistory};
use hub::Hub;
use identity::Tokens;
use node::Node;
use sessions::Sessions;
use std::{future::Future, sync::Arc};
use tokio::net::TcpListener;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The token key could not be loaded.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The accounts table could not be opened.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
}

/// The current time, as the server stamps messages and tokens.
pub fn now() -> shared::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    shared::Timestamp::from_unix_ms(ms)
}

/// Serves `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tokens = Tokens::load_or_create(&config.data_dir, config.token_secret.as_deref())?;
    let db = Database::open(&config.data_dir)?;
    let history: Arc<dyn History> = Arc::new(SqliteHistory::new(db.clone()));
    let hashers = std::thread::available_parallelism().map_or(2, usize::from);
    let accounts = Accounts::new(db.clone(), hashers)?;
    let sessions = Sessions::open(db, config.max_connections_per_user).await?;
    let hub = Arc::new(Hub::default());
    let access = RoomAccess::new(Arc::clone(&history), Arc::clone(&hub));
    let retention = Retention {
        count: config.retention_count,
        age: config.retention_age,
    };
    // Retention is applied before the first connection, then periodically by the relay.
    match history.prune(retention, now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "retention applied"),
        Err(e) => tracing::error!(error = %e, "retention failed"),
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let (relay, relay_task) = relay::spawn(
        Arc::clone(&history),
        Arc::clone(&hub),
        Arc::clone(&metrics),
        retention,
    );
    let grace = config.shutdown_grace;
    let node = Node::new(
        config, hub, history, relay, tokens, accounts, access, sessions, metrics,
    );

    let stop = node.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing connections");
        stop.cancel();
    });
    listener::serve(listener, node.clone()).await;

    // No new connections now. Sessions saw the cancellation and are closing with 1001.
    node.tasks.close();
    if tokio::time::timeout(grace, node.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = node.tasks.len(),
            "sessions still open after the grace period"
        );
    }
    // Dropping the last relay handle lets the relay store what is queued and stop.
    drop(node);
    if let Err(e) = relay_task.await {
        tracing::error!(error = %e, "relay task failed");
    }
    tracing::info!("stopped");
    Ok(())
}
