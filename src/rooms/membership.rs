//! Membership changes of local users (client-server API, "Room
//! membership"): join, invite, leave, kick, ban, unban, knock, forget. Each
//! is an `m.room.member` event that the auth rules then accept or refuse.

use std::sync::Arc;

use ruma::{OwnedUserId, RoomId, UserId, events::StateEventType};
use serde_json::{Value, json};

use super::{EventDraft, Rooms, RoomsError, create::merge, pdu::Pdu};

impl Rooms {
    fn require_local(&self, user: &UserId) -> Result<(), RoomsError> {
        if user.server_name() != self.config.server.server_name {
            return Err(RoomsError::Forbidden(
                "users on other servers cannot be reached until federation is enabled".into(),
            ));
        }
        Ok(())
    }

    async fn member_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        mut content: Value,
        reason: Option<String>,
    ) -> Result<Arc<Pdu>, RoomsError> {
        if let Some(reason) = reason {
            content["reason"] = Value::String(reason);
        }
        self.append_local(
            room_id,
            sender,
            EventDraft::state(StateEventType::RoomMember, target.as_str(), content),
            None,
        )
        .await
    }

    /// Joins a local room (no-op when already joined).
    pub async fn join(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), RoomsError> {
        self.current_state(room_id).await?;
        if self.membership(room_id, user).await?.as_deref() == Some("join") {
            return Ok(());
        }
        let mut content = json!({"membership": "join"});
        merge(&mut content, self.member_profile(user).await?);
        self.member_event(room_id, user, user, content, reason).await?;
        Ok(())
    }

    pub async fn invite(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
        is_direct: bool,
    ) -> Result<(), RoomsError> {
        self.require_local(target)?;
        if self.db.get_user(target.clone()).await?.is_none() {
            return Err(RoomsError::NotFound("the invited user does not exist".into()));
        }
        match self.membership(room_id, target).await?.as_deref() {
            Some("join") => {
                return Err(RoomsError::Forbidden("the user is already in the room".into()));
            }
            Some("ban") => {
                return Err(RoomsError::Forbidden("the user is banned from the room".into()));
            }
            Some("invite") => return Ok(()),
            _ => {}
        }
        let mut content = json!({"membership": "invite"});
        merge(&mut content, self.member_profile(target).await?);
        if is_direct {
            content["is_direct"] = Value::Bool(true);
        }
        self.member_event(room_id, sender, target, content, reason).await?;
        Ok(())
    }

    /// Leaves a room, or rejects an invite or retracts a knock.
    pub async fn leave(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), RoomsError> {
        match self.membership(room_id, user).await?.as_deref() {
            Some("join" | "invite" | "knock") => {}
            Some("leave") => return Ok(()),
            Some("ban") => {
                return Err(RoomsError::Forbidden("you are banned from this room".into()));
            }
            _ => {
                return Err(RoomsError::NotFound("you are not a member of this room".into()));
            }
        }
        self.member_event(room_id, user, user, json!({"membership": "leave"}), reason).await?;
        Ok(())
    }

    pub async fn kick(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), RoomsError> {
        match self.membership(room_id, target).await?.as_deref() {
            Some("join" | "invite" | "knock") => {}
            _ => return Err(RoomsError::Forbidden("the user is not in the room".into())),
        }
        self.member_event(room_id, sender, target, json!({"membership": "leave"}), reason).await?;
        Ok(())
    }

    pub async fn ban(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), RoomsError> {
        self.current_state(room_id).await?;
        self.member_event(room_id, sender, target, json!({"membership": "ban"}), reason).await?;
        Ok(())
    }

    pub async fn unban(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), RoomsError> {
        if self.membership(room_id, target).await?.as_deref() != Some("ban") {
            return Err(RoomsError::Forbidden("the user is not banned".into()));
        }
        self.member_event(room_id, sender, target, json!({"membership": "leave"}), reason).await?;
        Ok(())
    }

    /// Knocks on a room whose join rule allows it (room versions 7+).
    pub async fn knock(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), RoomsError> {
        let version = self.room_version(room_id).await?;
        let knocking = version.rules().is_some_and(|r| r.authorization.knocking);
        if !knocking {
            return Err(RoomsError::Forbidden("this room version does not allow knocking".into()));
        }
        let mut content = json!({"membership": "knock"});
        merge(&mut content, self.member_profile(user).await?);
        self.member_event(room_id, user, user, content, reason).await?;
        Ok(())
    }

    /// Forgets a room the user has left.
    pub async fn forget(&self, room_id: &RoomId, user: &OwnedUserId) -> Result<(), RoomsError> {
        match self.membership(room_id, user).await?.as_deref() {
            Some("leave" | "ban") => {
                self.db.forget_room(room_id.to_string(), user.to_string()).await?;
                Ok(())
            }
            Some(_) => Err(RoomsError::BadJson("leave the room before forgetting it".into())),
            None => Err(RoomsError::NotFound("you were never in this room".into())),
        }
    }
}
