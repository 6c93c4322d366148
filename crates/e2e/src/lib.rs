//! End-to-end harness: the real server (in this process, serving the release build of the web app from
//! `frontend/dist`) and real headless Chromium pages driven through chromedriver.
//!
//! - [`AppServer`]: starts the server on a free loopback port; can be stopped and started again on the
//!   same port and data directory, as a user restarting it would.
//! - [`Browser`]: one chromedriver process; [`Browser::page`] opens an independent Chromium (its own
//!   profile, so its own localStorage) on the app.
//! - [`Page`]: waits and reads by the app's `data-testid` hooks.
//! - [`RedisServer`]: a `redis-server` of its own, for nodes of the Redis mode.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// How long to wait for the page to reach a state.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where `trunk build --release` puts the web app.
pub fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../frontend/dist")
}

/// A free loopback port (bound, then released).
/// The chat server, restartable on the same address and data directory.
pub struct AppServer {
    /// Where it listens.
    pub addr: SocketAddr,
    data: tempfile::TempDir,
    adjust: Box<dyn Fn(&mut server::Config) + Send + Sync>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for AppServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AppServer {
    /// Starts a server with a fresh data directory, serving the built app, letting guests in without an
    /// account (`--allow-anonymous`).
    pub async fn start() -> Self {
        Self::start_with(|c| c.allow_anonymous = true).await
    }

    /// Starts a server with default settings changed by `adjust` (e.g. accounts required, short tokens).
    pub async fn start_with(adjust: impl Fn(&mut server::Config) + Send + Sync + 'static) -> Self {
        let index = dist_dir().join("index.html");
        assert!(
            index.is_file(),
            "{} is missing: build the web app first (`trunk build --release`, done by scripts/test.sh)",
            index.display()
        );
        // Port 0: the system picks a free port, and restarts bind that same port again.
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: tempfile::tempdir().expect("tempdir"),
            adjust: Box::new(adjust),
            running: None,
        };
        server.restart().await;
        server
    }

    /// The app's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Starts it again (after [`AppServer::stop`]) on the same port and data.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Like [`AppServer::restart`], with settings changed by `also` for this run only (e.g. refusing every
    /// WebSocket while still serving the page).
    pub async fn restart_with(&mut self, also: impl FnOnce(&mut server::Config)) {
        assert!(self.running.is_none(), "already running");
        let mut config = server::Config::with_data_dir(self.data.path());
        config.static_dir = dist_dir();
        (self.adjust)(&mut config);
        also(&mut config);
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind (the same port on a restart)");
        self.addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        self.running = Some((stop, task));
    }

    /// Stops it gracefully (clients see 1001) and waits until it has.
    pub async fn stop(&mut self) {
        let (stop, task) = self.running.take().expect("running");
        let _ = stop.send(());
        tokio::time::timeout(WAIT, task)
            .await
            .expect("stops in time")
            .expect("server task");
    }
}

/// A `redis-server` on a free loopback port with its own directory (AOF, `appendfsync always`), killed
/// when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl RedisServer {
    /// Starts it and waits until it answers.
    pub async fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir.path())
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
            .expect("redis-server (scripts/test.sh installs it)");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server starts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            port,
            _dir: dir,
            child,
        }
    }

    /// Its URL, for `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, for programs that cannot report one they picked themselves (chromedriver,
/// `trunk serve`; our servers bind port 0). It may be taken by someone else before they bind it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A chromedriver process.
#[derive(Debug)]
pub struct Browser {
    port: u16,
    _driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver (`CHROMEDRIVER` or `chromedriver` on PATH) on a free port. The port is free
    /// when picked but may be taken by another test's server before chromedriver binds it; a driver that
    /// exits instead of listening is started again on another port.
    pub async fn start() -> Self {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        for _ in 0..5 {
            let port = free_port();
            let mut driver = tokio::process::Command::new(&program)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("starting {program}: {e} (scripts/test.sh installs chromium-driver)")
                });
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if driver.try_wait().expect("chromedriver status").is_some() {
                    break; // exited: the port was taken meanwhile
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    // Listening, unless what answers is someone else and the driver is exiting.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if driver.try_wait().expect("chromedriver status").is_none() {
                        return Self {
                            port,
                            _driver: driver,
                        };
                    }
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "chromedriver did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("chromedriver kept exiting at start");
    }

    /// Opens `url` in a new headless Chromium with its own empty profile.
    pub async fn page(&self, url: &str) -> Page {
        self.page_with(url, &[]).await
    }

    /// Like [`Browser::page`], with extra Chromium flags (e.g. a window size, a dark system theme).
    pub async fn page_with(&self, url: &str, extra: &[&str]) -> Page {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("webdriver session");
        client.goto(url).await.expect("open the app");
        Page {
            client,
            _profile: profile,
        }
    }
}

/// One browser page on the app.
#[derive(Debug)]
pub struct Page {
    /// The WebDriver session.
    pub client: Client,
    _profile: tempfile::TempDir,
}

/// The CSS selector of a `data-testid`.
pub fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// Polls `probe` every 50 ms until it gives `Ok`, for at most [`WAIT`]; then fails the test, naming
/// `what` was awaited and what `probe` last saw. Every wait of these tests goes through it: none sleeps
/// for a fixed time.
pub async fn eventually<T, Seen: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?} for {what}; last seen: {seen:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CSS selector of `room`'s item in the room list.
pub fn room_item(room: &str) -> String {
    format!("{}[data-room=\"{room}\"]", testid("room-item"))
}

impl Page {
    /// The text of the `data-testid` element, or "" while it is absent.
    pub async fn text(&self, id: &str) -> String {
        match self.client.find(Locator::Css(&testid(id))).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The texts of every `data-testid` element, in page order.
    pub async fn texts(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .client
            .find_all(Locator::Css(&testid(id)))
            .await
            .unwrap_or_default()
        {
            out.push(e.text().await.unwrap_or_default());
        }
        out
    }

    /// Polls until the texts of the `data-testid` elements are `want`, in page order.
    pub async fn wait_texts(&self, id: &str, want: &[&str]) {
        eventually(&format!("{id} to be {want:?}"), async || {
            let seen = self.texts(id).await;
            if seen == want { Ok(()) } else { Err(seen) }
        })
        .await
    }

    /// Polls until `check` accepts the `data-testid` element's text; returns that text.
    pub async fn wait_text(&self, id: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        eventually(&format!("{id} to be {what}"), async || {
            let t = self.text(id).await;
            if check(&t) { Ok(t) } else { Err(t) }
        })
        .await
    }

    /// The current value of the `data-testid` input.
    pub async fn input_value(&self, id: &str) -> String {
        let input = self
            .client
            .find(Locator::Css(&testid(id)))
            .await
            .expect("input");
        input
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    /// Whether the `data-testid` element is on the page now.
    pub async fn present(&self, id: &str) -> bool {
        self.client.find(Locator::Css(&testid(id))).await.is_ok()
    }

    /// Polls until the `data-testid` element is present (or absent, with `want = false`).
    pub async fn wait_present(&self, id: &str, want: bool) {
        let what = format!("{id} to be {}", if want { "shown" } else { "gone" });
        eventually(&what, async || {
            if self.present(id).await == want {
                Ok(())
            } else {
                Err(!want)
            }
        })
        .await;
    }

    /// Replaces the text of the `data-testid` input.
    pub async fn fill(&self, id: &str, text: &str) {
        let input = self
            .client
            .find(Locator::Css(&testid(id)))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Clicks the element matching the CSS `selector` (see [`testid`]).
    pub async fn click(&self, selector: &str) {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .click()
            .await
            .expect("click");
    }

    /// Registers the account `name` with `password` from the sign-in screen, then waits for the chat to
    /// show it connected.
    pub async fn register(&self, name: &str, password: &str) {
        self.sign_in_with("register-submit", name, password).await;
    }

    /// Signs in as the account `name` from the sign-in screen, then waits for the chat to show it
    /// connected.
    pub async fn sign_in(&self, name: &str, password: &str) {
        self.sign_in_with("login-submit", name, password).await;
    }

    async fn sign_in_with(&self, button: &str, name: &str, password: &str) {
        self.wait_present("login-name", true).await;
        self.fill("login-name", name).await;
        self.fill("login-password", password).await;
        self.click(&testid(button)).await;
        self.wait_text("current-user", name, |t| t == name).await;
        self.wait_connected().await;
    }

    /// Waits until the connection status says connected.
    pub async fn wait_connected(&self) {
        self.wait_text("connection-status", "connected", |t| {
            t.to_lowercase().contains("connected")
        })
        .await;
    }

    /// Types `text` into the composer and presses Enter.
    pub async fn send(&self, text: &str) {
        let input = self
            .client
            .find(Locator::Css(&testid("message-input")))
            .await
            .expect("input");
        input.send_keys(text).await.expect("type");
        input.send_keys("\u{E007}").await.expect("enter");
    }

    /// Each shown message as (text content, `data-state` attribute).
    pub async fn messages(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let Ok(list) = self.client.find_all(Locator::Css(&testid("message"))).await else {
            return out;
        };
        for m in list {
            let text = m.text().await.unwrap_or_default();
            let state = m.attr("data-state").await.unwrap_or(None);
            out.push((text, state));
        }
        out
    }

    /// Polls until `check` accepts the shown messages; returns them.
    pub async fn wait_messages(
        &self,
        what: &str,
        check: impl Fn(&[(String, Option<String>)]) -> bool,
    ) -> Vec<(String, Option<String>)> {
        eventually(&format!("messages {what}"), async || {
            let m = self.messages().await;
            if check(&m) { Ok(m) } else { Err(m) }
        })
        .await
    }

    /// Saves what the page shows as `target/screenshots/NAME.png` (a test artifact to look at).
    pub async fn save_screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Closes the browser.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// How many shown messages contain `text`.
pub fn count(messages: &[(String, Option<String>)], text: &str) -> usize {
    messages.iter().filter(|(t, _)| t.contains(text)).count()
}

/// The state of the first shown message containing `text`.
pub fn state_of<'a>(messages: &'a [(String, Option<String>)], text: &str) -> Option<&'a str> {
    messages
        .iter()
        .find(|(t, _)| t.contains(text))
        .and_then(|(_, s)| s.as_deref())
}

/// The attempt number in a "Reconnecting (attempt n, ...)" status, if any.
pub fn attempt(status: &str) -> Option<u32> {
    let lower = status.to_lowercase();
    let rest = &lower[lower.find("attempt")? + "attempt".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
