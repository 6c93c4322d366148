//! The HTTP surface: `GET /ws` (the WebSocket), `/api/*` (accounts), `GET /healthz`, and the built web
//! app at `/`.

use crate::{api, node::Node, ws};
use axum::{Router, http::StatusCode, routing::get};
use tower_http::services::{ServeDir, ServeFile};

/// The router of one node.
pub fn router(node: Node) -> Router {
    let static_dir = node.config.static_dir.clone();
    let index = static_dir.join("index.html");
    let app = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .merge(api::routes());
    let app = if index.is_file() {
        // Unknown paths get the app's page, so client-side routes survive a reload.
        app.fallback_service(ServeDir::new(&static_dir).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %static_dir.display(), "web app not built: / answers 404 (see README: quick start)");
        app.fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "The web app is not built. Run `bash scripts/start.sh` (or `trunk build --release`) first.\n",
            )
        })
    };
    app.with_state(node)
}
