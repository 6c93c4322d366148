//! The scenarios. Each connects its clients, measures one thing and returns a summary (one JSON
//! object) with `ok: false` and the `problems` found when a guarantee did not hold (a chat lost or
//! delivered twice, a gap after a reconnect, a refused connection).

pub mod acks;
pub mod churn;
pub mod fanout;
pub mod idle;
pub mod storm;

use crate::{
    conn::{self, ConnError, Connected, Target},
    measure::{Clock, Processes},
};
use futures_util::{StreamExt, stream};
use serde_json::Value;
use std::time::Duration;

/// What every scenario runs against.
#[derive(Debug, Clone)]
pub struct Env {
    /// The server.
    pub target: Target,
    /// Its processes, for CPU and memory.
    pub processes: Processes,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
}

/// One scenario and its parameters.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// N connections in R rooms, S senders at a paced total rate: deliveries/s, delivery ratio,
    /// latency, server CPU per delivery.
    Fanout(fanout::Args),
    /// N connections held open: server memory per connection.
    Idle(idle::Args),
    /// Connect, welcome (ours: token checked), join, close, as fast as C workers can: connections/s.
    Churn(churn::Args),
    /// N clients, each M messages behind, reconnect at once with `since` (ours): time until all caught
    /// up, gaps, duplicates.
    Storm(storm::Args),
    /// S senders in one room, W chats in flight each (ours): acked (stored) chats per second.
    Acks(acks::Args),
}

/// A scenario could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Connecting the clients failed.
    #[error("setting up: {0}")]
    Setup(#[from] ConnError),
    /// The scenario needs our protocol.
    #[error("the {0} scenario needs the chat protocol (rooms, acks, seq)")]
    NeedsOurs(&'static str),
    /// Bad parameters.
    #[error("{0}")]
    Invalid(String),
}

impl Scenario {
    /// Runs it and returns its summary.
    pub async fn run(&self, env: &Env) -> Result<Value, RunError> {
        let summary = match self {
            Self::Fanout(args) => serde_json::to_value(fanout::run(args, env).await?),
            Self::Idle(args) => serde_json::to_value(idle::run(args, env).await?),
            Self::Churn(args) => serde_json::to_value(churn::run(args, env).await?),
            Self::Storm(args) => serde_json::to_value(storm::run(args, env).await?),
            Self::Acks(args) => serde_json::to_value(acks::run(args, env).await?),
        };
        Ok(summary.expect("summaries serialize"))
    }

    /// The most connections it opens at once.
    pub fn connections(&self) -> usize {
        match self {
            Self::Fanout(a) => a.clients,
            Self::Idle(a) => a.clients,
            Self::Churn(a) => a.concurrency * 2,
            Self::Storm(a) => a.clients + a.rooms,
            Self::Acks(a) => a.senders,
        }
    }
}

/// Connections opened at once while setting up.
const CONNECTING_AT_ONCE: usize = 256;

/// Connects clients `0..n` (client `i` with `tokens[i]`, if given), `CONNECTING_AT_ONCE` at a time.
pub(crate) async fn connect_all(
    target: &Target,
    n: usize,
    tokens: Option<&[Option<String>]>,
) -> Result<Vec<Connected>, ConnError> {
    let mut connected: Vec<(usize, Connected)> = stream::iter(0..n)
        .map(|i| {
            let token = tokens.and_then(|t| t[i].clone());
            async move {
                conn::connect(target, i, token.as_deref())
                    .await
                    .map(|c| (i, c))
            }
        })
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    connected.sort_by_key(|(i, _)| *i);
    Ok(connected.into_iter().map(|(_, c)| c).collect())
}

/// Prints a progress line to stderr every second while it lives.
#[derive(Debug)]
pub(crate) struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    /// Prints `line()` every second (when `env.progress`).
    pub(crate) fn start(
        env: &Env,
        name: &'static str,
        line: impl Fn() -> String + Send + 'static,
    ) -> Self {
        if !env.progress {
            return Self(None);
        }
        let clock = Clock::start();
        Self(Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!("{name} {:5.1} s: {}", clock.seconds(), line());
            }
        })))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The name of room number `r` of `rooms` (the lobby when there is one, as the other servers have).
pub(crate) fn room_name(r: usize, rooms: usize) -> String {
    if rooms <= 1 {
        "lobby".to_owned()
    } else {
        format!("bench-{r}")
    }
}
