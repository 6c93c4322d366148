//! The README's development workflow: `cargo run -p server` (a debug build, which lets pages served from
//! this machine open WebSockets) beside `trunk serve` (the page with live reload on its own port, `/ws`
//! and `/api` proxied to the server as `Trunk.toml` says). A page served by trunk connects through the
//! proxy and chats; before, the server refused its origin and the page looped on "Reconnecting".

use e2e::{AppServer, Browser, free_port, state_of};
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

/// `trunk serve` rebuilds the app (bindgen and wasm-opt) before it listens.
const TRUNK_START: Duration = Duration::from_secs(300);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's `Trunk.toml` with its paths (the app, the build hook) made absolute, the output in
/// `dist`, the page on `port` and the proxies pointed at `backend` instead of 127.0.0.1:8080.
fn trunk_config(dist: &Path, port: u16, backend: &str) -> String {
    let root = repository().canonicalize().expect("repository");
    let original =
        std::fs::read_to_string(root.join("Trunk.toml")).expect("Trunk.toml at the root");
    let replacements = [
        (
            "target = \"frontend/index.html\"".to_owned(),
            format!(
                "target = \"{}\"",
                root.join("frontend/index.html").display()
            ),
        ),
        (
            "dist = \"frontend/dist\"".to_owned(),
            format!("dist = \"{}\"", dist.display()),
        ),
        (
            "\"scripts/precompress.sh\"".to_owned(),
            format!("\"{}\"", root.join("scripts/precompress.sh").display()),
        ),
        ("port = 8081".to_owned(), format!("port = {port}")),
        ("127.0.0.1:8080".to_owned(), backend.to_owned()),
    ];
    let mut config = original;
    for (from, to) in replacements {
        assert!(
            config.contains(&from),
            "Trunk.toml no longer has `{from}`: update this test with it"
        );
        config = config.replace(&from, &to);
    }
    config
}

/// The status line of `GET /` on `port`, once something answers there.
async fn status_of_page(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = vec![0; 64];
    let n = stream.read(&mut head).await.ok()?;
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

/// `trunk serve` of the app (`--release`: the profile `scripts/test.sh` already built, so nothing is
/// compiled again), killed when dropped.
struct TrunkServe {
    port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl TrunkServe {
    async fn start(backend: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("Trunk.toml");
        std::fs::write(
            &config,
            trunk_config(&dir.path().join("dist"), port, backend),
        )
        .expect("write Trunk.toml");
        let log = std::fs::File::create(dir.path().join("trunk.log")).expect("log");
        let mut child = Command::new("trunk")
            .args(["serve", "--release", "--no-autoreload", "--config"])
            .arg(&config)
            .current_dir(repository())
            .env("TRUNK_OFFLINE", "true")
            .env("TRUNK_SKIP_VERSION_CHECK", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting trunk (scripts/test.sh puts it on PATH)");
        let deadline = tokio::time::Instant::now() + TRUNK_START;
        loop {
            if let Some(status) = status_of_page(port).await {
                assert!(status.contains(" 200 "), "trunk serve answered {status}");
                break;
            }
            let log = || std::fs::read_to_string(dir.path().join("trunk.log")).unwrap_or_default();
            if let Some(exit) = child.try_wait().expect("trunk status") {
                panic!("trunk serve exited ({exit}):\n{}", log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trunk serve did not serve the page within {TRUNK_START:?}:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            port,
            _child: child,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_trunk_serve_chats_through_its_proxy() {
    // The test binary is a debug build, like `cargo run -p server`: its default lets local pages in.
    let server = AppServer::start().await;
    let trunk = TrunkServe::start(&server.addr.to_string()).await;
    let browser = Browser::start().await;
    let page = browser.page(&trunk.url()).await;
    page.wait_connected().await;
    page.send("hello through trunk").await;
    page.wait_messages("to show the message stored", |m| {
        state_of(m, "hello through trunk") == Some("sent")
    })
    .await;
    page.close().await;
}
