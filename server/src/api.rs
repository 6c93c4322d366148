//! The HTTP API for accounts and sessions (see `shared::api` for the contract): register, sign in, sign
//! out (here or everywhere), change the password, delete the account, and "who am I". Tokens travel as an
//! `HttpOnly`, `SameSite=Strict` cookie for the browser app (`Secure` and `__Host-` prefixed over HTTPS),
//! or in the JSON body for other clients (`Authorization: Bearer` or `?token=` on `/ws`).
//!
//! Costs are bounded: a body must arrive within `--handshake-timeout` and hold at most
//! `MAX_BODY_BYTES`; password hashing is limited by [`crate::accounts`]; failed sign-ins are throttled
//! per account name and per address, registrations per address (429 with `Retry-After`).

use crate::{
    accounts::{AccountError, Verified},
    forwarded::ClientInfo,
    identity::Tokens,
    limits::{Throttled, client_key},
    node::Node,
};
use axum::{
    Json, Router,
    extract::{FromRequestParts, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::de::DeserializeOwned;
use shared::{
    UserName,
    api::{
        ApiError, ApiErrorBody, COOKIE_NAME, Credentials, LoginResponse, Password, PasswordChange,
        SECURE_COOKIE_NAME, SessionInfo,
    },
};
use std::time::{Duration, Instant};

/// Largest request body accepted by the API.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The `/api` routes.
pub fn routes() -> Router<Node> {
    Router::new()
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/logout-all", post(logout_all))
        .route("/api/password", post(change_password))
        .route("/api/account/delete", post(delete_account))
        .route("/api/session", get(session))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The token a request carries: `?token=`, then `Authorization: Bearer`, then the session cookie. Over
/// HTTPS only the `__Host-` cookie counts: a plain one could have been planted by a sibling subdomain or
/// over plain HTTP (session fixation).
pub fn request_token(
    headers: &HeaderMap,
    query_token: Option<&str>,
    client: ClientInfo,
) -> Option<String> {
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
        .find(|(k, _)| *k == SECURE_COOKIE_NAME || (!client.https && *k == COOKIE_NAME))
        .map(|(_, v)| v.to_owned())
}

/// An API failure as `{"error":{"code","message"}}`.
pub fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: ApiErrorBody {
            code: code.into(),
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration, message: &str) -> Response {
    let mut response = fail(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
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
            AccountError::Busy => {
                let mut response = fail(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            AccountError::Store(_) | AccountError::Hash(_) => {
                tracing::error!(error = %message, "account operation failed");
                internal()
            }
        }
    }
}

fn internal() -> Response {
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "something went wrong; try again",
    )
}

/// A JSON body that must arrive within the handshake deadline; malformed ones are answered in the API's
/// error format.
struct Body<T>(T);

impl<T: DeserializeOwned> axum::extract::FromRequest<Node> for Body<T> {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, node: &Node) -> Result<Self, Response> {
        let deadline = node.config.handshake_timeout;
        match tokio::time::timeout(deadline, Json::<T>::from_request(req, node)).await {
            Err(_) => Err(fail(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body did not arrive in time",
            )),
            Ok(Ok(Json(c))) => Ok(Self(c)),
            Ok(Err(e @ (JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_)))) => {
                Err(fail(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
            }
            Ok(Err(e)) => Err(fail(e.status(), "bad_request", e.body_text())),
        }
    }
}

fn cookie(client: ClientInfo, value: &str, max_age: u64) -> Option<HeaderValue> {
    let (name, secure) = if client.https {
        (SECURE_COOKIE_NAME, "; Secure")
    } else {
        (COOKIE_NAME, "")
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Signs `verified` in with a new session: the token in the body and in the cookie.
async fn signed_in(
    node: &Node,
    client: ClientInfo,
    status: StatusCode,
    verified: Verified,
) -> Response {
    let ttl = node.config.token_ttl;
    let expires_at = Tokens::expiry(ttl);
    let name = verified.name;
    let started = node
        .sessions
        .start(&name, verified.hash, expires_at.unix_ms())
        .await;
    let sid = match started {
        Ok(Some(sid)) => sid,
        Ok(None) => return AccountError::BadCredentials.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "starting a session failed");
            return internal();
        }
    };
    let token = node.tokens.issue(&name, expires_at, sid);
    let cookie = cookie(client, &token, ttl.as_secs());
    let mut response = (
        status,
        Json(LoginResponse {
            token,
            name,
            expires_at,
        }),
    )
        .into_response();
    if let Some(v) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn signed_out(client: ClientInfo) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = cookie(client, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn register(
    State(node): State<Node>,
    client: ClientInfo,
    Body(credentials): Body<Credentials>,
) -> Response {
    let limits = &node.limits;
    let address = client_key(client.addr);
    if let Err(wait) = limits.registrations.take(&address, Instant::now()) {
        return too_many(wait, "too many accounts registered from this address");
    }
    match node.accounts.register(credentials).await {
        Ok(verified) => {
            tracing::info!(user = %verified.name, "registered");
            signed_in(&node, client, StatusCode::CREATED, verified).await
        }
        Err(e) => e.into_response(),
    }
}

/// Checks `name`'s password, within the sign-in throttles: only failures count against them.
async fn check_password(
    node: &Node,
    client: ClientInfo,
    credentials: Credentials,
) -> Result<Verified, Response> {
    // A name that cannot exist is no account: answered without remembering it anywhere.
    let Ok(name) = UserName::new(credentials.name.clone()) else {
        return Err(AccountError::BadCredentials.into_response());
    };
    let limits = &node.limits;
    let (key, address) = (name.as_str().to_lowercase(), client_key(client.addr));
    let by_address = limits.login_by_address.check(&address, Instant::now());
    match (limits.login_by_name.check(&key).await, by_address) {
        (Err(Throttled::Unavailable(e)), _) => {
            tracing::error!(error = %e, "sign-in refused: the shared throttle is unavailable");
            return Err(internal());
        }
        (Err(Throttled::Wait(wait)), _) | (_, Err(wait)) => {
            return Err(too_many(wait, "too many failed sign-ins; wait a moment"));
        }
        (Ok(()), Ok(())) => {}
    }
    match node.accounts.login(credentials).await {
        Ok(verified) => Ok(verified),
        Err(e @ AccountError::BadCredentials) => {
            let _ = limits.login_by_address.take(&address, Instant::now());
            if let Err(e) = limits.login_by_name.fail(&key).await {
                tracing::warn!(error = %e, "a failed sign-in could not be counted");
            }
            Err(e.into_response())
        }
        Err(e) => Err(e.into_response()),
    }
}

async fn login(
    State(node): State<Node>,
    client: ClientInfo,
    Body(credentials): Body<Credentials>,
) -> Response {
    match check_password(&node, client, credentials).await {
        Ok(verified) => signed_in(&node, client, StatusCode::OK, verified).await,
        Err(refusal) => refusal,
    }
}

async fn logout(State(node): State<Node>, client: ClientInfo, user: MaybeUser) -> Response {
    if let Some(sid) = user.0.and_then(|v| v.sid)
        && let Err(e) = node.sessions.revoke(&sid).await
    {
        tracing::error!(error = %e, "revoking a session failed");
        return internal();
    }
    signed_out(client)
}

async fn logout_all(State(node): State<Node>, client: ClientInfo, user: MaybeUser) -> Response {
    let Some(verified) = user.0 else {
        return unauthorized();
    };
    if let Err(e) = node.sessions.revoke_all(&verified.user).await {
        tracing::error!(error = %e, "revoking sessions failed");
        return internal();
    }
    signed_out(client)
}

/// The request's signed-in user, once `password` is confirmed as theirs (within the sign-in throttles).
async fn confirmed(
    node: &Node,
    client: ClientInfo,
    user: MaybeUser,
    password: String,
) -> Result<Verified, Response> {
    let Some(token) = user.0 else {
        return Err(unauthorized());
    };
    let credentials = Credentials {
        name: token.user.to_string(),
        password,
    };
    check_password(node, client, credentials).await
}

async fn change_password(
    State(node): State<Node>,
    client: ClientInfo,
    user: MaybeUser,
    Body(change): Body<PasswordChange>,
) -> Response {
    let current = match confirmed(&node, client, user, change.current).await {
        Ok(current) => current,
        Err(refusal) => return refusal,
    };
    let name = current.name.clone();
    let changed = match node.accounts.change_password(current, change.new).await {
        Ok(changed) => changed,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = node.sessions.revoke_all(&name).await {
        tracing::error!(error = %e, "revoking sessions failed");
        return internal();
    }
    tracing::info!(user = %name, "password changed; every session signed out");
    signed_in(&node, client, StatusCode::OK, changed).await
}

async fn delete_account(
    State(node): State<Node>,
    client: ClientInfo,
    user: MaybeUser,
    Body(password): Body<Password>,
) -> Response {
    let current = match confirmed(&node, client, user, password.password).await {
        Ok(current) => current,
        Err(refusal) => return refusal,
    };
    let name = current.name.clone();
    if let Err(e) = node.accounts.delete(current).await {
        return e.into_response();
    }
    let revoked = node.sessions.revoke_all(&name).await;
    let forgotten = node.access.forget_user(&name).await;
    if let Err(e) = revoked
        .map_err(|e| e.to_string())
        .and(forgotten.map_err(|e| e.to_string()))
    {
        tracing::error!(error = %e, "cleaning up after an account deletion failed");
        return internal();
    }
    tracing::info!(user = %name, "account deleted");
    signed_out(client)
}

fn unauthorized() -> Response {
    fail(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first")
}

/// The verified, unrevoked account (not guest) token of a request, if any.
struct MaybeUser(Option<crate::identity::Verified>);

impl FromRequestParts<Node> for MaybeUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, node: &Node) -> Result<Self, Self::Rejection> {
        let client = ClientInfo::from_request_parts(parts, node)
            .await
            .unwrap_or_else(|never| match never {});
        let verified = request_token(&parts.headers, None, client)
            .and_then(|t| node.tokens.verify(&t).ok())
            .filter(|v| !v.guest)
            .filter(|v| {
                v.sid
                    .as_ref()
                    .is_some_and(|sid| !node.sessions.is_revoked(sid))
            });
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
