//! Server configuration: every knob is a command-line flag with an environment-variable fallback, so the
//! same binary runs from a terminal (`--bind ...`) or a service manager (`CHAT_BIND=...`). `--help` lists them.

use clap::Parser;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// The chat relay server.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket (`GET /ws`).
    #[arg(long, env = "CHAT_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory for the SQLite database and the token signing key; created on first start.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Directory of the built web app (`trunk build --release` output), served at `/`.
    #[arg(long, env = "CHAT_STATIC_DIR", default_value = "frontend/dist")]
    pub static_dir: PathBuf,

    /// Secret for signing session tokens. Default: a random key generated once into the data directory.
    #[arg(long, env = "CHAT_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// How often the server sends a WebSocket Ping to each connection (e.g. `15s`, `500ms`).
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A connection from which nothing (not even a Pong) arrived for this long is closed (code 4000).
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,

    /// Messages kept per room; older ones are deleted. 0 keeps all.
    #[arg(long, env = "CHAT_RETENTION_COUNT", default_value_t = 10_000)]
    pub retention_count: u64,

    /// Messages older than this are deleted (e.g. `30days`, `12h`). 0 keeps them forever.
    #[arg(long, env = "CHAT_RETENTION_AGE", default_value = "30days", value_parser = humantime::parse_duration)]
    pub retention_age: Duration,

    /// Largest inbound WebSocket message in bytes; a larger one closes the connection with code 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_BYTES", default_value_t = shared::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Most bytes waiting to be written to one connection; a client that reads slower than that is
    /// disconnected (code 1013) and recovers what it missed when it rejoins.
    #[arg(long, env = "CHAT_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub queue_bytes: usize,

    /// Most WebSocket connections at once; further upgrades get HTTP 503.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Let connections without a token in, as `guest-xxxxxx` (for demos and benchmarks).
    #[arg(long, env = "CHAT_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// How long a session token from `/api/login` stays valid; a connection is closed (4501) when its
    /// token expires.
    #[arg(long, env = "CHAT_TOKEN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// An extra origin (scheme://host[:port]) whose pages may open WebSockets here; repeat for more.
    /// The app's own origin is always allowed. `*` allows any origin (development only).
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Chat messages per second allowed per connection and per user (token bucket); 0 turns it off.
    #[arg(long, env = "CHAT_RATE_LIMIT", default_value_t = 10.0)]
    pub rate_limit: f64,

    /// Messages a connection or user may send in a burst above the rate.
    #[arg(long, env = "CHAT_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,

    /// Most WebSocket connections from one IP address; 0 means no limit (the default, since many users
    /// can share one address behind NAT).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// A client must finish sending its HTTP request headers within this time, or is disconnected.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to wait for connections to close before exiting anyway.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for everything, with the given data directory: what tests and embedders start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["server"]);
        config.data_dir = data_dir.into();
        config
    }
}
