//! The HTTP API beside the WebSocket: accounts and sessions. JSON bodies in and out.
//!
//! | request | success | failure |
//! |---|---|---|
//! | `POST /api/register` [`Credentials`] | 201 [`LoginResponse`] + cookie (registered and signed in) | 400 `bad_name` / `weak_password` / `bad_request`, 409 `name_taken`, 429 `rate_limited` |
//! | `POST /api/login` [`Credentials`] | 200 [`LoginResponse`] + `Set-Cookie: chat_token=…; HttpOnly; SameSite=Strict` | 401 `bad_credentials`, 429 `rate_limited` |
//! | `POST /api/logout` | 204, the cookie cleared; the token is revoked and its open sockets close with 4501 | |
//! | `POST /api/logout-all` | 204: every session of the user is revoked (sign out everywhere) | 401 `unauthorized` |
//! | `POST /api/password` [`PasswordChange`] | 200 [`LoginResponse`] + cookie: every older session is revoked | 401 `bad_credentials` / `unauthorized`, 400 `weak_password`, 429 `rate_limited` |
//! | `POST /api/account/delete` [`Password`] | 204: the account and its sessions are gone, the cookie cleared | 401 `bad_credentials` / `unauthorized`, 429 `rate_limited` |
//! | `GET /api/session` | 200 [`SessionInfo`] | |
//! | any other `/api/…` | | 404 `not_found` |
//!
//! Every failure body is an [`ApiError`]; a 429 also carries a `Retry-After` header (seconds). Names are
//! unique regardless of case (`Ann` and `ann` are one account, shown as registered). The WebSocket upgrade
//! (`GET /ws`) takes the token from the session cookie, an `Authorization: Bearer` header, or `?token=`;
//! without a valid one it answers 401 (unless the server allows anonymous guests).
//!
//! The session cookie is [`COOKIE_NAME`] over plain HTTP, and [`SECURE_COOKIE_NAME`] with the `Secure`
//! flag when the server's public origin is HTTPS (declared by the operator, or by a trusted proxy's
//! `X-Forwarded-Proto`): the `__Host-` prefix makes browsers refuse it from any other origin or path.

use crate::{Timestamp, UserName};
use serde::{Deserialize, Serialize};

/// The session cookie's name over plain HTTP.
pub const COOKIE_NAME: &str = "chat_token";
/// The session cookie's name over HTTPS (`Secure`, `Path=/`, no `Domain`).
pub const SECURE_COOKIE_NAME: &str = "__Host-chat_token";
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (hashing cost is bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Name and password, for registering and signing in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The account name (see [`UserName`] for what is allowed).
    pub name: String,
    /// The password, at least [`MIN_PASSWORD_CHARS`] characters.
    pub password: String,
}

/// A password change: the current password and the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChange {
    /// The password now.
    pub current: String,
    /// The password from now on (same policy as registering).
    pub new: String,
}

/// A password, to confirm a destructive request such as deleting the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Password {
    /// The account's password.
    pub password: String,
}

/// A successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The session token (also set as the `chat_token` cookie).
    pub token: String,
    /// Who signed in.
    pub name: UserName,
    /// When the token stops being accepted.
    pub expires_at: Timestamp,
}

/// Who the request's session belongs to, and whether guests may connect without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The signed-in user, if the request carried a valid token.
    pub name: Option<UserName>,
    /// When that token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Whether the WebSocket accepts connections without a token (as `guest-…`).
    pub allow_anonymous: bool,
}

/// Every failure of the HTTP API: `{"error":{"code":"name_taken","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The failure.
    pub error: ApiErrorBody,
}

/// The inside of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// A stable, machine-readable code.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// Checks a password against the policy; `Err` says what is wrong.
pub fn check_password(name: &str, password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Err("password must be at least 8 characters")
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err("password must be at most 1024 bytes")
    } else if password.eq_ignore_ascii_case(name) {
        Err("password must not be the name")
    } else if password.chars().all(|c| password.starts_with(c)) {
        Err("password must not be one repeated character")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(check_password("ann", "correct horse").is_ok());
        assert!(check_password("ann", "short").is_err());
        assert!(check_password("annabelle", "ANNABELLE").is_err());
        assert!(check_password("ann", "aaaaaaaaaa").is_err());
        assert!(check_password("ann", &"ab".repeat(600)).is_err());
    }
}
