//! One running server instance and the parts its connections share.
//!
//! A [`Node`] is cheap to clone (one `Arc`) and is the state of every HTTP handler and WebSocket session:
//! configuration, the [`Hub`] of room members, the [`History`] store, the [`RelayHandle`] that stores and
//! publishes messages, session [`Tokens`] and [`Sessions`], [`Accounts`], private-room [`RoomAccess`], the
//! [`Limits`], and the shutdown signal.

use crate::{
    access::RoomAccess,
    accounts::Accounts,
    broker::Broker,
    config::Config,
    history::History,
    hub::{ConnId, Hub},
    identity::Tokens,
    limits::Limits,
    metrics::Metrics,
    relay::RelayHandle,
    sequencer::Sequencer,
    sessions::Sessions,
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The shared state of one server instance.
#[derive(Debug, Clone)]
pub struct Node(Arc<NodeInner>);

/// What a [`Node`] holds.
#[derive(Debug)]
pub struct NodeInner {
    /// The configuration it was started with.
    pub config: Config,
    /// Room membership of this node's connections.
    pub hub: Arc<Hub>,
    /// Puts each room's messages into the hub in order, and releases acks after them.
    pub sequencer: Arc<Sequencer>,
    /// The Redis connection, in the Redis mode.
    pub broker: Option<Arc<Broker>>,
    /// Durable room history.
    pub history: Arc<dyn History>,
    /// Where chat messages go to be stored and published.
    pub relay: RelayHandle,
    /// Session token issuing and checking.
    pub tokens: Tokens,
    /// User accounts.
    pub accounts: Accounts,
    /// Private rooms and their members.
    pub access: RoomAccess,
    /// Sign-in sessions and who is connected.
    pub sessions: Arc<Sessions>,
    /// Budgets shared by connections and requests.
    pub limits: Limits,
    /// What the node counts (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// One permit per open WebSocket connection.
    pub connections: Arc<Semaphore>,
    /// Cancelled when the node begins shutting down; sessions then close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so that shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Which build of the web app this node serves (a hash of its page), sent in the welcome so that
    /// an open page notices a new deploy; `None` when no app is built.
    pub app_version: Option<String>,
    next_conn: AtomicU64,
}

impl Node {
    /// Assembles a node from its parts; the limits and the shutdown signal are made here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        hub: Arc<Hub>,
        sequencer: Arc<Sequencer>,
        broker: Option<Arc<Broker>>,
        history: Arc<dyn History>,
        relay: RelayHandle,
        tokens: Tokens,
        accounts: Accounts,
        access: RoomAccess,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let app_version = crate::http::app_version(&config.app_dir());
        let limits = Limits::new(&config, broker.as_ref());
        Self(Arc::new(NodeInner {
            config,
            hub,
            sequencer,
            broker,
            history,
            relay,
            tokens,
            accounts,
            access,
            sessions,
            limits,
            metrics,
            connections,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            app_version,
            next_conn: AtomicU64::new(1),
        }))
    }

    /// Whether the node can serve chats now (in the Redis mode: Redis answers and the subscription is
    /// up).
    pub fn ready(&self) -> bool {
        self.broker.as_ref().is_none_or(|b| b.ready())
    }

    /// A new connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.0.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.0
    }
}
