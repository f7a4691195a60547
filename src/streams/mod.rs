//! The per-user and ephemeral streams that sync delivers beside room
//! events: typing notifications, receipts and read markers, presence,
//! account data (with room tags) and stored filters (client-server API,
//! "Typing Notifications", "Receipts", "Fully read markers", "Presence",
//! "Client Config", "Room Tagging", "Filtering"), and the users each user
//! ignores ("Ignoring Users", `ignored.rs`).

pub mod ignored;
pub mod typing;

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId, api::client::filter::FilterDefinition};
use serde_json::Value;

pub use self::{
    ignored::{IGNORED_USER_LIST, IgnoredUsers},
    typing::Typing,
};
use crate::{
    commit::{Commit, CommitPipeline},
    config::Config,
    rooms::{Rooms, RoomsError},
    storage::{
        Storage, StorageError,
        streams::{PresenceRow, ReceiptRow, timestamp},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadJson(String),
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

pub struct Streams {
    db: Arc<dyn Storage>,
    config: Arc<Config>,
    commits: Arc<CommitPipeline>,
    rooms: Arc<Rooms>,
    pub typing: Typing,
    /// Each user's presence as last stored (every change goes through
    /// `store_presence`), so a sync's `set_presence` costs no read.
    presence: quick_cache::sync::Cache<OwnedUserId, PresenceRow>,
    /// Stored filters as sync uses them. A filter never changes once
    /// created, so each is parsed once and shared by every sync using it.
    filters: quick_cache::sync::Cache<(OwnedUserId, i64), Arc<FilterDefinition>>,
    /// Each user's ignored users, as last stored: replaced by the write
    /// that changes them, before the user's syncs are woken.
    ignored: quick_cache::sync::Cache<OwnedUserId, IgnoredUsers>,
}

/// How many users' stored presence is kept in memory.
const PRESENCE_CACHE_ENTRIES: usize = 20_000;

/// How many parsed filters are kept in memory.
const FILTER_CACHE_ENTRIES: usize = 10_000;

/// A user's presence as served to clients.
#[derive(Debug, Clone)]
pub struct PresenceInfo {
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<u64>,
    pub currently_active: bool,
}

/// Presence states the spec defines.
pub const PRESENCE_STATES: &[&str] = &["online", "unavailable", "offline"];

/// How recently a user must have been active to count as currently active.
const CURRENTLY_ACTIVE_MS: i64 = 5 * 60 * 1000;

impl Streams {
    /// `typing_start` is where the typing stream starts (see `Typing::new`).
    pub fn new(
        db: Arc<dyn Storage>,
        config: Arc<Config>,
        commits: Arc<CommitPipeline>,
        rooms: Arc<Rooms>,
        typing_start: i64,
    ) -> Self {
        let typing = Typing::new(commits.clone(), rooms.clone(), typing_start);
        let presence = quick_cache::sync::Cache::new(PRESENCE_CACHE_ENTRIES);
        let filters = quick_cache::sync::Cache::new(FILTER_CACHE_ENTRIES);
        let ignored = quick_cache::sync::Cache::new(ignored::CACHE_ENTRIES);
        Self { db, config, commits, rooms, typing, presence, filters, ignored }
    }

    /// Sets global (`room` = None) or room account data and wakes the user.
    pub async fn set_account_data(
        &self,
        user: &OwnedUserId,
        room: Option<&RoomId>,
        kind: &str,
        content: Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(StreamsError::BadJson("account data content must be an object".into()));
        }
        if matches!(kind, "m.fully_read" | "m.push_rules") {
            return Err(StreamsError::BadJson(format!("{kind} cannot be set as account data directly")));
        }
        if room.is_none() && kind == IGNORED_USER_LIST {
            ignored::check(&content).map_err(StreamsError::BadJson)?;
        }
        self.store_account_data(user, room, kind, &content).await
    }

    /// Stores the user's push rules (`m.push_rules`, which clients change
    /// only through the push rules API) and wakes the user.
    pub async fn set_push_rules(&self, user: &OwnedUserId, content: &Value) -> Result<()> {
        self.store_account_data(user, None, "m.push_rules", content).await
    }

    async fn store_account_data(
        &self,
        user: &OwnedUserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        if let Some(room) = room {
            self.rooms.current_state(room).await?;
        }
        let room_key = room.map(|r| r.to_string()).unwrap_or_default();
        let position =
            self.db.set_account_data(user.to_string(), room_key, kind.to_owned(), content.to_string()).await?;
        if room.is_none() && kind == IGNORED_USER_LIST {
            // Replaced, not removed, before any sync wakes: a read that
            // missed the cache while the write ran cannot put back the
            // list it read before (its placeholder is gone).
            self.ignored.insert(user.clone(), ignored::parse(user, Some(&content.to_string())));
        }
        self.commits.committed(Commit::AccountData { position, user }).await;
        Ok(())
    }

    /// The users `user` ignores (spec: "Ignoring Users"), from memory when
    /// known: sync, pagination and push evaluation ask for every request.
    pub async fn ignored_users(&self, user: &OwnedUserId) -> Result<IgnoredUsers> {
        let guard = match self.ignored.get_value_or_guard_async(user).await {
            Ok(users) => return Ok(users),
            Err(guard) => guard,
        };
        let stored = self.db.get_account_data(user.to_string(), String::new(), IGNORED_USER_LIST.to_owned()).await?;
        let users = ignored::parse(user, stored.as_deref());
        // Refused when a write replaced the placeholder meanwhile: that
        // write's list is the newer one.
        let _ = guard.insert(users.clone());
        Ok(users)
    }

    pub async fn get_account_data(&self, user: &OwnedUserId, room: Option<&RoomId>, kind: &str) -> Result<Value> {
        let room_key = room.map(|r| r.to_string()).unwrap_or_default();
        let content = self
            .db
            .get_account_data(user.to_string(), room_key, kind.to_owned())
            .await?
            .ok_or_else(|| StreamsError::NotFound("account data not found".into()))?;
        serde_json::from_str(&content).map_err(|e| StreamsError::Storage(StorageError::Corrupt(e.to_string())))
    }

    /// The user's tags of a room (`m.tag` room account data).
    pub async fn tags(&self, user: &OwnedUserId, room: &RoomId) -> Result<serde_json::Map<String, Value>> {
        match self.get_account_data(user, Some(room), "m.tag").await {
            Ok(v) => Ok(v.get("tags").and_then(Value::as_object).cloned().unwrap_or_default()),
            Err(StreamsError::NotFound(_)) => Ok(Default::default()),
            Err(e) => Err(e),
        }
    }

    /// Adds (`Some`) or removes (`None`) one tag.
    pub async fn set_tag(&self, user: &OwnedUserId, room: &RoomId, tag: &str, info: Option<Value>) -> Result<()> {
        if tag.len() > 255 {
            return Err(StreamsError::BadJson("tags are at most 255 bytes".into()));
        }
        let mut tags = self.tags(user, room).await?;
        match info {
            Some(info) => {
                tags.insert(tag.to_owned(), info);
            }
            None => {
                tags.remove(tag);
            }
        }
        self.store_account_data(user, Some(room), "m.tag", &serde_json::json!({ "tags": tags })).await
    }

    /// Stores a receipt for an event the user can see, and wakes the room.
    pub async fn set_receipt(
        &self,
        user: &OwnedUserId,
        room: &RoomId,
        receipt_type: &str,
        event_id: &OwnedEventId,
        thread_id: Option<String>,
    ) -> Result<()> {
        self.rooms.require_joined(room, user).await?;
        self.rooms.event_for_user(user, room, event_id).await?;
        let position = self
            .db
            .set_receipt(ReceiptRow {
                room_id: room.to_string(),
                user_id: user.to_string(),
                receipt_type: receipt_type.to_owned(),
                thread_id: thread_id.clone().unwrap_or_default(),
                event_id: event_id.to_string(),
                ts: timestamp(),
            })
            .await?;
        // Private receipts go to their owner only.
        let members =
            if receipt_type == "m.read.private" { Vec::new() } else { self.rooms.joined_members(room).await? };
        let wake: Vec<&UserId> =
            if members.is_empty() { vec![user.as_ref()] } else { members.iter().map(|u| u.as_ref()).collect() };
        let thread = thread_id.as_deref().filter(|t| !t.is_empty());
        let commit = Commit::Receipt { position, room_id: room, user, receipt_type, event_id, thread, wake: &wake };
        self.commits.committed(commit).await;
        Ok(())
    }

    /// `/read_markers`: the fully-read marker (room account data) and
    /// optionally public and private read receipts.
    pub async fn set_read_markers(
        &self,
        user: &OwnedUserId,
        room: &RoomId,
        fully_read: Option<&OwnedEventId>,
        read: Option<&OwnedEventId>,
        read_private: Option<&OwnedEventId>,
    ) -> Result<()> {
        self.rooms.require_joined(room, user).await?;
        if let Some(event) = fully_read {
            self.rooms.event_for_user(user, room, event).await?;
            self.store_account_data(user, Some(room), "m.fully_read", &serde_json::json!({ "event_id": event }))
                .await?;
        }
        if let Some(event) = read {
            self.set_receipt(user, room, "m.read", event, None).await?;
        }
        if let Some(event) = read_private {
            self.set_receipt(user, room, "m.read.private", event, None).await?;
        }
        Ok(())
    }

    pub fn presence_enabled(&self) -> bool {
        self.config.presence.enabled
    }

    /// Sets a local user's presence. With presence off the call succeeds
    /// and nothing is stored or streamed.
    pub async fn set_presence(&self, user: &OwnedUserId, state: &str, status_msg: Option<String>) -> Result<()> {
        if !PRESENCE_STATES.contains(&state) {
            return Err(StreamsError::BadJson(format!("unknown presence state {state}")));
        }
        if !self.presence_enabled() {
            return Ok(());
        }
        let row =
            PresenceRow { user_id: user.to_string(), state: state.to_owned(), status_msg, last_active_ts: timestamp() };
        let audience = self.presence_audience(user).await?;
        self.store_presence(user, row, &audience).await
    }

    /// Stores the presence another server reported for one of its users
    /// (`m.presence` EDU), if the user shares a room with this server.
    pub async fn store_remote_presence(
        &self,
        user: &OwnedUserId,
        state: &str,
        status_msg: Option<String>,
        last_active_ago: u64,
    ) -> Result<()> {
        if !PRESENCE_STATES.contains(&state) {
            return Err(StreamsError::BadJson(format!("unknown presence state {state}")));
        }
        if !self.presence_enabled() {
            return Ok(());
        }
        let audience = self.presence_audience(user).await?;
        if audience.is_empty() {
            return Ok(());
        }
        let ago = i64::try_from(last_active_ago).unwrap_or(i64::MAX).min(timestamp());
        let row = PresenceRow {
            user_id: user.to_string(),
            state: state.to_owned(),
            status_msg,
            last_active_ts: timestamp() - ago,
        };
        self.store_presence(user, row, &audience).await
    }

    /// Who shares a room with `user` (and so sees their presence).
    async fn presence_audience(&self, user: &OwnedUserId) -> Result<Vec<OwnedUserId>> {
        let audience = self.db.users_sharing_rooms(user.to_string()).await?;
        Ok(audience.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect())
    }

    /// Stores a presence row and announces it to its user and `audience`
    /// (and, for a local user, to the servers they share rooms with).
    async fn store_presence(&self, user: &OwnedUserId, row: PresenceRow, audience: &[OwnedUserId]) -> Result<()> {
        // Forgotten first: a concurrent touch must not keep the old row.
        self.presence.remove(user);
        let position = self.db.set_presence(row.clone()).await?;
        self.presence.insert(user.clone(), row.clone());
        self.commits.committed(Commit::Presence { position, row: &row, user, audience }).await;
        Ok(())
    }

    /// Called when a user syncs with `set_presence`: records activity, but
    /// only writes when the state changes (an idle client's syncs are free).
    pub async fn touch_presence(&self, user: &OwnedUserId, state: &str) -> Result<()> {
        // Spec: `set_presence`: "if the parameter is set to "offline" then
        // the client is not marked as being online when it uses this API":
        // its presence is left as it is (as Synapse does), not set offline.
        if !self.presence_enabled() || state == "offline" {
            return Ok(());
        }
        let current = match self.presence.get(user) {
            Some(row) => Some(row),
            None => {
                let row = self.db.get_presence(user.to_string()).await?;
                if let Some(row) = &row {
                    self.presence.insert(user.clone(), row.clone());
                }
                row
            }
        };
        let stale = current.as_ref().is_none_or(|p| {
            p.state != state || (state == "online" && timestamp() - p.last_active_ts > CURRENTLY_ACTIVE_MS)
        });
        if stale {
            let status = current.and_then(|p| p.status_msg);
            self.set_presence(user, state, status).await?;
        }
        Ok(())
    }

    /// A user's presence, if the asker may see it (shares a room, or is them).
    pub async fn get_presence(&self, asker: &OwnedUserId, user: &UserId) -> Result<PresenceInfo> {
        // Users of other servers are known by what their servers sent.
        let local = user.server_name() == self.config.server.server_name;
        if local && self.db.get_user(user.to_owned()).await?.is_none() {
            return Err(StreamsError::NotFound("unknown user".into()));
        }
        if asker != user {
            let shared = self.db.users_sharing_rooms(asker.to_string()).await?;
            if !shared.iter().any(|u| u == user.as_str()) {
                return Err(StreamsError::Forbidden("you do not share a room with this user".into()));
            }
        }
        let row = if self.presence_enabled() { self.db.get_presence(user.to_string()).await? } else { None };
        Ok(match row {
            Some(row) => presence_info(&row),
            None => PresenceInfo {
                state: "offline".into(),
                status_msg: None,
                last_active_ago: None,
                currently_active: false,
            },
        })
    }

    /// Stores a filter definition; returns its id.
    pub async fn create_filter(&self, user: &OwnedUserId, filter: &Value) -> Result<String> {
        Ok(self.db.create_filter(user.to_string(), filter.to_string()).await?.to_string())
    }

    pub async fn get_filter(&self, user: &OwnedUserId, filter_id: &str) -> Result<Value> {
        let json = self.filter_json(user, filter_id_number(filter_id)?).await?;
        serde_json::from_str(&json).map_err(|e| StreamsError::Storage(StorageError::Corrupt(e.to_string())))
    }

    /// A stored filter, parsed, for sync.
    pub async fn sync_filter(&self, user: &OwnedUserId, filter_id: &str) -> Result<Arc<FilterDefinition>> {
        let key = (user.clone(), filter_id_number(filter_id)?);
        if let Some(filter) = self.filters.get(&key) {
            return Ok(filter);
        }
        let json = self.filter_json(user, key.1).await?;
        let filter: FilterDefinition =
            serde_json::from_str(&json).map_err(|e| StreamsError::Storage(StorageError::Corrupt(e.to_string())))?;
        let filter = Arc::new(filter);
        self.filters.insert(key, filter.clone());
        Ok(filter)
    }

    async fn filter_json(&self, user: &OwnedUserId, id: i64) -> Result<String> {
        self.db.get_filter(user.to_string(), id).await?.ok_or_else(|| StreamsError::NotFound("filter not found".into()))
    }

    /// Rooms that have typing changes for sync, with who is typing now.
    pub fn typing_in(&self, room: &OwnedRoomId, since: i64) -> Option<Vec<OwnedUserId>> {
        self.typing.changed_since(room, since)
    }
}

/// Filter ids are the row numbers Plexus hands out; anything else names no filter.
fn filter_id_number(filter_id: &str) -> Result<i64> {
    filter_id.parse().map_err(|_| StreamsError::NotFound("filter not found".into()))
}

/// Presence as clients see it, computed from a stored row.
pub fn presence_info(row: &PresenceRow) -> PresenceInfo {
    let ago = (timestamp() - row.last_active_ts).max(0);
    PresenceInfo {
        state: row.state.clone(),
        status_msg: row.status_msg.clone(),
        last_active_ago: Some(ago as u64),
        currently_active: row.state == "online" && ago < CURRENTLY_ACTIVE_MS,
    }
}
