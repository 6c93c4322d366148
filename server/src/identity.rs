//! Who a connection speaks as.
//!
//! Every connection has a [`UserName`] fixed at the handshake; the `sender` of everything it posts is that
//! name, never a value from the client. Names come from signed tokens (HS256 JWT): an account's, issued by
//! `/api/login`, or — when anonymous access is allowed — a guest's: a connection without a token becomes a
//! new guest (`guest-` and 64 random bits) and receives a guest token in its welcome, so that presenting
//! it on the next connection keeps the same name and its message ids keep deduplicating. A forged or
//! expired token is refused with HTTP 401 before any upgrade. An account's token also names its
//! server-side session (see [`crate::sessions`]), which signing out revokes.
//!
//! The signing key comes from `--token-secret` (at least [`MIN_SECRET_BYTES`]), or is generated once into
//! `<data-dir>/token.key`. A key file that exists but cannot be read stops the start: replacing it would
//! sign everybody out.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use shared::{Timestamp, UserName};
use std::{path::Path, time::Duration};

/// Shortest `--token-secret` accepted: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

/// How long a guest token stays valid.
pub const GUEST_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Token key and verification failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("token key {path}: {source}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token is malformed, forged, or expired.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The token's subject is not a valid user name.
    #[error("invalid token subject")]
    Subject,
    /// `--token-secret` is too short to sign with.
    #[error(
        "--token-secret must be at least {MIN_SECRET_BYTES} bytes (it has {0}); e.g. `openssl rand -hex 32`"
    )]
    WeakSecret(usize),
    /// The key file exists but holds no key.
    #[error("token key {0} is empty; delete it to generate a new key (this signs everybody out)")]
    EmptyKeyFile(std::path::PathBuf),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// A guest token names no account; it is refused when anonymous access is off.
    #[serde(default)]
    guest: bool,
    /// The server-side session of an account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who it names.
    pub user: UserName,
    /// Whether it is a guest's (no account).
    pub guest: bool,
    /// When it stops being valid.
    pub expires_at: Timestamp,
    /// The server-side session it belongs to (account tokens).
    pub sid: Option<String>,
}

/// Issues and verifies session tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

impl Tokens {
    /// Uses `secret` if given, else the key in `data_dir/token.key`, generating it on first use.
    pub fn load_or_create(data_dir: &Path, secret: Option<&str>) -> Result<Self, IdentityError> {
        let key = match secret {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(IdentityError::WeakSecret(s.len()));
            }
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let path = data_dir.join("token.key");
                let io = |source| IdentityError::KeyFile {
                    path: path.clone(),
                    source,
                };
                match std::fs::read(&path) {
                    Ok(k) if k.trim_ascii().is_empty() => {
                        return Err(IdentityError::EmptyKeyFile(path));
                    }
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::create_dir_all(data_dir).map_err(io)?;
                        let bytes: [u8; 32] = rand::rng().random();
                        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                        write_private(&path, hex.as_bytes()).map_err(io)?;
                        hex.into_bytes()
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        };
        Ok(Self::from_key(&key))
    }

    /// Signs and checks with `key` (in the Redis mode, the one all nodes share).
    pub fn from_key(key: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: the server that checks a token is the one (or a node of the one) that issued it.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    /// When a token issued now for `ttl` expires.
    pub fn expiry(ttl: Duration) -> Timestamp {
        Timestamp::from_unix_ms((unix_now() + ttl.as_secs()) as i64 * 1000)
    }

    /// A guest's token for `user`, valid for [`GUEST_TOKEN_TTL`].
    pub fn issue_guest(&self, user: &UserName) -> String {
        self.sign(user, Self::expiry(GUEST_TOKEN_TTL), true, None)
    }

    /// An account token for `user` in session `sid`, expiring at `expires_at` (from [`Self::expiry`]).
    pub fn issue(&self, user: &UserName, expires_at: Timestamp, sid: String) -> String {
        self.sign(user, expires_at, false, Some(sid))
    }

    fn sign(
        &self,
        user: &UserName,
        expires_at: Timestamp,
        guest: bool,
        sid: Option<String>,
    ) -> String {
        let claims = Claims {
            sub: user.to_string(),
            iat: unix_now(),
            exp: (expires_at.unix_ms() / 1000).max(0) as u64,
            guest,
            sid,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("HS256 signing of plain claims cannot fail: {e}"))
    }

    /// What a valid, unexpired token says.
    pub fn verify(&self, token: &str) -> Result<Verified, IdentityError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        Ok(Verified {
            user: UserName::new(data.claims.sub).map_err(|_| IdentityError::Subject)?,
            guest: data.claims.guest,
            expires_at: Timestamp::from_unix_ms(data.claims.exp as i64 * 1000),
            sid: data.claims.sid,
        })
    }
}

/// A fresh guest name, `guest-` and 16 hex digits: 64 random bits, so two guests never share a name (it
/// keys their deduplication, rate limits and room access).
pub fn guest_name() -> UserName {
    let n: u64 = rand::rng().random();
    UserName::new(format!("guest-{n:016x}"))
        .unwrap_or_else(|e| unreachable!("guest names are valid: {e}"))
}

fn unix_now() -> u64 {
    (crate::now().unix_ms() / 1000).max(0) as u64
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_key_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tokens::load_or_create(dir.path(), None).expect("tokens");
        let ann = UserName::new("ann").expect("name");
        let exp = Tokens::expiry(Duration::from_secs(60));
        let token = t.issue(&ann, exp, "s1".into());
        let verified = t.verify(&token).expect("valid");
        assert_eq!(
            (verified.user.clone(), verified.guest, verified.expires_at),
            (ann.clone(), false, exp)
        );
        assert_eq!(verified.sid.as_deref(), Some("s1"));
        let guest = t.issue_guest(&ann);
        assert!(t.verify(&guest).expect("valid").guest);

        let again = Tokens::load_or_create(dir.path(), None).expect("tokens");
        assert_eq!(
            again.verify(&token).expect("same key after restart").user,
            ann
        );

        let other = tempfile::tempdir().expect("tempdir");
        let foreign = Tokens::load_or_create(other.path(), None).expect("tokens");
        assert!(foreign.verify(&token).is_err(), "another key rejects it");
        assert!(t.verify("not.a.token").is_err());
        let strict = Tokens::load_or_create(dir.path(), None).expect("tokens");
        let past = Claims {
            sub: "ann".into(),
            iat: 1,
            exp: 2,
            guest: false,
            sid: None,
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &past, &strict.encoding)
            .expect("sign");
        assert!(strict.verify(&old).is_err(), "expired");
    }

    #[test]
    fn guest_names_are_valid_and_carry_64_bits() {
        let names: std::collections::HashSet<_> = (0..1000).map(|_| guest_name()).collect();
        assert_eq!(names.len(), 1000);
        for name in names {
            let hex = name.as_str().strip_prefix("guest-").expect("prefix");
            assert!(
                hex.len() == 16 && u64::from_str_radix(hex, 16).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn short_secrets_and_unreadable_key_files_stop_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Tokens::load_or_create(dir.path(), Some("short")),
            Err(IdentityError::WeakSecret(5))
        ));
        assert!(Tokens::load_or_create(dir.path(), Some(&"k".repeat(32))).is_ok());
        let key = dir.path().join("token.key");
        std::fs::create_dir(&key).expect("a directory where the key should be");
        assert!(matches!(
            Tokens::load_or_create(dir.path(), None),
            Err(IdentityError::KeyFile { .. })
        ));
        std::fs::remove_dir(&key).expect("rmdir");
        std::fs::write(&key, "\n").expect("write");
        assert!(matches!(
            Tokens::load_or_create(dir.path(), None),
            Err(IdentityError::EmptyKeyFile(_))
        ));
        assert!(
            std::fs::read(&key).expect("read") == b"\n",
            "left as it was"
        );
    }
}
