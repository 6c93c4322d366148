//! Sign-in sessions and the live connections that use them.
//!
//! Every account token names a server-side session (its `sid`), stored (in the [`UserStore`]) when the
//! user signs in. Signing out revokes that session; "sign out everywhere", a password change and deleting the
//! account revoke all of the user's. A revoked token is refused at the handshake (401) and by the API, and
//! every open WebSocket of a revoked session is closed at once with 4501 (sign in again).
//!
//! The revoked ids still unexpired are kept in memory, so the check at every handshake costs no database
//! read; they are forgotten once their token would have expired anyway.
//!
//! In the Redis mode a revocation on one node reaches the others through the control channel
//! ([`Sessions::close_revoked`], [`Sessions::close_user`]); a node that lost its subscription for a
//! while reloads the revoked ids when it is back ([`Sessions::reload`]).
//!
//! The same registry counts each user's open connections for `--max-connections-per-user`. In the Redis
//! mode the cap counts every node's connections: each connection holds a lease in Redis
//! ([`Broker::lease`]) that its node renews every [`LEASE_TTL`] / 3 ([`Sessions::keep_leases`]) and gives
//! back when it closes, so a node killed without giving its leases back frees them within [`LEASE_TTL`].

use crate::{
    broker::Broker,
    hub::ConnId,
    mailbox::{Mailbox, Outbound},
    users::{StoreError, UserStore},
};
use rand::Rng;
use shared::UserName;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a connection's lease on a place under the per-user cap lasts unless renewed (Redis mode).
pub const LEASE_TTL: Duration = Duration::from_secs(30);

pub use crate::users::SessionId;

/// The registry of sessions and live connections.
#[derive(Debug)]
pub struct Sessions {
    store: Arc<dyn UserStore>,
    /// Revoked, unexpired session ids and when their tokens expire (unix ms).
    revoked: Mutex<HashMap<SessionId, i64>>,
    live: Arc<Mutex<HashMap<UserName, Vec<Live>>>>,
    max_per_user: usize,
    /// In the Redis mode with a per-user cap: where the leases are.
    leases: Option<Arc<Broker>>,
}

#[derive(Debug)]
struct Live {
    conn: ConnId,
    sid: Option<SessionId>,
    close: CancellationToken,
    /// Set once the connection is upgraded and has a mailbox ([`Attached::reach`]).
    mailbox: Option<Mailbox>,
}

/// The user already has `--max-connections-per-user` connections open.
#[derive(Debug, thiserror::Error)]
#[error("too many connections for this user")]
pub struct TooManyForUser;

/// A live connection's place in the registry; leaves it on drop.
#[derive(Debug)]
pub struct Attached {
    live: Arc<Mutex<HashMap<UserName, Vec<Live>>>>,
    user: UserName,
    conn: ConnId,
    lease: Option<Arc<Broker>>,
    /// Cancelled when the connection's session is revoked, and with the token it was attached within.
    pub revoked: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// The sessions in `store`; loads the revoked ones that have not expired. With a `broker`, the
    /// per-user cap counts the connections of every node.
    pub async fn open(
        store: Arc<dyn UserStore>,
        max_per_user: usize,
        broker: Option<Arc<Broker>>,
    ) -> Result<Self, StoreError> {
        let revoked = store.revoked(crate::now().unix_ms()).await?;
        Ok(Self {
            store,
            revoked: Mutex::new(revoked),
            live: Arc::default(),
            max_per_user,
            leases: broker.filter(|_| max_per_user > 0),
        })
    }

    /// Renews this node's leases until `stop` (Redis mode with a per-user cap; else nothing to do).
    pub fn keep_leases(self: &Arc<Self>, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let broker = Arc::clone(self.leases.as_ref()?);
        let sessions = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(LEASE_TTL / 3);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                let held: Vec<(UserName, ConnId)> = lock(&sessions.live)
                    .iter()
                    .flat_map(|(user, lives)| lives.iter().map(|l| (user.clone(), l.conn)))
                    .collect();
                if !held.is_empty()
                    && let Err(e) = broker.renew_leases(&held, LEASE_TTL).await
                {
                    // Logged by the broker once per outage; renewed again at the next tick.
                    tracing::debug!(error = %e, "renewing connection leases failed");
                }
            }
        }))
    }

    /// Loads the revoked sessions again (after missing announcements from other nodes).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let revoked = self.store.revoked(crate::now().unix_ms()).await?;
        self.remember_revoked(revoked);
        Ok(())
    }

    /// Records a new session for `user` whose token expires at `expires_ms`, if `password_hash` (the one
    /// just checked) is still the account's; returns its id, or `None` when the password changed or the
    /// account was deleted meanwhile (a sign-in racing a password change must not outlive it).
    pub async fn start(
        &self,
        user: &UserName,
        password_hash: String,
        expires_ms: i64,
    ) -> Result<Option<SessionId>, StoreError> {
        let bytes: [u8; 16] = rand::rng().random();
        let sid: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let started = self
            .store
            .start_session(sid.clone(), user.clone(), password_hash, expires_ms)
            .await?;
        Ok(started.then_some(sid))
    }

    /// Whether session `sid` was revoked.
    pub fn is_revoked(&self, sid: &str) -> bool {
        lock(&self.revoked).contains_key(sid)
    }

    /// Revokes session `sid` and closes its connections.
    pub async fn revoke(&self, sid: &SessionId) -> Result<(), StoreError> {
        if let Some(expires) = self.store.revoke_session(sid.clone()).await? {
            self.close_revoked(sid.clone(), expires);
        }
        Ok(())
    }

    /// Revokes every session of `user` and closes all of their connections.
    pub async fn revoke_all(&self, user: &UserName) -> Result<(), StoreError> {
        let revoked = self.store.revoke_sessions(user.clone()).await?;
        self.remember_revoked(revoked);
        self.close_user(user);
        Ok(())
    }

    /// Session `sid` (expiring at `expires_ms`) was revoked, here or on another node: refuse its token and
    /// close its connections on this node.
    pub fn close_revoked(&self, sid: SessionId, expires_ms: i64) {
        for lives in lock(&self.live).values() {
            for live in lives.iter().filter(|l| l.sid.as_ref() == Some(&sid)) {
                live.close.cancel();
            }
        }
        self.remember_revoked([(sid, expires_ms)]);
    }

    /// Tells every connection of `user` on this node that their list of rooms changed: each sends it
    /// again.
    pub fn relist(&self, user: &UserName) {
        if let Some(lives) = lock(&self.live).get(user) {
            for mailbox in lives.iter().filter_map(|l| l.mailbox.as_ref()) {
                mailbox.push(Outbound::Relist);
            }
        }
    }

    /// Closes every connection of `user` on this node (all their sessions were revoked).
    pub fn close_user(&self, user: &UserName) {
        if let Some(lives) = lock(&self.live).get(user) {
            for live in lives {
                live.close.cancel();
            }
        }
    }

    fn remember_revoked(&self, ids: impl IntoIterator<Item = (SessionId, i64)>) {
        let now = crate::now().unix_ms();
        let mut revoked = lock(&self.revoked);
        revoked.retain(|_, expires| *expires > now);
        revoked.extend(ids);
    }

    /// Registers connection `conn` of `user` (through session `sid`, if an account's), unless the user
    /// already has the most connections allowed (in the Redis mode, over all nodes). Its
    /// [`Attached::revoked`] is a child of `within` (the node's shutdown), so that the connection watches
    /// one token for both.
    pub async fn attach(
        &self,
        user: &UserName,
        conn: ConnId,
        sid: Option<SessionId>,
        within: &CancellationToken,
    ) -> Result<Attached, TooManyForUser> {
        // Without Redis the cap is only counted here. (A limit is no reason to turn clients away while
        // Redis is unreachable; the lease is taken at the next renewal.)
        let mut counted_everywhere = false;
        if let Some(broker) = &self.leases {
            match broker.lease(user, conn, self.max_per_user, LEASE_TTL).await {
                Ok(true) => counted_everywhere = true,
                Ok(false) => return Err(TooManyForUser),
                Err(e) => tracing::debug!(error = %e, "connection lease not taken"),
            }
        }
        let mut live = lock(&self.live);
        let revoked = within.child_token();
        // Checked again under the registry's lock: a revocation that ran since the handshake's check
        // either sees this connection below, or is seen here.
        if sid.as_deref().is_some_and(|s| self.is_revoked(s)) {
            revoked.cancel();
        }
        let lives = live.entry(user.clone()).or_default();
        if !counted_everywhere && self.max_per_user > 0 && lives.len() >= self.max_per_user {
            if lives.is_empty() {
                live.remove(user);
            }
            return Err(TooManyForUser);
        }
        lives.push(Live {
            conn,
            sid,
            close: revoked.clone(),
            mailbox: None,
        });
        Ok(Attached {
            live: Arc::clone(&self.live),
            user: user.clone(),
            conn,
            lease: self.leases.clone(),
            revoked,
        })
    }
}

impl Attached {
    /// The upgraded connection's mailbox, through which [`Sessions::relist`] reaches it. (Given after the
    /// upgrade, not with [`Sessions::attach`]: a mailbox allocated among the handshake's buffers leaves
    /// holes in the heap once they are freed, about 0.6 KB of memory per idle connection.)
    pub fn reach(&self, mailbox: Mailbox) {
        if let Some(live) = lock(&self.live)
            .get_mut(&self.user)
            .and_then(|lives| lives.iter_mut().find(|l| l.conn == self.conn))
        {
            live.mailbox = Some(mailbox);
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        if let Some(lives) = live.get_mut(&self.user) {
            lives.retain(|l| l.conn != self.conn);
            if lives.is_empty() {
                live.remove(&self.user);
            }
        }
        if let Some(broker) = self.lease.take() {
            let (user, conn) = (self.user.clone(), self.conn);
            // Not given back (Redis away): it expires within LEASE_TTL.
            tokio::spawn(async move { broker.release(&user, conn).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::{Database, DbError},
        users::sqlite::SqliteUsers,
    };

    #[tokio::test]
    async fn revoking_closes_the_right_connections_and_survives_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        let store: Arc<dyn UserStore> = Arc::new(SqliteUsers::new(db.clone()));
        let sessions = Sessions::open(Arc::clone(&store), 2, None)
            .await
            .expect("sessions");
        let (ann, bob) = (
            UserName::new("ann").expect("n"),
            UserName::new("bob").expect("n"),
        );
        let later = crate::now().unix_ms() + 60_000;
        db.write(|tx| {
            tx.execute_batch(
                "INSERT INTO users (name, name_key, password_hash, created_ms)
                 VALUES ('ann', 'ann', 'h1', 0), ('bob', 'bob', 'h2', 0)",
            )
            .map_err(DbError::from)
        })
        .await
        .expect("users");
        let start = |user, hash: &str| sessions.start(user, hash.to_owned(), later);
        assert_eq!(
            start(&ann, "stale").await.expect("start"),
            None,
            "no session from a password that is no longer the account's"
        );
        let s1 = start(&ann, "h1").await.expect("start").expect("started");
        let s2 = start(&ann, "h1").await.expect("start").expect("started");
        let s3 = start(&bob, "h2").await.expect("start").expect("started");
        let a1 = sessions
            .attach(&ann, 1, Some(s1.clone()), &CancellationToken::new())
            .await
            .expect("attach");
        let a2 = sessions
            .attach(&ann, 2, Some(s2.clone()), &CancellationToken::new())
            .await
            .expect("attach");
        assert!(
            sessions
                .attach(&ann, 3, Some(s2.clone()), &CancellationToken::new())
                .await
                .is_err(),
            "per-user cap"
        );
        let b = sessions
            .attach(&bob, 4, Some(s3.clone()), &CancellationToken::new())
            .await
            .expect("attach");

        sessions.revoke(&s1).await.expect("revoke");
        assert!(a1.revoked.is_cancelled() && !a2.revoked.is_cancelled());
        assert!(sessions.is_revoked(&s1) && !sessions.is_revoked(&s2));
        drop(a1);
        let a3 = sessions
            .attach(&ann, 3, Some(s2.clone()), &CancellationToken::new())
            .await
            .expect("a slot freed");

        sessions.revoke_all(&ann).await.expect("revoke all");
        assert!(a2.revoked.is_cancelled() && a3.revoked.is_cancelled());
        assert!(!b.revoked.is_cancelled(), "other users untouched");

        // Word that a user's rooms changed reaches each of their connections, and only theirs.
        let (to_b, mut b_rx) = crate::mailbox::mailbox(1 << 16);
        let b2 = sessions
            .attach(&bob, 5, Some(s3.clone()), &CancellationToken::new())
            .await
            .expect("attach");
        b2.reach(to_b);
        sessions.relist(&bob);
        assert!(matches!(b_rx.try_recv(), Some(Outbound::Relist)));
        assert!(b_rx.try_recv().is_none(), "once");

        let reopened = Sessions::open(store, 2, None).await.expect("reopen");
        assert!(reopened.is_revoked(&s1) && reopened.is_revoked(&s2));
        assert!(!reopened.is_revoked(&s3));
    }
}
