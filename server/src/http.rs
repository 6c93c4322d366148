//! The HTTP surface: `GET /ws` (the WebSocket), `/api/*` (accounts), `GET /healthz` (the process is up),
//! `GET /readyz` (it can store chats: in the Redis mode, 503 while Redis is unreachable or the
//! subscription is down), `GET /metrics`, and the built web app at `/`.
//!
//! Every response carries the headers a page that shows other people's text should have: a
//! `Content-Security-Policy` allowing only what the wasm app needs (its own scripts and styles, by hash
//! for the loader and the style sheet trunk inlines, `wasm-unsafe-eval` to compile the module, and
//! connections to this origin), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and
//! framing refused. Unknown
//! `/api/...` paths answer 404 with the API's JSON error body instead of the app's page.

use crate::{api, node::Node, ws};
use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{any, get},
};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tower_http::services::{ServeDir, ServeFile};

/// The router of one node.
pub fn router(node: Node) -> Router {
    let static_dir = node.config.app_dir();
    let index = static_dir.join("index.html");
    let app = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(api::routes())
        .route("/api/{*rest}", any(api_not_found));
    let app = if index.is_file() {
        // Unknown paths get the app's page, so client-side routes survive a reload. Files are sent as
        // their `.br` or `.gz` sibling when the browser accepts it (the build writes them).
        let page = ServeFile::new(&index)
            .precompressed_br()
            .precompressed_gzip();
        let files = ServeDir::new(&static_dir)
            .precompressed_br()
            .precompressed_gzip()
            .fallback(page);
        app.fallback_service(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(static_dir.clone()),
                    cache_policy,
                ))
                .service(files),
        )
    } else {
        tracing::warn!(dir = %static_dir.display(), "web app not built: / answers 404 (see README: quick start)");
        app.fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "The web app is not built. Run `bash scripts/start.sh` (or `trunk build --release`) first.\n",
            )
        })
    };
    let policy = content_security_policy(&index);
    app.layer(axum::middleware::map_response(move |response| {
        let policy = policy.clone();
        async move { with_security_headers(response, policy) }
    }))
    .with_state(node)
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
async fn metrics(axum::extract::State(node): axum::extract::State<Node>) -> Response {
    let text = node
        .metrics
        .render(node.hub.queued_bytes(), node.relay.queued());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn ready(axum::extract::State(node): axum::extract::State<Node>) -> Response {
    if node.ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n").into_response()
    }
}

/// How long browsers may keep a file of the app: the build names assets after a hash of their content
/// (`frontend-<16 hex>_bg.wasm`), so those never change and are kept a year; the page (and anything
/// else, such as the page sent for a name that is not a file) is checked again on every visit, so a
/// new build is picked up at once.
async fn cache_policy(State(dir): State<Arc<PathBuf>>, request: Request, next: Next) -> Response {
    let name = request.uri().path().rsplit('/').next().unwrap_or_default();
    let immutable = content_hashed(name)
        && tokio::fs::metadata(dir.join(name))
            .await
            .is_ok_and(|m| m.is_file());
    let mut response = next.run(request).await;
    let policy = if immutable && response.status() == StatusCode::OK {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

/// Whether a file name carries trunk's content hash: `-` and 16 hex digits before the extension (and
/// before `_bg` for the wasm module).
fn content_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn api_not_found() -> Response {
    api::fail(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

fn with_security_headers(mut response: Response, policy: HeaderValue) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, policy),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in set {
        headers.entry(name).or_insert(value);
    }
    response
}

/// The version of the web app in `dir`: the first 16 hex digits of its page's SHA-256 (the page names
/// every asset by its content hash, so any change to the app changes the page).
pub fn app_version(dir: &Path) -> Option<String> {
    let page = std::fs::read(dir.join("index.html")).ok()?;
    let digest = Sha256::digest(&page);
    Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The policy for the app in `index`: its inline scripts (trunk's loader) and its inline style sheet
/// (the app's CSS, inlined to spare a first visit one request) are allowed by hash.
fn content_security_policy(index: &Path) -> HeaderValue {
    let html = std::fs::read_to_string(index).unwrap_or_default();
    let hashes = |tag| -> String {
        inline_bodies(&html, tag)
            .into_iter()
            .map(|body| {
                let digest = Sha256::digest(body.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect()
    };
    let (scripts, styles) = (hashes("script"), hashes("style"));
    let policy = format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{scripts}; style-src 'self'{styles}; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|e| unreachable!("the policy is ASCII without newlines: {e}"))
}

/// The bodies of the `<tag>` elements of `html` that have no `src` (`script` or `style`).
fn inline_bodies<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    html.split(open.as_str())
        .skip(1)
        .filter_map(|rest| {
            let (attributes, after) = rest.split_once('>')?;
            let (body, _) = after.split_once(close.as_str())?;
            (!attributes.contains("src=")).then_some(body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_and_styles_are_found_and_external_ones_skipped() {
        let html = r#"<head><script src="/a.js"></script><script type="module">
import init from '/x.js';</script><style>p{color:red}</style><body><script>b()</script>"#;
        assert_eq!(
            inline_bodies(html, "script"),
            ["\nimport init from '/x.js';", "b()"]
        );
        assert_eq!(inline_bodies(html, "style"), ["p{color:red}"]);
    }

    #[test]
    fn only_trunks_content_hashed_names_count_as_immutable() {
        for name in [
            "frontend-79cfd0dc9cac7742_bg.wasm",
            "frontend-79cfd0dc9cac7742.js",
            "style-a0ad2c032a016ee2.css",
        ] {
            assert!(content_hashed(name), "{name}");
        }
        for name in [
            "index.html",
            "",
            "style.css",
            "x-79cfd0dc9cac77.js",
            "x-79cfd0dc9cac774g.js",
        ] {
            assert!(!content_hashed(name), "{name}");
        }
    }
}
