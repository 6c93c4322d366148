//! Who may use which room.
//!
//! Rooms are public unless created private with `create`; only a room that does not exist yet can be
//! created (no history, nobody in it, never created before), else `room_exists`. A private room's creator
//! owns it; members add others with `invite` (only existing accounts), the owner removes them with
//! `remove`. Only members may join, read or post in a private room.
//!
//! The rooms themselves live in the [`History`] store, which also refuses a non-member's message inside the
//! transaction that would store it. This module keeps a bounded in-memory copy for the per-frame checks of
//! sessions, and after every change removes whoever may no longer be there from the [`Hub`], so a removed
//! member (or someone who joined a public room in the instant it became private) stops receiving at once.

use crate::{
    history::{History, HistoryError, RoomInfo},
    hub::Hub,
};
use shared::{RoomId, UserName};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

/// Rooms whose access is kept in memory; past this the cache starts over.
const MAX_CACHED_ROOMS: usize = 10_000;

/// Why a room request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not allowed (not a member, not the owner, not a private room).
    #[error("forbidden")]
    Forbidden,
    /// The name is taken.
    #[error("room exists")]
    Exists,
    /// The store failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// Who may use one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everybody.
    Public,
    /// Its members only.
    Private {
        /// Who may remove members.
        owner: Option<UserName>,
        /// Who may use it.
        members: HashSet<UserName>,
    },
}

impl Access {
    /// Whether `user` may use the room.
    pub fn allows(&self, user: &UserName) -> bool {
        match self {
            Self::Public => true,
            Self::Private { members, .. } => members.contains(user),
        }
    }
}

impl From<Option<RoomInfo>> for Access {
    fn from(info: Option<RoomInfo>) -> Self {
        match info {
            Some(info) if info.private => Self::Private {
                owner: info.owner,
                members: info.members.into_iter().collect(),
            },
            _ => Self::Public,
        }
    }
}

/// Private rooms, their members, and the cached copy sessions check against.
#[derive(Debug, Clone)]
pub struct RoomAccess {
    history: Arc<dyn History>,
    hub: Arc<Hub>,
    /// Read on every chat, written only when a room is loaded or changed.
    cache: Arc<RwLock<Cache>>,
}

#[derive(Debug, Default)]
struct Cache {
    rooms: HashMap<RoomId, Arc<Access>>,
    /// Bumped by every change, so that a load that read the store before a change does not cache it.
    generation: u64,
}

impl RoomAccess {
    /// Access to the rooms of `history`, evicting from `hub`.
    pub fn new(history: Arc<dyn History>, hub: Arc<Hub>) -> Self {
        Self {
            history,
            hub,
            cache: Arc::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Who may use `room`.
    pub async fn access(&self, room: &RoomId) -> Result<Arc<Access>, HistoryError> {
        let generation = {
            let cache = self.read();
            if let Some(access) = cache.rooms.get(room) {
                return Ok(Arc::clone(access));
            }
            cache.generation
        };
        let access = Arc::new(Access::from(self.history.room(room.clone()).await?));
        let mut cache = self.write();
        if cache.generation == generation {
            if cache.rooms.len() >= MAX_CACHED_ROOMS {
                cache.rooms.clear();
            }
            cache.rooms.insert(room.clone(), Arc::clone(&access));
        }
        Ok(access)
    }

    /// Whether `user` may join, read and post in `room`.
    pub async fn allowed(&self, room: &RoomId, user: &UserName) -> Result<bool, HistoryError> {
        Ok(self.access(room).await?.allows(user))
    }

    /// Creates `room` (private or not) owned by `owner`, if nobody uses the name yet.
    pub async fn create(
        &self,
        room: &RoomId,
        owner: &UserName,
        private: bool,
    ) -> Result<(), AccessError> {
        // The lobby is everyone's from the first connection on, history or not.
        if *room == RoomId::lobby() || self.hub.member_count(room) > 0 {
            return Err(AccessError::Exists);
        }
        if !self
            .history
            .create_room(room.clone(), owner.clone(), private)
            .await?
        {
            return Err(AccessError::Exists);
        }
        self.reload(room).await?;
        Ok(())
    }

    /// Adds `user` (an existing account) to the private `room`, if `inviter` is a member.
    pub async fn invite(
        &self,
        room: &RoomId,
        inviter: &UserName,
        user: &UserName,
    ) -> Result<(), AccessError> {
        if !matches!(*self.access(room).await?, Access::Private { ref members, .. } if members.contains(inviter))
        {
            return Err(AccessError::Forbidden);
        }
        if !self
            .history
            .set_member(room.clone(), user.clone(), true)
            .await?
        {
            return Err(AccessError::Forbidden);
        }
        self.reload(room).await?;
        Ok(())
    }

    /// Removes `user` from the private `room`, if `by` owns it; `user`'s connections leave it at once.
    pub async fn remove(
        &self,
        room: &RoomId,
        by: &UserName,
        user: &UserName,
    ) -> Result<(), AccessError> {
        if !matches!(*self.access(room).await?, Access::Private { owner: Some(ref o), .. } if o == by)
        {
            return Err(AccessError::Forbidden);
        }
        self.history
            .set_member(room.clone(), user.clone(), false)
            .await?;
        self.reload(room).await?;
        Ok(())
    }

    /// Forgets `user` everywhere (the account was deleted).
    pub async fn forget_user(&self, user: &UserName) -> Result<(), HistoryError> {
        self.history.forget_user(user.clone()).await?;
        self.reload_all();
        Ok(())
    }

    /// Forgets every cached room (announcements of changes may have been missed).
    pub fn reload_all(&self) {
        let mut cache = self.write();
        cache.generation += 1;
        cache.rooms.clear();
    }

    /// Reloads `room` after a change (here, or announced by another node) and takes everyone no longer
    /// allowed out of it.
    pub async fn reload(&self, room: &RoomId) -> Result<(), HistoryError> {
        {
            let mut cache = self.write();
            cache.generation += 1;
            cache.rooms.remove(room);
        }
        let access = self.access(room).await?;
        self.hub.evict(room, |user| access.allows(user));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db::Database, history::sqlite::SqliteHistory, mailbox::mailbox};

    fn name(s: &str) -> UserName {
        UserName::new(s).expect("name")
    }

    #[tokio::test]
    async fn private_rooms_admit_members_and_evict_the_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        let history: Arc<dyn History> = Arc::new(SqliteHistory::new(db.clone()));
        let hub = Arc::new(Hub::default());
        let access = RoomAccess::new(Arc::clone(&history), Arc::clone(&hub));
        let room = RoomId::new("team").expect("room");
        let (ann, bob, eve) = (name("ann"), name("bob"), name("eve"));

        assert!(
            access.allowed(&room, &eve).await.expect("check"),
            "public until created"
        );
        access.create(&room, &ann, true).await.expect("create");
        assert!(matches!(
            access.create(&room, &bob, false).await,
            Err(AccessError::Exists)
        ));
        assert!(access.allowed(&room, &ann).await.expect("check"));
        assert!(
            !access.allowed(&room, &bob).await.expect("check"),
            "the cached public entry is gone"
        );
        assert!(matches!(
            access.invite(&room, &eve, &eve).await,
            Err(AccessError::Forbidden)
        ));
        access.invite(&room, &ann, &bob).await.expect("invite");
        assert!(
            matches!(
                access.remove(&room, &bob, &ann).await,
                Err(AccessError::Forbidden)
            ),
            "only the owner removes"
        );

        let (mb, mut rb) = mailbox(1024);
        hub.join(&room, 7, &bob, &mb);
        access.remove(&room, &ann, &bob).await.expect("remove");
        assert_eq!(hub.member_count(&room), 0, "bob's connection left the room");
        assert!(matches!(rb.try_recv(), Some(crate::mailbox::Outbound::Evicted(r)) if r == room));
        assert!(!access.allowed(&room, &bob).await.expect("check"));

        // A fresh node (empty cache) reads the same from the store.
        let again = RoomAccess::new(history, hub);
        assert!(again.allowed(&room, &ann).await.expect("check"));
        assert!(!again.allowed(&room, &bob).await.expect("check"));
    }

    #[tokio::test]
    async fn a_room_with_people_in_it_cannot_be_taken_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        let hub = Arc::new(Hub::default());
        let access = RoomAccess::new(Arc::new(SqliteHistory::new(db)), Arc::clone(&hub));
        let room = RoomId::new("open").expect("room");
        let (mb, _rb) = mailbox(1024);
        hub.join(&room, 1, &name("bob"), &mb);
        assert!(matches!(
            access.create(&room, &name("ann"), true).await,
            Err(AccessError::Exists)
        ));
    }
}
