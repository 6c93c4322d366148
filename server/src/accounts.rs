//! User accounts: names and Argon2id password hashes, in the same SQLite file as the history.
//!
//! Hashing is deliberately slow, so it runs on tokio's blocking pool. Signing in with an unknown name
//! costs the same hash as with a known one, so response times do not reveal which names exist.

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use rusqlite::{Connection, OptionalExtension, params};
use shared::{UserName, api::Credentials};
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

/// Why registering or signing in failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name breaks the naming rule.
    #[error("{0}")]
    BadName(String),
    /// The password breaks the policy.
    #[error("{0}")]
    WeakPassword(&'static str),
    /// Someone has that name.
    #[error("that name is taken")]
    NameTaken,
    /// Unknown name or wrong password (deliberately not saying which).
    #[error("wrong name or password")]
    BadCredentials,
    /// The database failed.
    #[error("accounts database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The blocking task failed.
    #[error("accounts task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The account store.
#[derive(Debug, Clone)]
pub struct Accounts {
    conn: Arc<Mutex<Connection>>,
    /// A real hash of a random password, verified against when the name is unknown.
    decoy: Arc<String>,
}

impl Accounts {
    /// Opens the `users` table in `data_dir/chat.db` (the history backend has created the directory).
    pub fn open(data_dir: &Path) -> Result<Self, AccountError> {
        let conn = crate::history::sqlite::open_with_schema(
            data_dir,
            "CREATE TABLE IF NOT EXISTS users (
                name TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                created_ms INTEGER NOT NULL
            ) WITHOUT ROWID;",
        )?;
        let decoy = hash(&format!("{:x}", rand::random::<u128>()))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            decoy: Arc::new(decoy),
        })
    }

    /// Creates an account.
    pub async fn register(&self, credentials: Credentials) -> Result<UserName, AccountError> {
        let name = UserName::new(credentials.name.clone())
            .map_err(|e| AccountError::BadName(e.to_string()))?;
        if name.as_str().starts_with("guest-") {
            return Err(AccountError::BadName(
                "names starting with guest- are reserved".into(),
            ));
        }
        shared::api::check_password(name.as_str(), &credentials.password)
            .map_err(AccountError::WeakPassword)?;
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let hashed = hash(&credentials.password)?;
            let now = crate::now().unix_ms();
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let inserted = conn.execute(
                "INSERT INTO users (name, password_hash, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name.as_str(), hashed, now],
            )?;
            if inserted == 0 { Err(AccountError::NameTaken) } else { Ok(name) }
        })
        .await?
    }

    /// Checks a name and password.
    pub async fn login(&self, credentials: Credentials) -> Result<UserName, AccountError> {
        let conn = Arc::clone(&self.conn);
        let decoy = Arc::clone(&self.decoy);
        tokio::task::spawn_blocking(move || {
            let name = UserName::new(credentials.name).ok();
            let stored: Option<String> = match &name {
                Some(name) => conn
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .query_row(
                        "SELECT password_hash FROM users WHERE name = ?1",
                        [name.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?,
                None => None,
            };
            let matches = verify(stored.as_deref().unwrap_or(&decoy), &credentials.password);
            match (name, stored, matches) {
                (Some(name), Some(_), true) => Ok(name),
                _ => Err(AccountError::BadCredentials),
            }
        })
        .await?
    }
}

fn hash(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(name: &str, password: &str) -> Credentials {
        Credentials {
            name: name.into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn register_then_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = Accounts::open(dir.path()).expect("open");
        let ann = accounts
            .register(creds("ann", "correct horse"))
            .await
            .expect("register");
        assert_eq!(ann.as_str(), "ann");
        assert!(matches!(
            accounts.register(creds("ann", "another pass")).await,
            Err(AccountError::NameTaken)
        ));
        assert!(matches!(
            accounts.register(creds("b b", "correct horse")).await,
            Err(AccountError::BadName(_))
        ));
        assert!(matches!(
            accounts.register(creds("guest-1", "correct horse")).await,
            Err(AccountError::BadName(_))
        ));
        assert!(matches!(
            accounts.register(creds("bob", "short")).await,
            Err(AccountError::WeakPassword(_))
        ));
        assert_eq!(
            accounts
                .login(creds("ann", "correct horse"))
                .await
                .expect("login"),
            ann
        );
        assert!(matches!(
            accounts.login(creds("ann", "wrong horse")).await,
            Err(AccountError::BadCredentials)
        ));
        assert!(matches!(
            accounts.login(creds("nobody", "correct horse")).await,
            Err(AccountError::BadCredentials)
        ));

        let stored: String = accounts
            .conn
            .lock()
            .expect("lock")
            .query_row(
                "SELECT password_hash FROM users WHERE name = 'ann'",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert!(
            stored.starts_with("$argon2id$"),
            "hashed with Argon2id, never stored plain: {stored}"
        );
    }
}
