//! User accounts: names and Argon2id password hashes, kept in a [`UserStore`].
//!
//! - Names are unique regardless of case: `Ann` registered means `ann` cannot be, and signing in as `ANN`
//!   is signing in as `Ann` (the name as registered is the one everybody sees).
//! - Hashing is deliberately slow and memory-hungry (Argon2id's default: 19 MiB per hash), so it runs on
//!   a small pool of its own threads ([`Accounts::new`]'s `parallelism`, about the number of cores); more
//!   requests wait their turn (up to [`MAX_WAITING`], then [`AccountError::Busy`]). A burst of sign-ins
//!   therefore costs a fixed amount of memory (the allocator keeps a hash's memory per thread, so the
//!   number of threads that ever hash is what bounds it) and never takes the blocking threads that
//!   replays read history on.
//! - Signing in with an unknown name costs the same hash as with a known one, so response times do not
//!   reveal which names exist.

use crate::users::{StoreError, UserStore};
use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{Output, PasswordHash, SaltString, rand_core::OsRng},
};
use shared::{UserName, api::Credentials};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, mpsc};

/// Sign-in and registration requests that may wait for a hashing slot before the next is refused.
pub const MAX_WAITING: usize = 256;

/// Why registering, signing in or changing an account failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name breaks the naming rule.
    #[error("{0}")]
    BadName(String),
    /// The password breaks the policy.
    #[error("{0}")]
    WeakPassword(&'static str),
    /// Someone has that name (in any case).
    #[error("that name is taken")]
    NameTaken,
    /// Unknown name or wrong password (deliberately not saying which).
    #[error("wrong name or password")]
    BadCredentials,
    /// Too many password checks are waiting already.
    #[error("the server is busy; try again in a moment")]
    Busy,
    /// The store failed.
    #[error("accounts store: {0}")]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
}

/// A name whose password was just checked or set, and the hash it was checked against: a session may
/// only start while that hash is still the account's (see [`crate::sessions::Sessions::start`]).
#[derive(Debug, Clone)]
pub struct Verified {
    /// The name as registered.
    pub name: UserName,
    /// The password hash that matched.
    pub hash: String,
}

/// The account store.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Arc<dyn UserStore>,
    /// A real hash of a random password, verified against when the name is unknown.
    decoy: Arc<String>,
    /// Password work for the hashing threads; bounded, so a full queue refuses instead of growing.
    hashing: mpsc::SyncSender<Job>,
}

/// A piece of password work.
type Job = Box<dyn FnOnce() + Send>;

/// Starts `threads` threads that run password work from one bounded queue, until its sender is gone.
fn hashing_threads(threads: usize) -> Result<mpsc::SyncSender<Job>, AccountError> {
    let (tx, rx) = mpsc::sync_channel::<Job>(MAX_WAITING);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads.max(1) {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("password-hash-{i}"))
            .spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break, // every Accounts is gone
                    }
                }
            })
            .map_err(|e| AccountError::Hash(format!("starting a hashing thread: {e}")))?;
    }
    Ok(tx)
}

impl Accounts {
    /// The accounts in `store`, with at most `parallelism` hashes at once.
    pub fn new(store: Arc<dyn UserStore>, parallelism: usize) -> Result<Self, AccountError> {
        let decoy = hash(&format!("{:x}", rand::random::<u128>()))?;
        Ok(Self {
            store,
            decoy: Arc::new(decoy),
            hashing: hashing_threads(parallelism)?,
        })
    }

    /// Runs password work `f` on a hashing thread, after the work queued before it.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
    ) -> Result<T, AccountError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.hashing
            .try_send(Box::new(move || {
                let _ = done.send(f());
            }))
            .map_err(|_| AccountError::Busy)?;
        result
            .await
            .map_err(|_| AccountError::Hash("a hashing thread stopped".into()))?
    }

    /// Creates an account.
    pub async fn register(&self, credentials: Credentials) -> Result<Verified, AccountError> {
        let name = UserName::new(credentials.name.clone())
            .map_err(|e| AccountError::BadName(e.to_string()))?;
        if name.as_str().to_ascii_lowercase().starts_with("guest-") {
            return Err(AccountError::BadName(
                "names starting with guest- are reserved".into(),
            ));
        }
        shared::api::check_password(name.as_str(), &credentials.password)
            .map_err(AccountError::WeakPassword)?;
        if self.find(&name).await?.is_some() {
            return Err(AccountError::NameTaken);
        }
        let hashed = self.hashing(move || hash(&credentials.password)).await?;
        let now = crate::now().unix_ms();
        if self
            .store
            .insert_user(name.clone(), hashed.clone(), now)
            .await?
        {
            Ok(Verified { name, hash: hashed })
        } else {
            Err(AccountError::NameTaken)
        }
    }

    /// Checks a name (in any case) and password; returns the name as registered.
    pub async fn login(&self, credentials: Credentials) -> Result<Verified, AccountError> {
        let stored = match UserName::new(credentials.name) {
            Ok(name) => self.store.user(name).await?,
            Err(_) => None,
        };
        let decoy = Arc::clone(&self.decoy);
        self.hashing(move || {
            let matches = verify(
                stored.as_ref().map_or(decoy.as_str(), |(_, h)| h),
                &credentials.password,
            );
            match stored {
                Some((name, hash)) if matches => Ok(Verified { name, hash }),
                _ => Err(AccountError::BadCredentials),
            }
        })
        .await
    }

    /// The account named `name` in any case, as registered.
    pub async fn find(&self, name: &UserName) -> Result<Option<UserName>, AccountError> {
        Ok(self.store.user(name.clone()).await?.map(|(n, _)| n))
    }

    /// Replaces the password of `current` (just checked by [`Self::login`]) with `new`, unless it
    /// changed meanwhile; returns the new hash.
    pub async fn change_password(
        &self,
        current: Verified,
        new: String,
    ) -> Result<Verified, AccountError> {
        shared::api::check_password(current.name.as_str(), &new)
            .map_err(AccountError::WeakPassword)?;
        let hashed = self.hashing(move || hash(&new)).await?;
        // Only over the hash just checked: two changes at once cannot both win.
        if self
            .store
            .replace_hash(current.name.clone(), current.hash, hashed.clone())
            .await?
        {
            Ok(Verified {
                name: current.name,
                hash: hashed,
            })
        } else {
            Err(AccountError::BadCredentials)
        }
    }

    /// Deletes the account of `current` (just checked by [`Self::login`]), unless its password changed
    /// meanwhile.
    pub async fn delete(&self, current: Verified) -> Result<(), AccountError> {
        if self.store.delete_user(current.name, current.hash).await? {
            Ok(())
        } else {
            Err(AccountError::BadCredentials)
        }
    }
}

thread_local! {
    /// Argon2's working memory, kept by each hashing thread for its next hash. Allocating it per hash
    /// (what `argon2`'s convenience API does) leaves every 19 MiB block list behind in glibc's heap, so
    /// resident memory would grow with every sign-in.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs Argon2 `algorithm`/`version`/`params` over `password` and `salt` into `out`, in this thread's
/// reused working memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let blocks = params.block_count();
        if memory.len() != blocks {
            *memory = vec![Block::default(); blocks];
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            out,
            &mut memory[..],
        )
    })
}

/// A new Argon2id hash of `password` in the PHC string format (`$argon2id$v=19$m=...`).
fn hash(password: &str) -> Result<String, AccountError> {
    let fail = |e: &dyn std::fmt::Display| AccountError::Hash(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password,
        salt_bytes,
        &mut out,
    )
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (compared in constant time).
fn verify(stored: &str, password: &str) -> bool {
    let check = || -> Option<bool> {
        let phc = PasswordHash::new(stored).ok()?;
        let expected = phc.hash?;
        let algorithm = Algorithm::try_from(phc.algorithm).ok()?;
        let version = Version::try_from(phc.version.unwrap_or(Version::V0x13.into())).ok()?;
        let params = Params::try_from(&phc).ok()?;
        let mut salt = [0u8; 64];
        let salt = phc.salt?.decode_b64(&mut salt).ok()?;
        let mut out = vec![0u8; expected.len()];
        argon2_into(algorithm, version, params, password, salt, &mut out).ok()?;
        // `Output`'s equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db::Database, users::sqlite::SqliteUsers};
    use rusqlite::Connection;

    fn creds(name: &str, password: &str) -> Credentials {
        Credentials {
            name: name.into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn register_then_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        let accounts = Accounts::new(Arc::new(SqliteUsers::new(db.clone())), 2).expect("accounts");
        let ann = accounts
            .register(creds("Ann", "correct horse"))
            .await
            .expect("register")
            .name;
        assert_eq!(ann.as_str(), "Ann");
        for taken in ["Ann", "ann", "ANN"] {
            assert!(
                matches!(
                    accounts.register(creds(taken, "another pass")).await,
                    Err(AccountError::NameTaken)
                ),
                "{taken}"
            );
        }
        assert!(matches!(
            accounts.register(creds("b b", "correct horse")).await,
            Err(AccountError::BadName(_))
        ));
        assert!(matches!(
            accounts.register(creds("Guest-1", "correct horse")).await,
            Err(AccountError::BadName(_))
        ));
        assert!(matches!(
            accounts.register(creds("bob", "short")).await,
            Err(AccountError::WeakPassword(_))
        ));
        for spelling in ["Ann", "ann", "aNN"] {
            assert_eq!(
                accounts
                    .login(creds(spelling, "correct horse"))
                    .await
                    .expect("login")
                    .name,
                ann,
                "signs in as the name as registered"
            );
        }
        assert!(matches!(
            accounts.login(creds("ann", "wrong horse")).await,
            Err(AccountError::BadCredentials)
        ));
        assert!(matches!(
            accounts.login(creds("nobody", "correct horse")).await,
            Err(AccountError::BadCredentials)
        ));
        let upper = UserName::new("ANN").expect("name");
        assert_eq!(
            accounts.find(&upper).await.expect("find"),
            Some(ann.clone())
        );

        let old = accounts
            .login(creds("ann", "correct horse"))
            .await
            .expect("login");
        accounts
            .change_password(old.clone(), "battery staple".into())
            .await
            .expect("change");
        assert!(accounts.login(creds("ann", "correct horse")).await.is_err());
        let current = accounts
            .login(creds("ann", "battery staple"))
            .await
            .expect("new password");
        assert!(
            matches!(
                accounts
                    .change_password(old.clone(), "third one!".into())
                    .await,
                Err(AccountError::BadCredentials)
            ),
            "a change over a password that is no longer current loses"
        );
        assert!(matches!(
            accounts.delete(old).await,
            Err(AccountError::BadCredentials)
        ));
        accounts.delete(current).await.expect("delete");
        assert_eq!(accounts.find(&ann).await.expect("find"), None);

        accounts
            .register(creds("bob", "correct horse"))
            .await
            .expect("register");
        let stored: String = Connection::open(db.path())
            .expect("open")
            .query_row(
                "SELECT password_hash FROM users WHERE name = 'bob'",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "hashed with Argon2id, never stored plain: {stored}"
        );
    }

    #[test]
    fn hashes_are_standard_phc_strings_and_memory_is_reused() {
        use argon2::PasswordVerifier;
        let ours = hash("correct horse").expect("hash");
        // The argon2 crate's own verifier accepts ours, and ours accepts its hashes.
        let parsed = PasswordHash::new(&ours).expect("PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(verify(&ours, "correct horse") && !verify(&ours, "wrong horse"));
        assert!(!verify("not a hash", "correct horse"));
        // The same block, hash after hash. (Not the process's resident memory: the tests running beside
        // this one in the same process move it by tens of MiB.)
        let block = || MEMORY.with(|m| m.borrow().as_ptr() as usize);
        let first = block();
        for _ in 0..8 {
            assert!(!verify(&ours, "wrong horse"));
            assert_eq!(
                block(),
                first,
                "every hash on this thread works in the same memory"
            );
        }
    }
}
