//! Room upgrades (client-server API, "Room Upgrades"): a new room of the
//! requested version that points back at its predecessor, the old room's
//! important state carried over, aliases moved, and a tombstone in the old
//! room that points forward.

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId,
    events::{
        StateEventType,
        room::{create::PreviousRoom, tombstone::RoomTombstoneEventContent},
    },
};
use serde_json::{Map, Value, json};

use super::{CreateRoom, EventDraft, Rooms, RoomsError, versions};

/// State copied from the old room to the new one.
const CARRIED_STATE: &[StateEventType] = &[
    StateEventType::RoomJoinRules,
    StateEventType::RoomHistoryVisibility,
    StateEventType::RoomGuestAccess,
    StateEventType::RoomName,
    StateEventType::RoomTopic,
    StateEventType::RoomAvatar,
    StateEventType::RoomEncryption,
    StateEventType::RoomServerAcl,
];

impl Rooms {
    pub async fn upgrade_room(
        &self,
        user: &OwnedUserId,
        old: &RoomId,
        new_version: RoomVersionId,
    ) -> Result<OwnedRoomId, RoomsError> {
        if !versions::is_supported(&new_version) {
            return Err(RoomsError::UnsupportedRoomVersion(new_version.to_string()));
        }
        // A room unknown here is 404, not a refusal (Sytest "/upgrade of a
        // bogus room fails gracefully", as Synapse).
        self.current_state(old).await?;
        if !self.user_can_send_state(old, user, StateEventType::RoomTombstone).await? {
            return Err(RoomsError::Forbidden("you may not upgrade this room".into()));
        }
        let mut carried = Vec::new();
        for kind in CARRIED_STATE {
            if let Some(pdu) = self.current_state_event(old, kind, "").await? {
                carried.push((kind.clone(), String::new(), pdu.content_value()));
            }
        }
        let power_levels =
            self.current_state_event(old, &StateEventType::RoomPowerLevels, "").await?.map(|p| p.content_value());
        let new_rules =
            new_version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(new_version.to_string()))?;
        let power_level_override = power_levels.as_ref().and_then(Value::as_object).map(|pl| {
            let mut pl = pl.clone();
            if new_rules.authorization.explicitly_privilege_room_creators
                && let Some(Value::Object(users)) = pl.get_mut("users")
            {
                // The upgrading user is the new room's creator; version 12
                // forbids listing creators among the users.
                users.remove(user.as_str());
            }
            pl
        });

        let mut creation_content = Map::new();
        if let Some(room_type) = self
            .current_state_event(old, &StateEventType::RoomCreate, "")
            .await?
            .and_then(|p| p.content_value().get("type").cloned())
        {
            creation_content.insert("type".into(), room_type);
        }
        let tombstone_content = |new_room: &RoomId| {
            EventDraft::from_state(
                "",
                &RoomTombstoneEventContent::new("This room has been replaced".into(), new_room.to_owned()),
            )
        };
        let mut request = CreateRoom {
            creator: user.clone(),
            version: Some(new_version),
            preset: None,
            public: self.db.room_is_public(old.to_string()).await?,
            name: None,
            topic: None,
            alias_localpart: None,
            invite: vec![],
            is_direct: false,
            creation_content,
            initial_state: carried,
            power_level_override,
            room_id: None,
        };
        let mut predecessor = PreviousRoom::new(old.to_owned());
        let new_room = if new_rules.authorization.room_create_event_id_as_room_id {
            // The new room's id is its create event's hash, which the
            // tombstone must name: the create event cannot name the
            // tombstone in turn, so `predecessor.event_id` (deprecated by
            // the same change, MSC4291) is left out.
            request.creation_content.insert("predecessor".into(), to_content(&predecessor)?);
            let new_room = self.create_room(request).await?;
            self.append_local(old, user, tombstone_content(&new_room), None).await?;
            new_room
        } else {
            // Spec: `predecessor.event_id` is the tombstone's id. The new
            // room's id is random, so it is chosen first and the tombstone
            // naming it is sent before the room is created.
            let new_room = RoomId::new_v1(&self.config.server.server_name);
            let tombstone = self.append_local(old, user, tombstone_content(&new_room), None).await?;
            // Deprecated for clients, still sent for servers that read it.
            #[allow(deprecated)]
            {
                predecessor.event_id = Some(tombstone.event_id.clone());
            }
            request.creation_content.insert("predecessor".into(), to_content(&predecessor)?);
            request.room_id = Some(new_room);
            self.create_room(request).await?
        };

        // The canonical alias moves with the room.
        if let Some(alias) = self.current_state_event(old, &StateEventType::RoomCanonicalAlias, "").await? {
            self.append_local(
                &new_room,
                user,
                EventDraft::state(StateEventType::RoomCanonicalAlias, "", alias.content_value()),
                None,
            )
            .await?;
        }
        for alias in self.db.room_aliases(old.to_string()).await? {
            self.db.delete_alias(alias.clone()).await?;
            self.db.create_alias(alias, new_room.to_string(), user.to_string()).await?;
        }

        // Spec: restrict the old room so conversation moves on.
        // Edited as JSON, so levels and fields ruma's type would drop survive.
        if let Some(Value::Object(mut pl)) = power_levels {
            let level = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
            let restricted = level(pl.get("events_default")).max(50);
            pl.insert("events_default".into(), json!(restricted));
            pl.insert("invite".into(), json!(level(pl.get("invite")).max(50)));
            // Best effort: the upgrading user may lack the power to change
            // power levels even though they could send the tombstone.
            if let Err(e) = self
                .append_local(
                    old,
                    user,
                    EventDraft::state(StateEventType::RoomPowerLevels, "", Value::Object(pl)),
                    None,
                )
                .await
            {
                tracing::info!(room_id = %old, error = %e, "could not restrict the upgraded room");
            }
        }
        self.db.set_room_public(old.to_string(), false).await?;
        Ok(new_room)
    }
}

fn to_content(value: &impl serde::Serialize) -> Result<Value, RoomsError> {
    serde_json::to_value(value).map_err(|e| RoomsError::Internal(e.to_string()))
}
