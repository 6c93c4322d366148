//! The HTTP API for accounts and sessions (see `shared::api` for the contract): register, sign in, sign
//! out, and "who am I". Tokens travel as an `HttpOnly`, `SameSite=Strict` cookie for the browser app, or
//! in the JSON body for other clients (`Authorization: Bearer` or `?token=` on `/ws`).

use crate::{accounts::AccountError, node::Node};
use axum::{
    Json, Router,
    extract::{FromRequestParts, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use shared::api::{ApiError, ApiErrorBody, COOKIE_NAME, Credentials, LoginResponse, SessionInfo};

/// Largest request body accepted by the API.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The `/api` routes.
pub fn routes() -> Router<Node> {
    Router::new()
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The token a request carries: `?token=`, then `Authorization: Bearer`, then the session cookie.
pub fn request_token(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    if let Some(t) = query_token {
        return Some(t.to_owned());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(t) = bearer {
        return Some(t.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// An API failure as `{"error":{"code","message"}}`.
fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: ApiErrorBody {
            code: code.into(),
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for AccountError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            AccountError::BadName(_) => fail(StatusCode::BAD_REQUEST, "bad_name", message),
            AccountError::WeakPassword(_) => {
                fail(StatusCode::BAD_REQUEST, "weak_password", message)
            }
            AccountError::NameTaken => fail(StatusCode::CONFLICT, "name_taken", message),
            AccountError::BadCredentials => {
                fail(StatusCode::UNAUTHORIZED, "bad_credentials", message)
            }
            AccountError::Db(_) | AccountError::Hash(_) | AccountError::Task(_) => {
                tracing::error!(error = %message, "account operation failed");
                fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong; try again",
                )
            }
        }
    }
}

/// JSON credentials, with malformed bodies answered in the API's error format.
struct Body(Credentials);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Json::<Credentials>::from_request(req, state).await {
            Ok(Json(c)) => Ok(Self(c)),
            Err(e @ JsonRejection::JsonDataError(_) | e @ JsonRejection::JsonSyntaxError(_)) => {
                Err(fail(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
            }
            Err(e) => Err(fail(e.status(), "bad_request", e.body_text())),
        }
    }
}

/// Signs `name` in: the token in the body and in the cookie.
fn signed_in(node: &Node, status: StatusCode, name: shared::UserName) -> Response {
    let ttl = node.config.token_ttl;
    let (token, expires_at) = node.tokens.issue(&name, ttl, false);
    let cookie = format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ttl.as_secs()
    );
    let mut response = (
        status,
        Json(LoginResponse {
            token,
            name,
            expires_at,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn register(State(node): State<Node>, Body(credentials): Body) -> Response {
    match node.accounts.register(credentials).await {
        Ok(name) => {
            tracing::info!(user = %name, "registered");
            signed_in(&node, StatusCode::CREATED, name)
        }
        Err(e) => e.into_response(),
    }
}

async fn login(State(node): State<Node>, Body(credentials): Body) -> Response {
    match node.accounts.login(credentials).await {
        Ok(name) => signed_in(&node, StatusCode::OK, name),
        Err(e) => e.into_response(),
    }
}

async fn logout() -> Response {
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The verified account (not guest) token of a request, if any.
struct MaybeUser(Option<crate::identity::Verified>);

impl FromRequestParts<Node> for MaybeUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, node: &Node) -> Result<Self, Self::Rejection> {
        let verified = request_token(&parts.headers, None)
            .and_then(|t| node.tokens.verify(&t).ok())
            .filter(|v| !v.guest);
        Ok(Self(verified))
    }
}

async fn session(State(node): State<Node>, MaybeUser(user): MaybeUser) -> Json<SessionInfo> {
    Json(SessionInfo {
        name: user.as_ref().map(|v| v.user.clone()),
        expires_at: user.map(|v| v.expires_at),
        allow_anonymous: node.config.allow_anonymous,
    })
}
