//! The membership facade: what a local user's client asks of a room
//! (client-server API, "Joining rooms", "Inviting", "Leaving rooms",
//! "Knocking", "Creation"), whether the room lives here or only on other
//! servers. Each method decides local or federated once, so a handler
//! makes one call: the room server when users of this server are in the
//! room (or federation is off), the handshakes of `membership` otherwise.

use std::collections::HashSet;

use ruma::{OwnedRoomId, OwnedRoomOrAliasId, OwnedServerName, OwnedUserId, RoomId};

use super::{FedError, Federation};
use crate::rooms::{CreateRoom, JoinRequest, RoomsError};

impl Federation {
    /// Joins `user` to a room given by id or alias (client-server API
    /// `join`): locally when this server is in the room, else over
    /// federation through `via`, the alias's servers, the servers of a
    /// pending invite and the room id's server. Returns the room id.
    pub async fn join(
        &self,
        user: &OwnedUserId,
        room: OwnedRoomOrAliasId,
        via: Vec<OwnedServerName>,
        join: JoinRequest,
    ) -> Result<OwnedRoomId, FedError> {
        let (room_id, servers) = self.room_and_servers(room, via).await?;
        if !self.enabled() || self.rooms.is_resident(&room_id).await? {
            self.rooms.join(&room_id, user, join).await?;
            return Ok(room_id);
        }
        if self.rooms.is_guest(user).await? {
            // Whether a remote room lets guests in cannot be known before
            // joining it; as Synapse, guests join only rooms this server is in.
            return Err(RoomsError::Forbidden("guests may only join rooms this server is in".into()).into());
        }
        let mut servers = servers;
        servers.extend(self.invite_servers(&room_id, user).await);
        self.join_remote(&room_id, user, &candidates(&room_id, servers), &join).await?;
        Ok(room_id)
    }

    /// Knocks on a room given by id or alias (client-server API `knock`):
    /// locally when this server is in the room, else over federation
    /// through `via`, the alias's servers and the room id's server.
    pub async fn knock(
        &self,
        user: &OwnedUserId,
        room: OwnedRoomOrAliasId,
        via: Vec<OwnedServerName>,
        reason: Option<String>,
    ) -> Result<OwnedRoomId, FedError> {
        let (room_id, servers) = self.room_and_servers(room, via).await?;
        if !self.enabled() || self.rooms.is_resident(&room_id).await? {
            self.rooms.knock(&room_id, user, reason).await?;
        } else {
            self.knock_remote(&room_id, user, reason, &candidates(&room_id, servers)).await?;
        }
        Ok(room_id)
    }

    /// Invites a user (client-server API `invite`): through the room server
    /// for a user of this server, through the invitee's server otherwise.
    pub async fn invite(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), FedError> {
        if target.server_name() == self.server_name() {
            self.rooms.invite(room_id, sender, target, reason, false).await?;
        } else {
            self.rooms.require_joined(room_id, sender).await?;
            self.invite_remote(room_id, sender, target, reason).await?;
        }
        Ok(())
    }

    /// Leaves a room, or rejects an invite (client-server API `leave`): an
    /// invite to a room this server does not know is declined through the
    /// inviting server.
    pub async fn leave(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), FedError> {
        if self.enabled() && !self.rooms.knows_room(room_id).await? {
            return self.decline_remote_invite(room_id, user).await;
        }
        self.rooms.leave(room_id, user, reason).await?;
        Ok(())
    }

    /// Creates a room (client-server API `createRoom`); invitees of other
    /// servers are invited through their servers once it exists.
    pub async fn create_room(&self, request: CreateRoom) -> Result<OwnedRoomId, FedError> {
        let creator = request.creator.clone();
        let remote: Vec<OwnedUserId> =
            request.invite.iter().filter(|u| u.server_name() != self.server_name()).cloned().collect();
        if !remote.is_empty() && !self.enabled() {
            return Err(FedError::Forbidden(
                "this server does not federate: users of other servers cannot be invited".into(),
            ));
        }
        let room_id = self.rooms.create_room(request).await?;
        for invitee in remote {
            self.invite_remote(&room_id, &creator, &invitee, None).await?;
        }
        Ok(room_id)
    }

    /// The room a client names, and the servers to reach it through:
    /// `via`, then those an alias's server suggests.
    async fn room_and_servers(
        &self,
        room: OwnedRoomOrAliasId,
        mut via: Vec<OwnedServerName>,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>), FedError> {
        match OwnedRoomId::try_from(room) {
            Ok(room_id) => Ok((room_id, via)),
            Err(alias) => {
                let (room_id, mut servers) = self.resolve_alias(&alias).await?;
                via.append(&mut servers);
                Ok((room_id, via))
            }
        }
    }
}

/// The servers to try, in order and once each: those given, then the room
/// id's own server.
fn candidates(room_id: &RoomId, mut servers: Vec<OwnedServerName>) -> Vec<OwnedServerName> {
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    let mut seen = HashSet::new();
    servers.retain(|s| seen.insert(s.clone()));
    servers
}
