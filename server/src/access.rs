//! Who may use which room.
//!
//! Rooms are public unless created private: the first `join` with `"private": true` of a room that has no
//! history and nobody in it makes the joiner its only member; members add others with `invite`. Only
//! members may join, read or post in a private room. The member lists live in SQLite (same file as the
//! history) and, for the per-message check, in memory.

use rusqlite::{Connection, params};
use shared::{RoomId, UserName};
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex, RwLock},
};

/// Access-control failures.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not allowed.
    #[error("forbidden")]
    Forbidden,
    /// The database failed.
    #[error("access database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The blocking task failed.
    #[error("access task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Private rooms and their members.
#[derive(Debug, Clone)]
pub struct RoomAccess {
    conn: Arc<Mutex<Connection>>,
    private: Arc<RwLock<HashMap<RoomId, HashSet<UserName>>>>,
}

impl RoomAccess {
    /// Opens the member tables in `data_dir/chat.db` and loads them.
    pub fn open(data_dir: &Path) -> Result<Self, AccessError> {
        let conn = crate::history::sqlite::open_with_schema(
            data_dir,
            "CREATE TABLE IF NOT EXISTS room_members (
                room TEXT NOT NULL,
                user TEXT NOT NULL,
                PRIMARY KEY (room, user)
            ) WITHOUT ROWID;",
        )?;
        let mut private: HashMap<RoomId, HashSet<UserName>> = HashMap::new();
        {
            let mut rows = conn.prepare("SELECT room, user FROM room_members")?;
            let rows =
                rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (room, user) = row?;
                if let (Ok(room), Ok(user)) = (RoomId::new(room), UserName::new(user)) {
                    private.entry(room).or_default().insert(user);
                }
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            private: Arc::new(RwLock::new(private)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RoomId, HashSet<UserName>>> {
        self.private.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user` may join, read and post in `room`.
    pub fn allowed(&self, room: &RoomId, user: &UserName) -> bool {
        self.read()
            .get(room)
            .is_none_or(|members| members.contains(user))
    }

    /// Whether `room` is private.
    pub fn is_private(&self, room: &RoomId) -> bool {
        self.read().contains_key(room)
    }

    /// Makes `room` private with `creator` as its only member. The caller checked that the room is new.
    pub async fn create_private(
        &self,
        room: &RoomId,
        creator: &UserName,
    ) -> Result<(), AccessError> {
        self.add_member(room, creator).await
    }

    /// Adds `user` to the private `room`, if `inviter` is a member.
    pub async fn invite(
        &self,
        room: &RoomId,
        inviter: &UserName,
        user: &UserName,
    ) -> Result<(), AccessError> {
        let is_member = self.read().get(room).is_some_and(|m| m.contains(inviter));
        if !is_member {
            return Err(AccessError::Forbidden);
        }
        self.add_member(room, user).await
    }

    async fn add_member(&self, room: &RoomId, user: &UserName) -> Result<(), AccessError> {
        let conn = Arc::clone(&self.conn);
        let (r, u) = (room.clone(), user.clone());
        tokio::task::spawn_blocking(move || {
            conn.lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute(
                    "INSERT INTO room_members (room, user) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![r.as_str(), u.as_str()],
                )
                .map(drop)
        })
        .await??;
        self.private
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room.clone())
            .or_default()
            .insert(user.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_rooms_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (room, ann, bob, eve) = (
            RoomId::new("team").expect("room"),
            UserName::new("ann").expect("n"),
            UserName::new("bob").expect("n"),
            UserName::new("eve").expect("n"),
        );
        let access = RoomAccess::open(dir.path()).expect("open");
        assert!(access.allowed(&room, &eve), "public until made private");
        access.create_private(&room, &ann).await.expect("create");
        assert!(access.allowed(&room, &ann) && !access.allowed(&room, &bob));
        assert!(matches!(
            access.invite(&room, &eve, &eve).await,
            Err(AccessError::Forbidden)
        ));
        access.invite(&room, &ann, &bob).await.expect("invite");
        drop(access);
        let access = RoomAccess::open(dir.path()).expect("reopen");
        assert!(access.allowed(&room, &bob) && !access.allowed(&room, &eve));
        assert!(access.is_private(&room));
    }
}
