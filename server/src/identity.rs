//! Who a connection speaks as.
//!
//! Every connection has a [`UserName`] fixed at the handshake; the `sender` of everything it posts is that
//! name, never a value from the client. Names come from signed tokens (HS256 JWT): an account's, issued by
//! `/api/login`, or — when anonymous access is allowed — a guest's: a connection without a token becomes a
//! new guest (`guest-xxxxxx`) and receives a guest token in its welcome, so that presenting it on the next
//! connection keeps the same name and its message ids keep deduplicating. A forged or expired token is
//! refused with HTTP 401 before any upgrade.
//!
//! The signing key comes from `--token-secret`, or is generated once into `<data-dir>/token.key`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use shared::{Timestamp, UserName};
use std::{path::Path, time::Duration};

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
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// A guest token names no account; it is refused when anonymous access is off.
    #[serde(default)]
    guest: bool,
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
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let path = data_dir.join("token.key");
                let io = |source| IdentityError::KeyFile {
                    path: path.clone(),
                    source,
                };
                match std::fs::read(&path) {
                    Ok(k) if !k.is_empty() => k,
                    _ => {
                        std::fs::create_dir_all(data_dir).map_err(io)?;
                        let bytes: [u8; 32] = rand::rng().random();
                        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                        write_private(&path, hex.as_bytes()).map_err(io)?;
                        hex.into_bytes()
                    }
                }
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: the server that checks a token is the one (or a node of the one) that issued it.
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        })
    }

    /// A token for `user` (a guest's if `guest`), valid for `ttl`, and its expiry.
    pub fn issue(&self, user: &UserName, ttl: Duration, guest: bool) -> (String, Timestamp) {
        let iat = unix_now();
        let exp = iat + ttl.as_secs();
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp,
            guest,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("HS256 signing of plain claims cannot fail: {e}"));
        (token, Timestamp::from_unix_ms(exp as i64 * 1000))
    }

    /// What a valid, unexpired token says.
    pub fn verify(&self, token: &str) -> Result<Verified, IdentityError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        Ok(Verified {
            user: UserName::new(data.claims.sub).map_err(|_| IdentityError::Subject)?,
            guest: data.claims.guest,
            expires_at: Timestamp::from_unix_ms(data.claims.exp as i64 * 1000),
        })
    }
}

/// A fresh guest name, `guest-` and six hex digits.
pub fn guest_name() -> UserName {
    let n: u32 = rand::rng().random_range(0..0x100_0000);
    UserName::new(format!("guest-{n:06x}"))
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
        let (token, exp) = t.issue(&ann, Duration::from_secs(60), false);
        let verified = t.verify(&token).expect("valid");
        assert_eq!(
            (verified.user.clone(), verified.guest, verified.expires_at),
            (ann.clone(), false, exp)
        );
        let (guest, _) = t.issue(&ann, Duration::from_secs(60), true);
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
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &past, &strict.encoding)
            .expect("sign");
        assert!(strict.verify(&old).is_err(), "expired");
    }

    #[test]
    fn guest_names_are_valid() {
        for _ in 0..100 {
            assert!(guest_name().as_str().starts_with("guest-"));
        }
    }
}
