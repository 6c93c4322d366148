//! Opening connections: from which local address, with which socket buffers, through which handshake.
//!
//! One local address has about 28,000 ephemeral ports (Linux's default range), so past that a client
//! needs other source addresses: [`Sources`] spreads connections over `127.0.0.1`, `127.0.0.2`, … (all
//! of 127.0.0.0/8 is loopback). The generator's own read buffers are small (4 KiB) so that 10,000 of its
//! connections cost it little.

use crate::protocol::{Incoming, Protocol};
use futures_util::{SinkExt, StreamExt};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{self, Message, protocol::WebSocketConfig},
};

/// A connection to the server.
pub type Ws = WebSocketStream<TcpStream>;

/// How long a connect and its welcome may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one local address can hold (a margin under Linux's ~28k ephemeral ports).
const PER_SOURCE: usize = 25_000;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// Nothing came in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server closed or sent something unexpected.
    #[error("{0}")]
    Protocol(String),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's addresses (several nodes: client `i` goes to the `i % n`th).
    pub addrs: Vec<SocketAddr>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Local addresses to connect from.
    pub sources: Sources,
}

/// Local source addresses, taken in turn.
#[derive(Debug, Clone)]
pub struct Sources(Vec<IpAddr>);

impl Sources {
    /// `127.0.0.1` up to `127.0.0.<count>`.
    pub fn loopback(count: usize) -> Self {
        let count = count.clamp(1, 254) as u8;
        Self(
            (1..=count)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
        )
    }

    /// Enough loopback addresses for `connections`.
    pub fn for_connections(connections: usize) -> Self {
        Self::loopback(connections.div_ceil(PER_SOURCE))
    }

    /// How many addresses.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The address for connection number `i`.
    pub fn pick(&self, i: usize) -> IpAddr {
        self.0[i % self.0.len()]
    }
}

/// An open connection and what its welcome said.
#[derive(Debug)]
pub struct Connected {
    /// The WebSocket.
    pub ws: Ws,
    /// Ours: the token for coming back as the same user.
    pub token: Option<String>,
}

/// Connects as client number `i` (with `token`, ours only) and waits for the welcome.
pub async fn connect(
    target: &Target,
    i: usize,
    token: Option<&str>,
) -> Result<Connected, ConnError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(target, i, token))
        .await
        .map_err(|_| ConnError::Timeout("the welcome"))?
}

async fn connect_now(
    target: &Target,
    i: usize,
    token: Option<&str>,
) -> Result<Connected, ConnError> {
    let addr = target.addrs[i % target.addrs.len()];
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Binding before connecting makes the kernel pick a port that no socket holds in any state, TIME_WAIT
    // included, by a linear search: slow under churn, and out of ports soon. With one source address
    // `connect` picks the port itself (and may reuse TIME_WAIT ones on loopback).
    if addr.is_ipv4() && target.sources.len() > 1 {
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(target.sources.pick(i), 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}{}", target.protocol.path(token));
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    loop {
        let Some(frame) = ws.next().await else {
            return Err(ConnError::Protocol("closed before the welcome".into()));
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        match target.protocol.read(&text) {
            Incoming::Welcome { token } => {
                let token = token.map(str::to_owned);
                return Ok(Connected { ws, token });
            }
            Incoming::Open => {
                if let Some(connect) = target.protocol.connect_namespace() {
                    ws.send(Message::text(connect)).await?;
                }
            }
            Incoming::Error(e) => return Err(ConnError::Protocol(format!("refused: {e}"))),
            _ => {}
        }
    }
}

/// Ours: joins `room` (from `since`) and returns the `seq`s replayed before `joined`, and the head.
pub async fn join(
    ws: &mut Ws,
    room: &str,
    since: Option<u64>,
) -> Result<(Vec<u64>, u64), ConnError> {
    ws.send(Message::text(Protocol::join(room, since))).await?;
    let mut replayed = Vec::new();
    let wait = async {
        while let Some(frame) = ws.next().await {
            let Message::Text(text) = frame? else {
                continue;
            };
            match Protocol::Chat.read(&text) {
                Incoming::Chat { seq: Some(seq), .. } => replayed.push(seq),
                Incoming::Joined { head } => return Ok(head),
                Incoming::Error(e) => {
                    return Err(ConnError::Protocol(format!("join refused: {e}")));
                }
                _ => {}
            }
        }
        Err(ConnError::Protocol("closed during a join".into()))
    };
    let head = tokio::time::timeout(CONNECT_TIMEOUT, wait)
        .await
        .map_err(|_| ConnError::Timeout("joined"))??;
    Ok((replayed, head))
}
