//! Test harness: start a server in-process (or as a separate process), connect WebSocket clients that
//! speak only raw JSON (so the tests check the wire contract, not our own types), and read what arrives.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use server::Config;
use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, handshake::client::Request},
};

/// How long to wait for something that should arrive.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Where a test server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The embedded SQLite database in its data directory.
    Embedded,
    /// A `redis-server` of its own (see [`RedisServer`]).
    Redis,
}

/// Runs each named `async fn(Mode)` test once per storage mode, as `embedded::name` and `redis::name`:
/// the protocol's tests are one source for both.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Mode::Embedded).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Mode::Redis).await
                }
            )*
        }
    };
}
pub(crate) use in_both_modes;

/// A `redis-server` on a free loopback port with its own directory, persisting as the README asks
/// (`appendonly yes`, `appendfsync always`); killed when dropped.
pub(crate) struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl RedisServer {
    pub(crate) async fn start() -> std::sync::Arc<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let redis = Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: std::sync::Mutex::new(None),
        };
        redis.start_again().await;
        std::sync::Arc::new(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and directory, and waits until it answers.
    pub(crate) async fn start_again(&self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (the test command installs it)");
        *self.child.lock().expect("lock") = Some(child);
        eventually("redis-server answers PING", || async {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
                return false;
            };
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut reply = [0u8; 7];
            stream.write_all(b"PING\r\n").await.is_ok()
                && stream.read_exact(&mut reply).await.is_ok()
                && &reply == b"+PONG\r\n"
        })
        .await;
    }

    /// SIGKILL: Redis gets no chance to write anything more; what it acknowledged is in its AOF.
    pub(crate) fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("wait for redis-server");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server running in this process on a free loopback port, with its own data directory (and, in the
/// Redis mode, a Redis it may share with other nodes).
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) redis: Option<std::sync::Arc<RedisServer>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::ServerError>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in_with(Mode::Embedded, adjust).await
    }

    pub(crate) async fn start_in(mode: Mode) -> Self {
        Self::start_in_with(mode, |_| {}).await
    }

    pub(crate) async fn start_in_with(mode: Mode, adjust: impl FnOnce(&mut Config)) -> Self {
        let redis = match mode {
            Mode::Embedded => None,
            Mode::Redis => Some(RedisServer::start().await),
        };
        Self::launch(tempfile::tempdir().expect("tempdir"), redis, adjust).await
    }

    /// Another node on the Redis `redis`.
    pub(crate) async fn node_on(
        redis: &std::sync::Arc<RedisServer>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(dir, Some(std::sync::Arc::clone(redis)), adjust).await
    }

    /// Stops this server and starts a new one on the same data (directory or Redis).
    pub(crate) async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.stop().await;
        let Self { dir, redis, .. } = self;
        Self::launch(dir, redis, adjust).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        redis: Option<std::sync::Arc<RedisServer>>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::with_data_dir(dir.path());
        config.static_dir = dir.path().join("static");
        config.redis_url = redis.as_ref().map(|r| r.url());
        // Most tests are about delivery, not about accounts or flooding; those tests turn these back.
        config.allow_anonymous = true;
        config.rate_limit = 0.0;
        config.login_failures_per_minute = 0;
        config.registrations_per_hour = 0;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async {
            let _ = stopped.await;
        }));
        let server = Self {
            addr,
            dir,
            redis,
            stop: Some(stop),
            task: Some(task),
        };
        if server.redis.is_some() {
            // Serving before the subscription is up would be fine (chats wait), but tests expect the
            // node's fan-out from their first frame.
            let addr = server.addr;
            eventually("the node is ready", || async move {
                http(addr, "GET", "/readyz", &[], "").await.0 == 200
            })
            .await;
        }
        server
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Signals shutdown and waits for `run` to return.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// The server binary started as a child process (so it can be killed with SIGKILL).
pub(crate) struct ServerProcess {
    pub(crate) addr: SocketAddr,
    child: tokio::process::Child,
}

impl ServerProcess {
    pub(crate) async fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[]).await
    }

    /// Starts the binary with `extra` flags after the test defaults (guests in, no rate limit).
    pub(crate) async fn start_with(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--allow-anonymous",
                "--rate-limit",
                "0",
                "--max-connections-per-ip",
                "0",
                "--login-failures-per-minute",
                "0",
                "--registrations-per-hour",
                "0",
                "--static-dir",
                "/nonexistent",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env_clear()
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest
                        .split_whitespace()
                        .next()
                        .expect("addr")
                        .parse()
                        .expect("socket addr");
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server starts");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { addr, child }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The process's resident memory, in bytes (Linux).
    pub(crate) fn rss_bytes(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    /// The most resident memory the process ever had, in bytes (Linux).
    pub(crate) fn peak_rss_bytes(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    fn status_kb(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// How many sockets (listening, connected) the process holds open.
    pub(crate) fn open_sockets(&self) -> usize {
        let pid = self.child.id().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("proc fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// SIGTERM, then the exit status (within [`WAIT`]).
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits in time")
            .expect("wait")
    }

    /// SIGKILL: no shutdown code runs.
    pub(crate) async fn kill9(mut self) {
        self.child.kill().await.expect("kill");
    }
}

/// A WebSocket client that speaks raw JSON.
pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The name the server assigned (from the welcome).
    pub(crate) user: String,
    /// The token from the welcome.
    pub(crate) token: String,
    /// An account's list of rooms (the `rooms` frame after the welcome); `Null` for a guest.
    pub(crate) rooms: Value,
    /// Every `presence` frame received, in order. They are ephemeral and come whenever someone arrives or
    /// leaves, so the other reads skip them; presence tests look here ([`Client::wait_presence`]).
    pub(crate) presence: Vec<Value>,
    /// Frames read while waiting for presence, handed out by the next reads.
    held: std::collections::VecDeque<Frame>,
}

impl Client {
    /// Connects and reads the welcome.
    pub(crate) async fn connect(url: &str) -> Self {
        Self::connect_with(url.into_client_request().expect("request")).await
    }

    /// Connects with a prepared request (extra headers) and reads the welcome.
    pub(crate) async fn connect_with(request: Request) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        let mut c = Self {
            ws,
            user: String::new(),
            token: String::new(),
            rooms: Value::Null,
            presence: Vec::new(),
            held: std::collections::VecDeque::new(),
        };
        let welcome = c.recv().await;
        assert_eq!(
            welcome["type"], "status",
            "first frame is the welcome: {welcome}"
        );
        assert_eq!(welcome["message"], "Welcome to the chat!");
        c.user = welcome["user"].as_str().expect("user").to_owned();
        // Guests get a token to keep their name; accounts already have theirs.
        c.token = welcome["token"].as_str().unwrap_or_default().to_owned();
        if c.token.is_empty() {
            let rooms = c.recv().await;
            assert_eq!(
                rooms["type"], "rooms",
                "an account's second frame is its list of rooms: {rooms}"
            );
            c.rooms = rooms["rooms"].clone();
        }
        c
    }

    /// Connects as the user of an earlier connection.
    pub(crate) async fn reconnect(url: &str, token: &str) -> Self {
        Self::connect(&format!("{url}?token={token}")).await
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    pub(crate) async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub(crate) async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// `chat` with an id and a room.
    pub(crate) async fn chat(&mut self, room: &str, id: &str, text: &str) {
        self.send(json!({"type": "chat", "room": room, "id": id, "text": text}))
            .await;
    }

    /// The next JSON frame (pings are answered and skipped); panics on close or after [`WAIT`].
    pub(crate) async fn recv(&mut self) -> Value {
        match self.next_frame(WAIT).await {
            Some(Frame::Json(v)) => v,
            Some(Frame::Closed(code)) => {
                panic!("connection closed ({code:?}) while waiting for a frame")
            }
            None => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next JSON frame of type `kind`, skipping nothing: any other frame fails the test.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected a {kind} frame, got {v}");
        v
    }

    /// Asserts nothing arrives for `quiet`.
    pub(crate) async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(frame) = self.next_frame(quiet).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// The next JSON frame if one arrives within `wait`.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        match self.next_frame(wait).await {
            Some(Frame::Json(v)) => Some(v),
            _ => None,
        }
    }

    /// The next JSON frame, or `Err` with the close code once the server closed.
    pub(crate) async fn next_json_or_close(&mut self) -> Result<Value, Option<u16>> {
        match self.next_frame(WAIT).await {
            Some(Frame::Json(v)) => Ok(v),
            Some(Frame::Closed(code)) => Err(code),
            None => panic!("nothing within {WAIT:?}"),
        }
    }

    /// Waits for the server to close the connection and returns the close code.
    pub(crate) async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next_frame(WAIT).await {
                Some(Frame::Closed(code)) => return code,
                Some(Frame::Json(_)) => continue,
                None => panic!("not closed within {WAIT:?}"),
            }
        }
    }

    /// Waits for a `presence` frame of `room` that `check` accepts (the newest one received counts).
    pub(crate) async fn wait_presence(
        &mut self,
        room: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = self.presence.iter().rev().find(|p| p["room"] == room)
                && check(p)
            {
                return p.clone();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no such presence of {room}: {:?}",
                self.presence
            );
            if let Some(frame) = self.read_frame(left.min(Duration::from_millis(100))).await {
                self.held.push_back(frame);
            }
        }
    }

    async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(frame) = self.held.pop_front() {
            return Some(frame);
        }
        self.read_frame(wait).await
    }

    /// The next frame from the socket that is not `presence` (recorded in [`Client::presence`]).
    async fn read_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Message::Text(t))) => {
                    let value: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    if value["type"] == "presence" {
                        self.presence.push(value);
                        continue;
                    }
                    return Some(Frame::Json(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Frame::Closed(frame.map(|f| f.code.into())));
                }
                Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {b:?}"),
                Some(Ok(_)) => continue, // ping/pong
                Some(Err(e)) => {
                    eprintln!("read error: {e}");
                    return Some(Frame::Closed(None));
                }
                None => return Some(Frame::Closed(None)),
            }
        }
    }
}

#[derive(Debug)]
enum Frame {
    Json(Value),
    Closed(Option<u16>),
}

/// Waits until `check` holds, polling; fails the test with `what` after [`WAIT`]. Tests wait on
/// conditions with this, never on fixed sleeps.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` chats with ids `{prefix}-{i}` to `room` and waits for every ack; returns the acked seqs.
pub(crate) async fn send_acked(
    client: &mut Client,
    room: &str,
    prefix: &str,
    n: usize,
) -> Vec<u64> {
    for i in 0..n {
        client
            .chat(
                room,
                &format!("{prefix}-{i}"),
                &format!("{prefix} message {i}"),
            )
            .await;
    }
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        let ack = client.expect("ack").await;
        assert_eq!(ack["id"], format!("{prefix}-{i}"));
        assert_eq!(ack["room"], room);
        seqs.push(ack["seq"].as_u64().expect("seq"));
    }
    seqs
}

/// A data directory that outlives server processes.
pub(crate) fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    (dir, path)
}

/// A minimal HTTP/1.1 request; returns status, the raw header block, and the body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (status, head.to_owned(), body.to_owned())
}

/// A raw TCP connection that has sent a WebSocket upgrade request and nothing else (the server's 101
/// response is left unread): for tests of what a client library would hide.
pub(crate) async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    raw_upgrade_on(TcpStream::connect(addr).await.expect("connect"), addr).await
}

/// Like [`raw_upgrade`], on a connection made by the caller (e.g. with a small receive buffer).
pub(crate) async fn raw_upgrade_on(mut tcp: TcpStream, addr: SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(upgrade_request(addr).as_bytes())
        .await
        .expect("handshake");
    tcp
}

/// A WebSocket upgrade request for `/ws` (with the key of RFC 6455's example).
pub(crate) fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Splits unmasked server frames into (opcode, payload).
pub(crate) fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => panic!("no frame here is that large"),
            n => (n as usize, 2),
        };
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// A raw TCP connection past the WebSocket handshake (101 read), for sending frames by hand.
pub(crate) async fn raw_handshake(addr: SocketAddr) -> TcpStream {
    raw_handshake_on(TcpStream::connect(addr).await.expect("connect"), addr).await
}

/// Like [`raw_handshake`], on a connection made by the caller.
pub(crate) async fn raw_handshake_on(tcp: TcpStream, addr: SocketAddr) -> TcpStream {
    use tokio::io::AsyncReadExt;
    let mut tcp = raw_upgrade_on(tcp, addr).await;
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    tcp
}

/// Writes one masked client frame (mask 0, so the payload goes as is); payloads up to 64 KiB.
pub(crate) async fn send_masked(tcp: &mut TcpStream, opcode: u8, payload: &[u8]) {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(&masked_frame(opcode, payload))
        .await
        .expect("write");
}

/// One masked client frame's bytes (see [`send_masked`]).
pub(crate) fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// The HTTP status of a refused upgrade (panics when it was accepted).
pub(crate) async fn refused_status(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> u16 {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the upgrade to be refused"),
    }
}
