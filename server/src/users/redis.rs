//! Accounts and sessions in Redis, shared by every node (see [`users.lua`](../broker/users.lua)).
//!
//! A revocation is published on the control channel, so every node closes the revoked session's
//! connections and refuses its token from then on.

use super::{SessionId, StoreError, UserStore, name_key};
use crate::broker::{Broker, CONTROL_CHANNEL, keys};
use futures_util::future::BoxFuture;
use shared::UserName;
use std::{collections::HashMap, sync::Arc};

/// Accounts and sessions in Redis.
#[derive(Debug, Clone)]
pub struct RedisUsers {
    broker: Arc<Broker>,
}

impl RedisUsers {
    /// The records behind `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        keys: &[String],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut invocation = self.broker.scripts.users.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        Ok(self.broker.script(&invocation).await?)
    }
}

impl UserStore for RedisUsers {
    fn insert_user(
        &self,
        name: UserName,
        hash: String,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = now_ms.to_string();
            let done: i64 = self
                .call(
                    &[keys::user(&name_key(&name))],
                    &["register", name.as_str(), &hash, &now],
                )
                .await?;
            Ok(done == 1)
        })
    }

    fn user(
        &self,
        name: UserName,
    ) -> BoxFuture<'_, Result<Option<(UserName, String)>, StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(keys::user(&name_key(&name)))
                .arg("name")
                .arg("hash");
            let (stored, hash): (Option<String>, Option<String>) =
                self.broker.command(&cmd).await?;
            Ok(stored
                .zip(hash)
                .and_then(|(n, h)| UserName::new(n).ok().map(|n| (n, h))))
        })
    }

    fn replace_hash(
        &self,
        name: UserName,
        old: String,
        new: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let done: i64 = self
                .call(
                    &[keys::user(&name_key(&name))],
                    &["set-hash", name.as_str(), &old, &new],
                )
                .await?;
            Ok(done == 1)
        })
    }

    fn delete_user(&self, name: UserName, hash: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let done: i64 = self
                .call(
                    &[keys::user(&name_key(&name))],
                    &["delete", name.as_str(), &hash],
                )
                .await?;
            Ok(done == 1)
        })
    }

    fn start_session(
        &self,
        sid: SessionId,
        user: UserName,
        hash: String,
        expires_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let expires = expires_ms.to_string();
            let done: i64 = self
                .call(
                    &[
                        keys::user(&name_key(&user)),
                        format!("{}{sid}", keys::SESSION_PREFIX),
                        keys::sessions(user.as_str()),
                    ],
                    &[
                        "start",
                        user.as_str(),
                        &hash,
                        &sid,
                        &expires,
                        keys::SESSION_PREFIX,
                    ],
                )
                .await?;
            Ok(done == 1)
        })
    }

    fn revoke_session(&self, sid: SessionId) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let expires: Option<i64> = self
                .call(
                    &[
                        String::new(),
                        format!("{}{sid}", keys::SESSION_PREFIX),
                        keys::REVOKED.to_owned(),
                    ],
                    &["revoke", &sid, CONTROL_CHANNEL],
                )
                .await?;
            Ok(expires)
        })
    }

    fn revoke_sessions(
        &self,
        user: UserName,
    ) -> BoxFuture<'_, Result<Vec<(SessionId, i64)>, StoreError>> {
        Box::pin(async move {
            let flat: Vec<String> = self
                .call(
                    &[
                        String::new(),
                        keys::sessions(user.as_str()),
                        keys::REVOKED.to_owned(),
                    ],
                    &[
                        "revoke-all",
                        user.as_str(),
                        CONTROL_CHANNEL,
                        keys::SESSION_PREFIX,
                    ],
                )
                .await?;
            Ok(flat
                .chunks(2)
                .filter_map(|pair| match pair {
                    [sid, expires] => Some((sid.clone(), expires.parse().ok()?)),
                    _ => None,
                })
                .collect())
        })
    }

    fn revoked(&self, now_ms: i64) -> BoxFuture<'_, Result<HashMap<SessionId, i64>, StoreError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(keys::REVOKED)
                .arg("-inf")
                .arg(now_ms)
                .ignore()
                .cmd("ZRANGE")
                .arg(keys::REVOKED)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
            let (revoked,): (Vec<(String, f64)>,) = self.broker.pipeline(&pipe).await?;
            Ok(revoked
                .into_iter()
                .map(|(sid, expires)| (sid, expires as i64))
                .collect())
        })
    }
}
