//! Server ACLs (client-server API, "Server Access Control Lists (ACLs) for
//! rooms"; server-server API, "Server ACLs"): which servers a room's
//! `m.room.server_acl` lets take part. Requests and PDUs from a denied
//! server are refused, and nothing of the room is sent to it.

use ruma::{
    RoomId, ServerName,
    events::{
        StateEventType,
        room::{history_visibility::HistoryVisibility, server_acl::RoomServerAclEventContent},
    },
};

use super::{Result, Rooms, RoomsError, StateMap};

impl Rooms {
    /// The ACL of a room state, if it has one that parses.
    pub(super) async fn acl_in(&self, state: &StateMap) -> Result<Option<RoomServerAclEventContent>> {
        let Some(id) = state.get(&(StateEventType::RoomServerAcl, String::new())) else { return Ok(None) };
        Ok(self.get_pdu(id).await?.and_then(|pdu| pdu.content::<RoomServerAclEventContent>()))
    }

    /// The room's current server ACL, if it has one.
    pub async fn server_acl(&self, room_id: &RoomId) -> Result<Option<RoomServerAclEventContent>> {
        let state = self.current_state(room_id).await?;
        self.acl_in(&state).await
    }

    /// Whether the room's current server ACL allows `server` (a room
    /// without one allows every server).
    pub async fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        Ok(self.server_acl(room_id).await?.is_none_or(|acl| acl.is_allowed(server)))
    }

    /// Refuses a server the room's server ACL denies (server-server API,
    /// "Server ACLs": 403 `M_FORBIDDEN` from every room endpoint). A room
    /// this server does not know has no ACL here.
    pub async fn require_server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if self.knows_room(room_id).await? && !self.server_allowed(room_id, server).await? {
            return Err(RoomsError::Forbidden("the room's server ACL denies your server".into()));
        }
        Ok(())
    }

    /// Whether `server` may read the room's events: the room's server ACL
    /// allows it, and it has a joined member or the room is
    /// world-readable.
    pub async fn require_server_in_room(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if !self.knows_room(room_id).await? {
            return Err(RoomsError::NotFound("this server does not know the room".into()));
        }
        self.require_server_allowed(room_id, server).await?;
        if self.joined_members(room_id).await?.iter().any(|u| u.server_name() == server) {
            return Ok(());
        }
        let visibility = self
            .current_state_event(room_id, &StateEventType::RoomHistoryVisibility, "")
            .await?
            .map(|e| super::visibility::history_visibility_of(&e));
        if visibility == Some(HistoryVisibility::WorldReadable) {
            return Ok(());
        }
        Err(RoomsError::Forbidden("your server has no member in this room".into()))
    }

    /// Whether users of this server are joined to the room (it is
    /// resident): what decides between a local and a federated join.
    pub async fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        let own = &self.config.server.server_name;
        Ok(self.knows_room(room_id).await?
            && self.joined_members(room_id).await?.iter().any(|u| u.server_name() == own))
    }
}
