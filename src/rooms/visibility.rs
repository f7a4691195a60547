//! Who may see which events (client-server API, "Room history
//! visibility"): decided per event from the room state after it and the
//! user's membership then and now.

use std::collections::HashMap;

use ruma::{OwnedUserId, RoomId, events::StateEventType};

use super::{Rooms, RoomsError, pdu::Pdu};

/// What matters about one state group for one user.
#[derive(Clone)]
struct GroupFacts {
    history_visibility: String,
    membership: Option<String>,
}

/// Checks events of one room for one user, caching per state group.
pub struct VisibilityCheck<'a> {
    rooms: &'a Rooms,
    user: &'a OwnedUserId,
    room_id: &'a RoomId,
    current_membership: Option<String>,
    groups: HashMap<i64, GroupFacts>,
}

impl<'a> VisibilityCheck<'a> {
    pub(super) async fn new(rooms: &'a Rooms, room_id: &'a RoomId, user: &'a OwnedUserId) -> Result<Self, RoomsError> {
        let current_membership = rooms.membership(room_id, user).await?;
        Ok(Self { rooms, user, room_id, current_membership, groups: HashMap::new() })
    }

    async fn facts(&mut self, group: i64) -> Result<GroupFacts, RoomsError> {
        if let Some(f) = self.groups.get(&group) {
            return Ok(f.clone());
        }
        let state = self.rooms.state_at_group(group).await?;
        let history_visibility = match state.get(&(StateEventType::RoomHistoryVisibility, String::new())) {
            Some(id) => self
                .rooms
                .get_pdu(id)
                .await?
                .and_then(|p| p.content_value().get("history_visibility").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "shared".into()),
            None => "shared".into(),
        };
        let membership = match state.get(&(StateEventType::RoomMember, self.user.to_string())) {
            Some(id) => self
                .rooms
                .get_pdu(id)
                .await?
                .and_then(|p| p.content_value().get("membership").and_then(|v| v.as_str()).map(str::to_owned)),
            None => None,
        };
        let facts = GroupFacts { history_visibility, membership };
        self.groups.insert(group, facts.clone());
        Ok(facts)
    }

    /// A check for a user whose current membership the caller knows.
    pub fn with_membership(
        rooms: &'a Rooms,
        room_id: &'a RoomId,
        user: &'a OwnedUserId,
        current_membership: Option<String>,
    ) -> Self {
        Self { rooms, user, room_id, current_membership, groups: HashMap::new() }
    }

    /// Whether the user may see `pdu`.
    pub async fn can_see(&mut self, pdu: &Pdu) -> Result<bool, RoomsError> {
        if pdu.kind().to_string() == "m.room.member" && pdu.state_key() == Some(self.user.as_str()) {
            return Ok(true); // one's own membership changes are always visible
        }
        let Some(group) = pdu.state_group else {
            return Ok(false);
        };
        let facts = self.facts(group).await?;
        if facts.history_visibility == "world_readable" || facts.membership.as_deref() == Some("join") {
            return Ok(true);
        }
        match facts.history_visibility.as_str() {
            "invited" => Ok(facts.membership.as_deref() == Some("invite")),
            "joined" => Ok(false),
            // "shared" and anything unknown (the spec's default).
            _ => {
                if self.current_membership.as_deref() == Some("join") {
                    return Ok(true);
                }
                let after = pdu.stream_ordering.unwrap_or(i64::MAX);
                Ok(self.rooms.db.joined_since(self.room_id.to_string(), self.user.to_string(), after).await?)
            }
        }
    }

    /// Whether the user has any standing to read this room at all.
    pub(super) async fn may_read_room(&mut self) -> Result<bool, RoomsError> {
        if self.current_membership.is_some() {
            return Ok(true);
        }
        let state = self.rooms.current_state(self.room_id).await?;
        Ok(match state.get(&(StateEventType::RoomHistoryVisibility, String::new())) {
            Some(id) => self.rooms.get_pdu(id).await?.is_some_and(|p| {
                p.content_value().get("history_visibility").and_then(|v| v.as_str()) == Some("world_readable")
            }),
            None => false,
        })
    }
}
