//! The chat relay server.
//!
//! How one chat message travels through this crate:
//!
//! 1. [`ws`] accepts `GET /ws` (identity, limits) and starts a [`ws::session`] task per connection.
//! 2. The session decodes the frame once ([`shared::decode_client`]) and submits it to the [`relay`].
//! 3. The relay stores a batch of messages in the [`history`] (one commit), which assigns each its room's
//!    next `seq`; only then does it hand them, in order, to the [`sequencer`]. In the Redis mode the store
//!    publishes them itself, and this node's [`broker::subscriber`] hands them (and every other node's) to
//!    the sequencer.
//! 4. The sequencer passes each room's messages to the [`hub`] in `seq` order; the hub pushes the one
//!    serialized frame into the [`mailbox`] of every other connection in the room, and the sequencer
//!    pushes the `ack` into the sender's once its message is out.
//! 5. Each session writes its mailbox to its socket, dropping anything a replay already sent.
//!
//! [`run`] wires it together and owns shutdown: on the signal it stops accepting, tells every session to
//! close with 1001, waits for them, and lets the relay store what is still queued.

pub mod access;
pub mod accounts;
pub mod api;
pub mod broker;
pub mod config;
pub mod db;
pub mod forwarded;
pub mod history;
pub mod http;
pub mod hub;
pub mod identity;
pub mod import;
pub mod limits;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod node;
pub mod presence;
pub mod recent;
pub mod relay;
pub mod sequencer;
pub mod sessions;
pub mod users;
pub mod ws;

pub use config::Config;

use access::RoomAccess;
use accounts::Accounts;
use broker::{Broker, subscriber::Subscriber};
use db::Database;
use history::{History, Retention, redis::RedisHistory, sqlite::SqliteHistory};
use hub::Hub;
use identity::Tokens;
use node::Node;
use sequencer::Sequencer;
use sessions::Sessions;
use std::{future::Future, sync::Arc};
use tokio::net::TcpListener;
use users::{UserStore, redis::RedisUsers, sqlite::SqliteUsers};

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
    /// The sessions could not be loaded.
    #[error("loading sessions: {0}")]
    Users(#[from] users::StoreError),
    /// Redis could not be reached at start.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
    let metrics = Arc::new(metrics::Metrics::default());
    let (broker, history, store): (_, Arc<dyn History>, Arc<dyn UserStore>) =
        match &config.redis_url {
            Some(url) => {
                let broker = Broker::connect(url, Arc::clone(&metrics)).await?;
                tracing::info!(
                    node = broker.node(),
                    "redis mode: sharing history, rooms and accounts"
                );
                (
                    Some(Arc::clone(&broker)),
                    Arc::new(RedisHistory::new(Arc::clone(&broker))),
                    Arc::new(RedisUsers::new(broker)),
                )
            }
            None => {
                let db = Database::open(&config.data_dir)?;
                (
                    None,
                    Arc::new(SqliteHistory::new(db.clone())),
                    Arc::new(SqliteUsers::new(db)),
                )
            }
        };
    let tokens = match (&broker, config.token_secret.as_deref()) {
        (Some(broker), None) => Tokens::from_key(&broker.token_key().await?),
        (_, secret) => Tokens::load_or_create(&config.data_dir, secret)?,
    };
    let hashers = std::thread::available_parallelism().map_or(2, usize::from);
    let accounts = Accounts::new(Arc::clone(&store), hashers)?;
    let sessions =
        Arc::new(Sessions::open(store, config.max_connections_per_user, broker.clone()).await?);
    let hub = Arc::new(Hub::default());
    let retention = Retention {
        count: config.retention_count,
        age: config.retention_age,
    };
    let keep = usize::try_from(retention.kept()).unwrap_or(usize::MAX);
    let sequencer = Arc::new(Sequencer::new(Arc::clone(&hub), keep));
    let access = RoomAccess::new(Arc::clone(&history), Arc::clone(&hub));
    // Retention is applied before the first connection, then periodically by the relay.
    match history.prune(retention, now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "retention applied"),
        Err(e) => tracing::error!(error = %e, "retention failed"),
    }
    let (relay, relay_task) = relay::spawn(
        Arc::clone(&history),
        Arc::clone(&sequencer),
        Arc::clone(&metrics),
        retention,
        config.commit_interval,
    );
    let stop_background = tokio_util::sync::CancellationToken::new();
    let subscriber = broker.as_ref().map(|broker| {
        Subscriber {
            broker: Arc::clone(broker),
            sequencer: Arc::clone(&sequencer),
            history: Arc::clone(&history),
            access: access.clone(),
            hub: Arc::clone(&hub),
            sessions: Arc::clone(&sessions),
        }
        .spawn(stop_background.clone())
    });
    let leases = sessions.keep_leases(stop_background.clone());
    let presence = presence::spawn(Arc::clone(&hub), broker.clone(), stop_background.clone());
    let grace = config.shutdown_grace;
    let node = Node::new(
        config, hub, sequencer, broker, history, relay, tokens, accounts, access, sessions, metrics,
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
    stop_background.cancel();
    for task in subscriber.into_iter().chain(leases).chain([presence]) {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a background task failed");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
