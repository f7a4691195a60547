//! Server ACLs (client-server API, "Server Access Control Lists (ACLs) for
//! rooms"; server-server API, "Server ACLs"): which servers a room's
//! `m.room.server_acl` lets take part. Requests and PDUs from a denied
//! server are refused, and nothing of the room is sent to it.

use ruma::{RoomId, ServerName, events::StateEventType, events::room::server_acl::RoomServerAclEventContent};

use super::{Result, Rooms, StateMap};

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
}
