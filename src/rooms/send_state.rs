//! Sending state (client-server API, "PUT /rooms/{roomId}/state"): the
//! checks a state event gets before it is built, beyond the auth rules.
//! Setting the state that is already there (same type, state key, sender
//! and content) sends nothing and answers the event that set it, as
//! Synapse does; an `m.room.canonical_alias` must name valid aliases, and
//! those of this server must point at the room.

use std::sync::Arc;

use ruma::{
    RoomAliasId, RoomId, UserId,
    events::{StateEventType, room::canonical_alias::RoomCanonicalAliasEventContent},
};
use serde_json::Value;

use super::{EventDraft, Rooms, RoomsError, pdu::Pdu};

impl Rooms {
    /// Sends a state event of `sender`, or returns the current one when it
    /// is the same.
    pub async fn send_state(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        kind: StateEventType,
        state_key: String,
        content: Value,
    ) -> Result<Arc<Pdu>, RoomsError> {
        if let Some(current) = self.current_state_event(room_id, &kind, &state_key).await?
            && current.sender() == sender
            && current.content_value() == content
        {
            return Ok(current);
        }
        if kind == StateEventType::RoomCanonicalAlias {
            self.check_canonical_alias(room_id, &content).await?;
        }
        self.append_local(room_id, sender, EventDraft::state(kind, state_key, content), None).await
    }

    /// Spec ("m.room.canonical_alias"): the server must refuse an alias
    /// that is not valid (400 `M_INVALID_PARAM`) or that does not point at
    /// the room (400 `M_BAD_ALIAS`). Aliases of other servers are not
    /// looked up: the room server does not reach other servers.
    async fn check_canonical_alias(&self, room_id: &RoomId, content: &Value) -> Result<(), RoomsError> {
        let parsed: RoomCanonicalAliasEventContent = serde_json::from_value(content.clone())
            .map_err(|e| RoomsError::InvalidParam(format!("invalid m.room.canonical_alias content: {e}")))?;
        let aliases: Vec<&RoomAliasId> = parsed.alias.iter().chain(parsed.alt_aliases.iter()).map(|a| &**a).collect();
        for alias in aliases {
            if alias.server_name() != self.config.server.server_name {
                continue;
            }
            match self.db.resolve_alias(alias.to_string()).await? {
                Some((target, _)) if target == room_id.as_str() => {}
                _ => return Err(RoomsError::CanonicalAlias(format!("{alias} does not point at this room"))),
            }
        }
        Ok(())
    }
}
