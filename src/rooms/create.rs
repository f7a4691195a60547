//! Room creation (client-server API, "Creation": `POST /createRoom`): the
//! create event, the creator's join, power levels, aliases, preset state,
//! initial state, name, topic and invites, in the order the spec gives.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId,
    events::{
        StateEventType,
        room::{
            canonical_alias::RoomCanonicalAliasEventContent,
            encryption::RoomEncryptionEventContent,
            guest_access::{GuestAccess, RoomGuestAccessEventContent},
            history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent},
            join_rules::{JoinRule, RoomJoinRulesEventContent},
            member::MembershipState,
            name::RoomNameEventContent,
            topic::RoomTopicEventContent,
        },
    },
};
use serde_json::{Map, Value, json};

use super::{EventDraft, Rooms, RoomsError, versions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A `createRoom` request, already parsed.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub creator: OwnedUserId,
    pub version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    pub public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub alias_localpart: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub creation_content: Map<String, Value>,
    pub initial_state: Vec<(StateEventType, String, Value)>,
    pub power_level_override: Option<Map<String, Value>>,
    /// The room id, chosen beforehand (an upgrade names the new room in
    /// the old room's tombstone first). Only for room versions whose room
    /// ids are random; from version 12 the create event makes the id.
    pub room_id: Option<OwnedRoomId>,
}

impl Rooms {
    pub async fn create_room(&self, req: CreateRoom) -> Result<OwnedRoomId, RoomsError> {
        let version = req.version.clone().unwrap_or_else(|| self.config.rooms.default_room_version.clone());
        if !versions::is_supported(&version) {
            return Err(RoomsError::UnsupportedRoomVersion(version.to_string()));
        }
        let rules = version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(version.to_string()))?;
        let preset = req.preset.unwrap_or(if req.public { Preset::PublicChat } else { Preset::PrivateChat });

        // Validate what can fail before the first event exists.
        let alias = match &req.alias_localpart {
            Some(local) => {
                let alias = OwnedRoomAliasId::try_from(format!("#{local}:{}", self.config.server.server_name))
                    .map_err(|_| RoomsError::BadAlias(format!("`{local}` is not a valid alias name")))?;
                if self.db.resolve_alias(alias.to_string()).await?.is_some() {
                    return Err(RoomsError::RoomInUse("the room alias is already taken".into()));
                }
                Some(alias)
            }
            None => None,
        };

        // The create event stays a JSON map: the client's `creation_content`
        // may carry any keys (spec: "extra keys ... to be added to the
        // content"), which `RoomCreateEventContent` would drop.
        let mut create = req.creation_content.clone();
        create.insert("room_version".into(), Value::String(version.to_string()));
        if rules.authorization.use_room_create_sender {
            create.remove("creator");
        } else {
            create.insert("creator".into(), Value::String(req.creator.to_string()));
        }
        let trusted_creators = rules.authorization.additional_room_creators && preset == Preset::TrustedPrivateChat;
        if trusted_creators && !req.invite.is_empty() {
            let extra: Vec<Value> = req.invite.iter().map(|u| Value::String(u.to_string())).collect();
            create.insert("additional_creators".into(), Value::Array(extra));
        }
        let (room_id, _) =
            self.append_create(&version, &req.creator, Value::Object(create), req.room_id.clone()).await?;
        let creator = &req.creator;

        let join = self.member_content(creator, MembershipState::Join).await?;
        self.append_local(&room_id, creator, EventDraft::from_state(creator.as_str(), &join), None).await?;

        // Power levels: the spec's defaults, the creator (and, in a trusted
        // private chat, the invitees) at 100, then the client's override.
        // Room version 12 creators are privileged by the create event and
        // must not be listed. JSON rather than `RoomPowerLevelsEventContent`,
        // which leaves out every level equal to the spec's default: clients
        // read the levels from the event, so all are spelled out.
        let mut users = Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == Preset::TrustedPrivateChat && !trusted_creators {
            for user in &req.invite {
                users.insert(user.to_string(), json!(100));
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
            "notifications": {"room": 50}
        });
        if let Some(over) = &req.power_level_override {
            for (k, v) in over {
                power_levels[k] = v.clone();
            }
        }
        self.append_local(
            &room_id,
            creator,
            EventDraft::state(StateEventType::RoomPowerLevels, "", power_levels),
            None,
        )
        .await?;

        if let Some(alias) = &alias {
            let mut content = RoomCanonicalAliasEventContent::new();
            content.alias = Some(alias.clone());
            self.append_local(&room_id, creator, EventDraft::from_state("", &content), None).await?;
            if !self.db.create_alias(alias.to_string(), room_id.to_string(), creator.to_string()).await? {
                return Err(RoomsError::RoomInUse("the room alias is already taken".into()));
            }
        }

        let (join_rule, guest_access) = match preset {
            Preset::PublicChat => (JoinRule::Public, GuestAccess::Forbidden),
            Preset::PrivateChat | Preset::TrustedPrivateChat => (JoinRule::Invite, GuestAccess::CanJoin),
        };
        let preset_state = [
            EventDraft::from_state("", &RoomJoinRulesEventContent::new(join_rule)),
            EventDraft::from_state("", &RoomHistoryVisibilityEventContent::new(HistoryVisibility::Shared)),
            EventDraft::from_state("", &RoomGuestAccessEventContent::new(guest_access)),
        ];
        for draft in preset_state {
            if req.initial_state.iter().any(|(k, key, _)| k.to_string() == draft.kind.to_string() && key.is_empty()) {
                continue; // initial_state overrides the preset
            }
            self.append_local(&room_id, creator, draft, None).await?;
        }
        let encrypt = match self.config.rooms.encrypt_by_default {
            crate::config::EncryptByDefault::Off => false,
            crate::config::EncryptByDefault::Private => preset != Preset::PublicChat,
            crate::config::EncryptByDefault::All => true,
        };
        if encrypt && !req.initial_state.iter().any(|(k, _, _)| *k == StateEventType::RoomEncryption) {
            let content = RoomEncryptionEventContent::new(ruma::EventEncryptionAlgorithm::MegolmV1AesSha2);
            self.append_local(&room_id, creator, EventDraft::from_state("", &content), None).await?;
        }
        for (kind, key, content) in &req.initial_state {
            self.append_local(&room_id, creator, EventDraft::state(kind.clone(), key.clone(), content.clone()), None)
                .await?;
        }
        if let Some(name) = &req.name {
            let content = RoomNameEventContent::new(name.clone());
            self.append_local(&room_id, creator, EventDraft::from_state("", &content), None).await?;
        }
        if let Some(topic) = &req.topic {
            let content = RoomTopicEventContent::new(topic.clone());
            self.append_local(&room_id, creator, EventDraft::from_state("", &content), None).await?;
        }
        // Users of other servers are invited through federation by the caller.
        for invitee in req.invite.iter().filter(|u| u.server_name() == self.config.server.server_name) {
            self.invite(&room_id, creator, invitee, None, req.is_direct).await?;
        }
        if req.public {
            self.db.set_room_public(room_id.to_string(), true).await?;
        }
        tracing::info!(room_id = %room_id, creator = %creator, version = %version, "created a room");
        Ok(room_id)
    }
}
