//! Who may see which events (client-server API, "Room history
//! visibility"): decided per event from the room state after it and the
//! user's membership then and now.

use std::collections::HashMap;

use ruma::{
    OwnedUserId, RoomId,
    events::{
        StateEventType,
        room::{history_visibility::HistoryVisibility, member::MembershipState},
    },
};

use super::{Rooms, RoomsError, pdu::Pdu};

/// What matters about one state group for one user.
#[derive(Clone)]
struct GroupFacts {
    history_visibility: HistoryVisibility,
    membership: Option<MembershipState>,
}

/// Checks events of one room for one user, caching per state group.
pub struct VisibilityCheck<'a> {
    rooms: &'a Rooms,
    user: &'a OwnedUserId,
    room_id: &'a RoomId,
    current_membership: Option<MembershipState>,
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
            Some(id) => {
                self.rooms.get_pdu(id).await?.map(|p| history_visibility_of(&p)).unwrap_or(HistoryVisibility::Shared)
            }
            None => HistoryVisibility::Shared,
        };
        let membership = match state.get(&(StateEventType::RoomMember, self.user.to_string())) {
            Some(id) => self.rooms.get_pdu(id).await?.and_then(|p| p.membership()),
            None => None,
        };
        let facts = GroupFacts { history_visibility, membership };
        self.groups.insert(group, facts.clone());
        Ok(facts)
    }

    /// The user the check is for.
    pub fn user(&self) -> &OwnedUserId {
        self.user
    }

    /// A check for a user whose current membership the caller knows.
    pub fn with_membership(
        rooms: &'a Rooms,
        room_id: &'a RoomId,
        user: &'a OwnedUserId,
        current_membership: Option<impl Into<MembershipState>>,
    ) -> Self {
        let current_membership = current_membership.map(Into::into);
        Self { rooms, user, room_id, current_membership, groups: HashMap::new() }
    }

    /// Whether the user may see `pdu`.
    pub async fn can_see(&mut self, pdu: &Pdu) -> Result<bool, RoomsError> {
        if pdu.kind().to_string() == "m.room.member" && pdu.state_key() == Some(self.user.as_str()) {
            return Ok(true); // one's own membership changes are always visible
        }
        self.can_see_at(pdu.state_group, pdu.stream_ordering).await
    }

    /// Whether the user may see an event that is not their own membership
    /// change, from the state group after it and its stream position (what
    /// search knows of its hits without parsing them).
    pub async fn can_see_at(
        &mut self,
        state_group: Option<i64>,
        stream_ordering: Option<i64>,
    ) -> Result<bool, RoomsError> {
        let Some(group) = state_group else {
            return Ok(false);
        };
        let facts = self.facts(group).await?;
        if facts.history_visibility == HistoryVisibility::WorldReadable
            || facts.membership == Some(MembershipState::Join)
        {
            return Ok(true);
        }
        match facts.history_visibility {
            HistoryVisibility::Invited => Ok(facts.membership == Some(MembershipState::Invite)),
            HistoryVisibility::Joined => Ok(false),
            // `shared` and anything unknown (the spec's default).
            _ => {
                if self.current_membership == Some(MembershipState::Join) {
                    return Ok(true);
                }
                let after = stream_ordering.unwrap_or(i64::MAX);
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
            Some(id) => self
                .rooms
                .get_pdu(id)
                .await?
                .is_some_and(|p| history_visibility_of(&p) == HistoryVisibility::WorldReadable),
            None => false,
        })
    }
}

/// The `history_visibility` of an `m.room.history_visibility` event
/// (`shared`, the spec's default, when it has none).
pub(super) fn history_visibility_of(pdu: &Pdu) -> HistoryVisibility {
    #[derive(serde::Deserialize)]
    struct Content {
        history_visibility: HistoryVisibility,
    }
    pdu.content::<Content>().map_or(HistoryVisibility::Shared, |c| c.history_visibility)
}
