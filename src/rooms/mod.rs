//! The room server: every room is a DAG of signed PDUs. This module builds,
//! hashes and signs local events, checks them with ruma's auth rules,
//! keeps state as state groups, appends to the timeline, and answers what a
//! user may see (client-server API "Rooms", "Room history visibility";
//! server-server API "PDUs", "Authorization rules"; room versions).

mod append;
mod backfill;
mod create;
pub mod directory;
pub mod event_format;
pub mod hierarchy;
mod joined;
mod membership;
mod relations;
mod remote;
mod remote_invite;
mod remote_state;
mod send_state;
mod server_acl;
mod state_res_v1;
mod timeline;
mod upgrade;
pub mod versions;
pub mod visibility;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
};

pub use self::{
    append::{EventDraft, MAX_PDU_BYTES, TxnRef},
    create::{CreateRoom, Preset},
    directory::PublicRoomsPage,
    hierarchy::{HierarchyPage, HierarchyRequest, RemoteHierarchy, RemoteSpace, SpaceForServer},
    membership::JoinRequest,
    relations::{RECURSION_DEPTH, RelationFilter, RelationsPage, ThreadInclude},
    remote::{RemoteOutcome, STRIPPED_STATE, VerifiedPdu},
    timeline::{EventFilter, MessagesPage, PageRequest, PaginationToken},
};
/// The PDU type lives below the domains (the commit pipeline carries it);
/// `rooms::pdu` stays its familiar path.
pub use crate::pdu;
use crate::pdu::Pdu;
use crate::{
    commit::{Commit, CommitPipeline},
    config::Config,
    server_key::ServerKey,
    storage::{Storage, StorageError, rooms::StoredEvent, sync::UnreadCount},
};

/// Room state: `(event type, state key) -> event id`.
pub type StateMap = HashMap<(StateEventType, String), OwnedEventId>;

#[derive(Debug, thiserror::Error)]
pub enum RoomsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("room version {0} is not supported")]
    UnsupportedRoomVersion(String),
    #[error("the event is larger than 65536 bytes")]
    TooLarge,
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    RoomInUse(String),
    /// `PUT /directory/room/{alias}` for an alias that exists (409).
    #[error("{0}")]
    AliasExists(String),
    #[error("{0}")]
    BadAlias(String),
    /// An `m.room.canonical_alias` naming an alias of another room.
    #[error("{0}")]
    CanonicalAlias(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = RoomsError> = std::result::Result<T, E>;

/// What the append path keeps in memory per room, behind the room's lock.
#[derive(Debug, Clone)]
struct RoomHead {
    rules: RoomVersionRules,
    extremities: Vec<OwnedEventId>,
    max_depth: u64,
    state_group: i64,
    /// Deltas since the last full snapshot of `state_group`.
    delta_depth: i64,
    state: Arc<StateMap>,
    /// Local and remote users whose membership is `join`: whom to wake.
    joined: Arc<HashSet<OwnedUserId>>,
    /// Whether the last message sent ahead on this head (see
    /// `append_local`) was stored; `None` once that is known to be so.
    sent_ahead: Option<SentAhead>,
}

/// Resolves to whether an event queued for storage was stored.
#[derive(Clone)]
struct SentAhead(futures_util::future::Shared<tokio::sync::oneshot::Receiver<bool>>);

impl std::fmt::Debug for SentAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentAhead")
    }
}

type HeadSlot = Arc<tokio::sync::Mutex<Option<RoomHead>>>;
type HeadGuard = tokio::sync::OwnedMutexGuard<Option<RoomHead>>;

pub struct Rooms {
    db: Arc<dyn Storage>,
    config: Arc<Config>,
    key: Arc<ServerKey>,
    /// Where every committed event is announced (syncs, federation, ...).
    commits: Arc<CommitPipeline>,
    /// One append lock per room: concurrent sends keep one consistent set
    /// of forward extremities.
    heads: Mutex<HashMap<OwnedRoomId, HeadSlot>>,
    /// Parsed events by id (state events are read on every append).
    events: quick_cache::sync::Cache<OwnedEventId, Arc<Pdu>>,
    /// Resolved state groups (immutable once written), weighed by entries:
    /// visibility checks and sync read the same few groups again and again.
    groups: quick_cache::sync::Cache<i64, Arc<StateMap>, StateWeighter>,
    /// The last unread count sync computed per (room, user), to count on from.
    unread: quick_cache::sync::Cache<(OwnedRoomId, OwnedUserId), UnreadCount>,
    /// The `origin_server_ts` of the last create event made here: each
    /// one gets a later one (see `next_create_ts`).
    last_create_ts: AtomicU64,
}

/// Weighs a cached state group by its number of entries.
#[derive(Clone)]
struct StateWeighter;

impl quick_cache::Weighter<i64, Arc<StateMap>> for StateWeighter {
    fn weight(&self, _group: &i64, state: &Arc<StateMap>) -> u64 {
        state.len().max(1) as u64
    }
}

/// How many state entries the state group cache holds in all.
const STATE_CACHE_ENTRIES: u64 = 100_000;

impl Rooms {
    pub fn new(db: Arc<dyn Storage>, config: Arc<Config>, key: Arc<ServerKey>, commits: Arc<CommitPipeline>) -> Self {
        Self {
            db,
            config,
            key,
            commits,
            heads: Mutex::new(HashMap::new()),
            events: quick_cache::sync::Cache::new(20_000),
            groups: quick_cache::sync::Cache::with_weighter(4_096, STATE_CACHE_ENTRIES, StateWeighter),
            unread: quick_cache::sync::Cache::new(10_000),
            last_create_ts: AtomicU64::new(0),
        }
    }

    /// The `origin_server_ts` of a new create event: now, or one
    /// millisecond after the last one if that is not earlier. From room
    /// version 12 the room id is the create event's reference hash, so two
    /// `createRoom` calls of one user with the same content in the same
    /// millisecond would otherwise make the same event and the same room;
    /// a distinct timestamp keeps every create event (and room) distinct
    /// without adding anything to the content.
    fn next_create_ts(&self) -> u64 {
        let now = u64::from(ruma::MilliSecondsSinceUnixEpoch::now().get());
        let previous = self
            .last_create_ts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
            .expect("the update closure always returns Some");
        now.max(previous + 1)
    }

    /// Announces an event that became part of its room at `position`:
    /// the one way out of the room server for every stored event.
    async fn event_committed(
        &self,
        position: i64,
        event: &Pdu,
        wake: &[&ruma::UserId],
        destinations: &[ruma::OwnedServerName],
    ) {
        self.commits.committed(Commit::RoomEvent { position, event, wake, destinations }).await;
    }

    fn head_slot(&self, room_id: &RoomId) -> HeadSlot {
        let mut heads = self.heads.lock().expect("heads mutex is never poisoned");
        heads.entry(room_id.to_owned()).or_default().clone()
    }

    /// Locks the room's head, loading it from storage if needed. Messages
    /// may still be on their way to storage when the lock is free again
    /// (`append_local`); unless `wait` is false, this waits for them, and
    /// when the last was not stored (so neither was anything built on it),
    /// the head is loaded again from storage.
    async fn lock_head(&self, room_id: &RoomId, wait: bool) -> Result<HeadGuard> {
        let mut guard = self.head_slot(room_id).lock_owned().await;
        if let Some(head) = guard.as_mut()
            && let Some(SentAhead(sent_ahead)) = head.sent_ahead.clone()
        {
            let stored = if wait {
                Some(sent_ahead.await.unwrap_or(false))
            } else {
                sent_ahead.peek().map(|stored| stored.clone().unwrap_or(false))
            };
            match stored {
                Some(true) => head.sent_ahead = None,
                Some(false) => *guard = None,
                None => {}
            }
        }
        if guard.is_none() {
            *guard = self.load_head(room_id).await?;
        }
        Ok(guard)
    }

    /// Loads a room's head from storage.
    async fn load_head(&self, room_id: &RoomId) -> Result<Option<RoomHead>> {
        let Some(record) = self.db.room_head(room_id.to_string()).await? else {
            return Ok(None);
        };
        let version = RoomVersionId::try_from(record.room_version.as_str())
            .map_err(|e| RoomsError::Internal(format!("stored room version: {e}")))?;
        let rules = version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(version.to_string()))?;
        let state = self.state_at_group(record.current_state_group).await?;
        let joined = self
            .db
            .room_members_with(room_id.to_string(), MembershipState::Join)
            .await?
            .into_iter()
            .filter_map(|u| OwnedUserId::try_from(u).ok())
            .collect();
        Ok(Some(RoomHead {
            rules,
            extremities: parse_ids(record.forward_extremities)?,
            max_depth: record.max_depth as u64,
            state_group: record.current_state_group,
            // Unknown after a restart: start a fresh snapshot at the next
            // state change, which keeps chains bounded.
            delta_depth: versions::MAX_DELTA_CHAIN,
            state,
            joined: Arc::new(joined),
            sent_ahead: None,
        }))
    }

    /// The full state of a state group (cached: groups never change).
    pub async fn state_at_group(&self, group: i64) -> Result<Arc<StateMap>> {
        if let Some(state) = self.groups.get(&group) {
            return Ok(state);
        }
        let state = Arc::new(to_state_map(self.db.state_group(group).await?)?);
        self.groups.insert(group, state.clone());
        Ok(state)
    }

    /// Loads the given state groups into the cache with one read.
    pub async fn preload_state_groups(&self, groups: impl IntoIterator<Item = i64>) -> Result<()> {
        let mut missing: Vec<i64> = groups.into_iter().filter(|g| self.groups.get(g).is_none()).collect();
        missing.sort_unstable();
        missing.dedup();
        for (group, stored) in self.db.state_groups(missing).await? {
            self.groups.insert(group, Arc::new(to_state_map(stored)?));
        }
        Ok(())
    }

    /// Remembers the state of a group just written (it is the head's state).
    fn remember_state_group(&self, group: i64, state: &Arc<StateMap>) {
        self.groups.insert(group, state.clone());
    }

    /// The unread count last computed for the user in the room.
    pub fn last_unread_count(&self, room_id: &OwnedRoomId, user_id: &OwnedUserId) -> Option<UnreadCount> {
        self.unread.get(&(room_id.clone(), user_id.clone()))
    }

    pub fn remember_unread_count(&self, room_id: &OwnedRoomId, user_id: &OwnedUserId, count: UnreadCount) {
        self.unread.insert((room_id.clone(), user_id.clone()), count);
    }

    /// A parsed event from a row already read (cached like `get_pdu`).
    pub fn pdu_from_stored(&self, stored: StoredEvent) -> Result<Arc<Pdu>> {
        if let Ok(id) = OwnedEventId::try_from(stored.event_id.as_str())
            && let Some(pdu) = self.events.get(&id)
        {
            return Ok(pdu);
        }
        let pdu = Arc::new(parse_stored(stored)?);
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        Ok(pdu)
    }

    /// An event by id, parsed (cached).
    pub async fn get_pdu(&self, event_id: &OwnedEventId) -> Result<Option<Arc<Pdu>>> {
        if let Some(pdu) = self.events.get(event_id) {
            return Ok(Some(pdu));
        }
        let Some(stored) = self.db.get_event(event_id.to_string()).await? else {
            return Ok(None);
        };
        let pdu = Arc::new(parse_stored(stored)?);
        self.events.insert(event_id.clone(), pdu.clone());
        Ok(Some(pdu))
    }

    /// Several events by id; missing ones are skipped.
    pub async fn get_pdus(
        &self,
        ids: impl IntoIterator<Item = &OwnedEventId>,
    ) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.events.get(id) {
                Some(pdu) => {
                    out.insert(id.clone(), pdu);
                }
                None => missing.push(id.to_string()),
            }
        }
        if !missing.is_empty() {
            for stored in self.db.get_events(missing).await? {
                let pdu = Arc::new(parse_stored(stored)?);
                self.events.insert(pdu.event_id.clone(), pdu.clone());
                out.insert(pdu.event_id.clone(), pdu);
            }
        }
        Ok(out)
    }

    /// The room's current state (from the head when loaded).
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Arc<StateMap>> {
        let head = self.lock_head(room_id, true).await?;
        head.as_ref().map(|h| h.state.clone()).ok_or_else(|| RoomsError::NotFound("unknown room".into()))
    }

    /// The room's forward extremities.
    pub async fn forward_extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let head = self.lock_head(room_id, true).await?;
        head.as_ref().map(|h| h.extremities.clone()).ok_or_else(|| RoomsError::NotFound("unknown room".into()))
    }

    /// One state event of the current state, parsed.
    pub async fn current_state_event(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        key: &str,
    ) -> Result<Option<Arc<Pdu>>> {
        let state = self.current_state(room_id).await?;
        match state.get(&(kind.clone(), key.to_owned())) {
            Some(id) => self.get_pdu(id).await,
            None => Ok(None),
        }
    }

    pub async fn room_version(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        let version = self
            .db
            .room_version(room_id.to_string())
            .await?
            .ok_or_else(|| RoomsError::NotFound("unknown room".into()))?;
        RoomVersionId::try_from(version).map_err(|e| RoomsError::Internal(e.to_string()))
    }

    /// The user's current membership in the room, if any.
    pub async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<MembershipState>> {
        Ok(self.db.membership(room_id.to_string(), user_id.to_string()).await?.map(|(m, _)| m))
    }

    pub async fn joined_rooms(&self, user_id: &OwnedUserId) -> Result<Vec<OwnedRoomId>> {
        let rooms = self.db.rooms_with_membership(user_id.to_string(), MembershipState::Join).await?;
        rooms.into_iter().map(|r| OwnedRoomId::try_from(r).map_err(|e| RoomsError::Internal(e.to_string()))).collect()
    }

    pub async fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        let users = self.db.room_members_with(room_id.to_string(), MembershipState::Join).await?;
        users.into_iter().map(|u| OwnedUserId::try_from(u).map_err(|e| RoomsError::Internal(e.to_string()))).collect()
    }

    /// Requires the user to be joined to the room.
    pub async fn require_joined(&self, room_id: &RoomId, user_id: &OwnedUserId) -> Result<()> {
        match self.membership(room_id, user_id).await? {
            Some(MembershipState::Join) => Ok(()),
            _ => Err(RoomsError::Forbidden("you are not joined to this room".into())),
        }
    }
}

fn to_state_map(stored: crate::storage::rooms::StoredState) -> Result<StateMap> {
    let mut state = StateMap::with_capacity(stored.len());
    for ((kind, key), id) in stored {
        let id = OwnedEventId::try_from(id).map_err(|e| RoomsError::Internal(e.to_string()))?;
        state.insert((StateEventType::from(kind), key), id);
    }
    Ok(state)
}

fn parse_ids(ids: Vec<String>) -> Result<Vec<OwnedEventId>> {
    ids.into_iter().map(|id| OwnedEventId::try_from(id).map_err(|e| RoomsError::Internal(e.to_string()))).collect()
}

/// Parses a stored event into a `Pdu` with its storage metadata.
fn parse_stored(stored: StoredEvent) -> Result<Pdu> {
    let event_id = OwnedEventId::try_from(stored.event_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
    let room = OwnedRoomId::try_from(stored.room_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
    let mut pdu = Pdu::from_json(event_id, room, &stored.json).map_err(|e| RoomsError::Internal(e.to_string()))?;
    pdu.rejected = stored.rejected;
    pdu.stream_ordering = Some(stored.stream_ordering);
    pdu.state_group = Some(stored.state_group);
    pdu.replaces_state = stored.replaces_state.and_then(|id| OwnedEventId::try_from(id).ok());
    pdu.redacted_by = stored.redacted_by.and_then(|id| OwnedEventId::try_from(id).ok());
    pdu.txn = stored.txn.map(|(device, txn)| (device.into(), txn));
    Ok(pdu)
}
