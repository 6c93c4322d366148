//! Server configuration: every knob is a command-line flag with an environment-variable fallback, so the
//! same binary runs from a terminal (`--bind ...`) or a service manager (`CHAT_BIND=...`). `--help` lists them.
//! Every limit turns off with 0.

use clap::{CommandFactory, FromArgMatches, Parser};
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

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

    /// Directory of the built web app (`trunk build --release` output), served at `/`. By default
    /// `frontend/dist` under the working directory, else the one of the checkout this binary was built
    /// in, so the server finds the app whatever directory it is started from.
    #[arg(long, env = "CHAT_STATIC_DIR", default_value = DEFAULT_STATIC_DIR)]
    pub static_dir: PathBuf,

    /// Secret for signing session tokens, at least 32 bytes. Default: a random key generated once into the
    /// data directory.
    #[arg(long, env = "CHAT_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// How often the server sends a WebSocket Ping to each connection (e.g. `15s`, `500ms`).
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A connection from which nothing (not even a Pong) arrived for this long is closed (code 4000), and
    /// so is one that accepts no bytes of what it is sent for this long.
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,

    /// Least time between the starts of two commits of chat messages (group commit). 0, the default,
    /// stores what is queued as soon as the previous commit ends. A few milliseconds let more chats
    /// share one commit (one fsync) and reach each recipient in fewer writes: much less CPU per message
    /// when many small commits would be made, for up to that much latency (see BENCHMARKS.md). At most
    /// one second.
    #[arg(long, env = "CHAT_COMMIT_INTERVAL", default_value = "0s", value_parser = commit_interval)]
    pub commit_interval: Duration,

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

    /// The origin users reach this server at, e.g. `https://chat.example.com`: its pages may open
    /// WebSockets here, and when it is HTTPS the session cookie is `Secure` (named `__Host-chat_token`).
    #[arg(long, env = "CHAT_PUBLIC_ORIGIN")]
    pub public_origin: Option<String>,

    /// An extra origin (scheme://host, and :port if not the default) whose pages may open WebSockets
    /// here; repeat for more.
    /// The app's own origin is always allowed. `*` allows any origin (development only).
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Pages served from this machine over http (`http://127.0.0.1:*`, `http://localhost:*`,
    /// `http://[::1]:*`), such as `trunk serve`'s on port 8081, may open WebSockets here. On by default
    /// in debug builds (`cargo run -p server`), so the two development commands work together; off by
    /// default in release builds, which are what gets deployed.
    #[arg(
        long,
        env = "CHAT_LOOPBACK_ORIGINS",
        default_value_t = cfg!(debug_assertions),
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub loopback_origins: bool,

    /// Frames per second a connection may send, of any kind, and chat messages per second per user
    /// (token buckets; an address gets 20 times a user's); 0 turns off every message and frame budget.
    #[arg(long, env = "CHAT_RATE_LIMIT", default_value_t = 10.0)]
    pub rate_limit: f64,

    /// Frames a connection (or messages a user) may send in a burst above the rate.
    #[arg(long, env = "CHAT_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,

    /// Most connections (HTTP and WebSocket) from one address (IPv6: one /64), and the burst of guest
    /// names one address may mint; 0 turns off every per-address cap. Generous for an office behind NAT.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Most WebSocket connections one user may hold at once (tabs, devices); 0 means no limit.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 32)]
    pub max_connections_per_user: usize,

    /// Most plain HTTP connections (page loads, API calls, handshakes in progress) at once; more wait in
    /// the accept queue until one is done.
    #[arg(long, env = "CHAT_MAX_HTTP_CONNECTIONS", default_value_t = 4096)]
    pub max_http_connections: usize,

    /// Failed sign-ins allowed per account name per minute (4 times as many per address); further
    /// attempts get 429 with `Retry-After`. 0 turns the throttle off.
    #[arg(long, env = "CHAT_LOGIN_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub login_failures_per_minute: u32,

    /// Accounts one address may register per hour; 0 means no limit.
    #[arg(long, env = "CHAT_REGISTRATIONS_PER_HOUR", default_value_t = 30)]
    pub registrations_per_hour: u32,

    /// A reverse proxy in front of this server (its address; repeat for more): for its requests the
    /// client's address is taken from `X-Forwarded-For` and HTTPS from `X-Forwarded-Proto`.
    #[arg(
        long = "trusted-proxy",
        env = "CHAT_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,

    /// A client must finish sending its first HTTP request's headers within this time, or is
    /// disconnected; an `/api` request body must arrive within it too.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Run as one of several nodes sharing this Redis (`redis://HOST:PORT[/DB]`, Redis 7): history,
    /// rooms, accounts, sessions and the token key live there, and chats reach the clients of every node.
    /// Acks mean stored in Redis, so run it with `appendonly yes` and `appendfsync always` (see README).
    /// Without it: one node with its embedded database in `--data-dir`.
    #[arg(long, env = "CHAT_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Instead of serving: copy the database of `--data-dir` (accounts, sessions, rooms, history) and its
    /// token key into the Redis of `--redis-url`, which must hold no chat data yet, and exit. Run it
    /// with the embedded server stopped, then start the nodes with `--redis-url`.
    #[arg(long, requires = "redis_url")]
    pub import_into_redis: bool,

    /// Instead of serving: write a consistent copy of the data directory's database to this file and
    /// exit. Safe while a server runs on the same data directory (nothing waits on it); the file must
    /// not exist yet. Restoring is copying it back as `chat.db` (with `token.key`) into a data directory.
    #[arg(long, value_name = "FILE")]
    pub backup_to: Option<PathBuf>,

    /// On SIGINT/SIGTERM, how long to wait for connections to close before exiting anyway.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

/// Where `trunk build --release` puts the web app, relative to the repository.
const DEFAULT_STATIC_DIR: &str = "frontend/dist";

/// Parses `--commit-interval`: a duration of at most a second (every chat may wait that long).
fn commit_interval(s: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if interval > Duration::from_secs(1) {
        return Err(format!(
            "{s} is longer than a second; every chat could wait that long"
        ));
    }
    Ok(interval)
}

impl Config {
    /// The directory the web app is served from: `--static-dir` as given, except that the default,
    /// when the working directory has no `frontend/dist`, is looked for beside the binary
    /// (`target/<profile>/server` in a checkout) and in the checkout it was built from.
    pub fn app_dir(&self) -> PathBuf {
        if self.static_dir != Path::new(DEFAULT_STATIC_DIR) || self.static_dir.is_dir() {
            return self.static_dir.clone();
        }
        let beside_binary = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join(DEFAULT_STATIC_DIR)));
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(DEFAULT_STATIC_DIR);
        beside_binary
            .into_iter()
            .chain([built_from])
            .find(|dir| dir.join("index.html").is_file())
            .unwrap_or_else(|| self.static_dir.clone())
    }

    /// Defaults for everything, with the given data directory: what tests and embedders start from. No
    /// `CHAT_*` variable of the caller's environment is read.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let matches = Self::command()
            .mut_args(|a| a.env(None))
            .get_matches_from(["server"]);
        let mut config = Self::from_arg_matches(&matches)
            .unwrap_or_else(|e| unreachable!("the defaults parse: {e}"));
        config.data_dir = data_dir.into();
        config
    }

    /// Whether users reach this server over HTTPS, as the operator declared.
    pub fn public_https(&self) -> bool {
        self.public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_interval_over_a_second_is_refused_saying_why() {
        let parse = |v: &str| Config::try_parse_from(["server", "--commit-interval", v]);
        let config = parse("2ms").expect("2 ms is fine");
        assert_eq!(config.commit_interval, Duration::from_millis(2));
        let err = parse("10s").expect_err("refused").to_string();
        assert!(err.contains("longer than a second"), "{err}");
    }
}
