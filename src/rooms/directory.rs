//! Room aliases and the public room directory (client-server API, "Room
//! aliases", "Listing rooms").

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UInt,
    directory::{PublicRoomsChunk, PublicRoomsChunkInit},
    events::{StateEventType, room::member::MembershipState},
    room::JoinRuleKind,
};
use serde_json::Value;

use super::{Rooms, RoomsError};

/// One page of the public room directory (client-server API, "Listing
/// rooms"; server-server API, "Public Room Directory").
#[derive(Debug, Clone)]
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: Option<UInt>,
}

impl Rooms {
    fn check_alias_server(&self, alias: &OwnedRoomAliasId) -> Result<(), RoomsError> {
        if alias.server_name() != self.config.server.server_name {
            return Err(RoomsError::BadAlias("aliases of other servers cannot be managed here".into()));
        }
        Ok(())
    }

    pub async fn create_alias(
        &self,
        user: &OwnedUserId,
        alias: &OwnedRoomAliasId,
        room_id: &RoomId,
    ) -> Result<(), RoomsError> {
        self.check_alias_server(alias)?;
        self.current_state(room_id).await?;
        if !self.db.create_alias(alias.to_string(), room_id.to_string(), user.to_string()).await? {
            return Err(RoomsError::AliasExists(format!("room alias {alias} already exists")));
        }
        Ok(())
    }

    pub async fn resolve_alias(&self, alias: &OwnedRoomAliasId) -> Result<OwnedRoomId, RoomsError> {
        let (room_id, _) = self
            .db
            .resolve_alias(alias.to_string())
            .await?
            .ok_or_else(|| RoomsError::NotFound("room alias not found".into()))?;
        OwnedRoomId::try_from(room_id).map_err(|e| RoomsError::Internal(e.to_string()))
    }

    /// Deletes an alias: its creator, a server admin, or a room member who
    /// may change the canonical alias may do so.
    pub async fn delete_alias(
        &self,
        user: &OwnedUserId,
        is_admin: bool,
        alias: &OwnedRoomAliasId,
    ) -> Result<(), RoomsError> {
        self.check_alias_server(alias)?;
        let (room_id, creator) = self
            .db
            .resolve_alias(alias.to_string())
            .await?
            .ok_or_else(|| RoomsError::NotFound("room alias not found".into()))?;
        let room_id = OwnedRoomId::try_from(room_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
        let allowed = is_admin
            || creator == user.as_str()
            || self.user_can_send_state(&room_id, user, StateEventType::RoomCanonicalAlias).await?;
        if !allowed {
            return Err(RoomsError::Forbidden("you may not delete this alias".into()));
        }
        self.db.delete_alias(alias.to_string()).await?;
        Ok(())
    }

    pub async fn room_aliases(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>, RoomsError> {
        self.readable_state(user, room_id).await?;
        let aliases = self.db.room_aliases(room_id.to_string()).await?;
        Ok(aliases.into_iter().filter_map(|a| OwnedRoomAliasId::try_from(a).ok()).collect())
    }

    /// Whether the user's power level allows sending this state type now.
    pub async fn user_can_send_state(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        kind: StateEventType,
    ) -> Result<bool, RoomsError> {
        if self.membership(room_id, user).await? != Some(MembershipState::Join) {
            return Ok(false);
        }
        let guard = self.lock_head(room_id, true).await?;
        let head = guard.as_ref().ok_or_else(|| RoomsError::NotFound("unknown room".into()))?.clone();
        drop(guard);
        Ok(self.power_levels_of(&head).await?.user_can_send_state(user, kind))
    }

    pub async fn set_directory_visibility(
        &self,
        user: &OwnedUserId,
        is_admin: bool,
        room_id: &RoomId,
        public: bool,
    ) -> Result<(), RoomsError> {
        self.current_state(room_id).await?;
        if !is_admin && !self.user_can_send_state(room_id, user, StateEventType::RoomCanonicalAlias).await? {
            return Err(RoomsError::Forbidden("you may not change this room's directory visibility".into()));
        }
        self.db.set_room_public(room_id.to_string(), public).await?;
        Ok(())
    }

    pub async fn directory_visibility(&self, room_id: &RoomId) -> Result<bool, RoomsError> {
        self.current_state(room_id).await?;
        Ok(self.db.room_is_public(room_id.to_string()).await?)
    }

    /// A page of the public rooms, most joined first, optionally filtered
    /// by a search term over name, topic and alias. `since` is the offset
    /// of the page as a decimal string.
    pub async fn public_rooms_page(
        &self,
        search: Option<&str>,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<PublicRoomsPage, RoomsError> {
        let rooms = self.public_rooms(search).await?;
        let total = UInt::try_from(rooms.len() as u64).unwrap_or_default();
        let offset = match since {
            Some(s) => s.parse::<usize>().map_err(|_| RoomsError::InvalidParam("invalid `since` token".into()))?,
            None => 0,
        };
        let limit = limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(100).clamp(1, 500);
        let end = (offset + limit).min(rooms.len());
        Ok(PublicRoomsPage {
            next_batch: (end < rooms.len()).then(|| end.to_string()),
            prev_batch: (offset > 0).then(|| offset.saturating_sub(limit).to_string()),
            total_room_count_estimate: Some(total),
            chunk: rooms.into_iter().skip(offset).take(limit).collect(),
        })
    }

    async fn public_rooms(&self, search: Option<&str>) -> Result<Vec<PublicRoomsChunk>, RoomsError> {
        let search = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut out = Vec::new();
        for (room_id, joined_members) in self.db.public_rooms().await? {
            let room_id = OwnedRoomId::try_from(room_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
            let entry = self.public_room_entry(room_id, joined_members).await?;
            if let Some(term) = &search {
                let alias = entry.canonical_alias.as_ref().map(|a| a.to_string());
                let haystack = [entry.name.as_deref(), entry.topic.as_deref(), alias.as_deref()]
                    .iter()
                    .flatten()
                    .map(|f| f.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !haystack.contains(term.as_str()) {
                    continue;
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn public_room_entry(
        &self,
        room_id: OwnedRoomId,
        joined_members: i64,
    ) -> Result<PublicRoomsChunk, RoomsError> {
        let state = self.current_state(&room_id).await?;
        let events = self.state_events(&state).await?;
        let field = |kind: StateEventType, field: &str| {
            events
                .iter()
                .find(|p| p.kind().to_string() == kind.to_string() && p.state_key() == Some(""))
                .and_then(|p| p.content_value().get(field).and_then(Value::as_str).map(str::to_owned))
        };
        let history = field(StateEventType::RoomHistoryVisibility, "history_visibility");
        let guest = field(StateEventType::RoomGuestAccess, "guest_access");
        let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
            num_joined_members: UInt::try_from(joined_members.max(0) as u64).unwrap_or_default(),
            room_id,
            world_readable: history.as_deref() == Some("world_readable"),
            guest_can_join: guest.as_deref() == Some("can_join"),
        }
        .into();
        chunk.name = field(StateEventType::RoomName, "name");
        chunk.topic = field(StateEventType::RoomTopic, "topic");
        chunk.canonical_alias = field(StateEventType::RoomCanonicalAlias, "alias").and_then(|a| a.try_into().ok());
        chunk.avatar_url = field(StateEventType::RoomAvatar, "url").map(Into::into);
        chunk.join_rule = field(StateEventType::RoomJoinRules, "join_rule")
            .map_or(JoinRuleKind::Public, |r| JoinRuleKind::from(r.as_str()));
        chunk.room_type = field(StateEventType::RoomCreate, "type").map(Into::into);
        Ok(chunk)
    }
}
