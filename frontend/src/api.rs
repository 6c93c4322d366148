//! The HTTP API beside the WebSocket (`shared::api`), on the page's own origin: who is signed in, register,
//! sign in, sign out. The session itself is an `HttpOnly` cookie that the server sets and the browser sends
//! with every same-origin request and with the WebSocket upgrade; this code never sees it.

use crate::auth::sentence;
use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use shared::api::{ApiError, Credentials, LoginResponse, SessionInfo};
use std::fmt;

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
    let response = send(Request::get("/api/session").build()).await?;
    body(&response).await
}

/// `POST /api/register`: creates the account and signs in (the server sets the cookie).
pub async fn register(credentials: &Credentials) -> Result<LoginResponse, ApiFailure> {
    let response = send(Request::post("/api/register").json(credentials)).await?;
    body(&response).await
}

/// `POST /api/login`: signs in (the server sets the cookie).
pub async fn login(credentials: &Credentials) -> Result<LoginResponse, ApiFailure> {
    let response = send(Request::post("/api/login").json(credentials)).await?;
    body(&response).await
}

/// `POST /api/logout`: the server clears the cookie.
pub async fn logout() -> Result<(), ApiFailure> {
    send(Request::post("/api/logout").build()).await.map(drop)
}

/// Sends `request`; a non-2xx answer becomes [`ApiFailure::Refused`] with the server's error body.
async fn send(request: Result<Request, gloo_net::Error>) -> Result<Response, ApiFailure> {
    let response = request
        .map_err(|_| ApiFailure::Network)?
        .send()
        .await
        .map_err(|_| ApiFailure::Network)?;
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    Err(match response.json::<ApiError>().await {
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
async fn body<T: DeserializeOwned>(response: &Response) -> Result<T, ApiFailure> {
    response.json().await.map_err(|_| ApiFailure::Refused {
        status: response.status(),
        code: String::new(),
        message: "the server's answer could not be read".to_owned(),
    })
}
