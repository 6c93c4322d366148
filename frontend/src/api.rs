//! The HTTP API beside the WebSocket (`shared::api`), on the page's own origin: who is signed in, register,
//! sign in, sign out. The session itself is an `HttpOnly` cookie that the server sets and the browser sends
//! with every same-origin request and with the WebSocket upgrade; this code never sees it.

use crate::auth::sentence;
use serde::de::DeserializeOwned;
use shared::api::{ApiError, Credentials, LoginResponse, SessionInfo};
use std::fmt;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Why an API call failed; its [`Display`](fmt::Display) text is what the sign-in screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// No answer (server down, network gone).
    Network,
    /// The server answered with an error.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's machine-readable code (e.g. `name_taken`), or "" if the body had none.
        code: String,
        /// The server's human-readable message.
        message: String,
    },
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network => f.write_str("Cannot reach the server. Please try again."),
            Self::Refused { message, .. } => f.write_str(&sentence(message)),
        }
    }
}

/// `GET /api/session`: who the session cookie belongs to, and whether guests may connect.
pub async fn session() -> Result<SessionInfo, ApiFailure> {
    body(call("GET", "/api/session", None).await?)
}

/// `POST /api/register`: creates the account and signs in (the server sets the cookie).
pub async fn register(credentials: &Credentials) -> Result<LoginResponse, ApiFailure> {
    body(call("POST", "/api/register", json(credentials)).await?)
}

/// `POST /api/login`: signs in (the server sets the cookie).
pub async fn login(credentials: &Credentials) -> Result<LoginResponse, ApiFailure> {
    body(call("POST", "/api/login", json(credentials)).await?)
}

/// `POST /api/logout`: the server clears the cookie.
pub async fn logout() -> Result<(), ApiFailure> {
    call("POST", "/api/logout", None).await.map(drop)
}

/// A 2xx answer: its status and body.
struct Answer {
    status: u16,
    text: String,
}

/// `credentials` as a JSON body.
fn json(credentials: &Credentials) -> Option<String> {
    serde_json::to_string(credentials).ok()
}

/// Sends a same-origin request with `json` as its body (the browser's `fetch`, which sends the session
/// cookie); a non-2xx answer becomes [`ApiFailure::Refused`] with the server's error body.
async fn call(method: &str, path: &str, json: Option<String>) -> Result<Answer, ApiFailure> {
    let network = |_: JsValue| ApiFailure::Network;
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(text) = json {
        let headers = web_sys::Headers::new().map_err(network)?;
        headers
            .set("Content-Type", "application/json")
            .map_err(network)?;
        init.set_headers(&headers);
        init.set_body(&JsValue::from_str(&text));
    }
    let window = web_sys::window().ok_or(ApiFailure::Network)?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(path, &init))
        .await
        .map_err(network)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(network)?)
        .await
        .map_err(network)?
        .as_string()
        .unwrap_or_default();
    let status = response.status();
    if response.ok() {
        return Ok(Answer { status, text });
    }
    Err(match crate::json::from_str::<ApiError>(&text) {
        Ok(ApiError { error }) => ApiFailure::Refused {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => ApiFailure::Refused {
            status,
            code: String::new(),
            message: format!("the server answered {status} {}", response.status_text()),
        },
    })
}

/// A successful answer's JSON body.
fn body<T: DeserializeOwned>(answer: Answer) -> Result<T, ApiFailure> {
    crate::json::from_str(&answer.text).map_err(|_| ApiFailure::Refused {
        status: answer.status,
        code: String::new(),
        message: "the server's answer could not be read".to_owned(),
    })
}
