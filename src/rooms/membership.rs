//! Membership changes of local users (client-server API, "Room
//! membership"): join, invite, leave, kick, ban, unban, knock, forget. Each
//! is an `m.room.member` event that the auth rules then accept or refuse.

use std::sync::Arc;

use ruma::{
    OwnedUserId, RoomId, UserId,
    events::{
        StateEventType,
        room::{
            guest_access::{GuestAccess, RoomGuestAccessEventContent},
            member::{MembershipState, RoomMemberEventContent},
        },
    },
};

use serde_json::{Map, Value};

use super::{EventDraft, Rooms, RoomsError, pdu::Pdu};

/// What a user's join asks for beyond joining.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub reason: Option<String>,
    /// Other fields of the request's body, kept in the member event's
    /// content as Synapse keeps them (clients put custom keys there). A
    /// `displayname` or `avatar_url` given here wins over the profile's.
    pub extra: Map<String, Value>,
}

impl Rooms {
    /// The content of `user`'s join event: their profile, then the
    /// request's extra fields and reason; `membership` is always `join`.
    pub async fn join_content(&self, user: &UserId, join: &JoinRequest) -> Result<Value, RoomsError> {
        let profile = self.member_content(user, MembershipState::Join).await?;
        let mut content = match serde_json::to_value(&profile) {
            Ok(Value::Object(content)) => content,
            _ => Map::new(),
        };
        for (key, value) in &join.extra {
            match key.as_str() {
                // Set by the resident server for restricted rooms, never
                // by a client.
                "join_authorised_via_users_server" => {}
                // What other servers and clients parse must stay parsable.
                "displayname" | "avatar_url" if !value.is_string() => {}
                _ => {
                    content.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(reason) = &join.reason {
            content.insert("reason".into(), Value::String(reason.clone()));
        }
        content.insert("membership".into(), Value::String("join".into()));
        Ok(Value::Object(content))
    }

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
        mut content: RoomMemberEventContent,
        reason: Option<String>,
    ) -> Result<Arc<Pdu>, RoomsError> {
        content.reason = reason;
        self.append_local(room_id, sender, EventDraft::from_state(target.as_str(), &content), None).await
    }

    /// Joins a local room (no-op when already joined).
    pub async fn join(&self, room_id: &RoomId, user: &OwnedUserId, join: JoinRequest) -> Result<(), RoomsError> {
        let state = self.current_state(room_id).await?;
        if self.membership(room_id, user).await? == Some(MembershipState::Join) {
            return Ok(());
        }
        if self.is_guest(user).await? && !self.guests_can_join(&state).await? {
            return Err(RoomsError::Forbidden("guests may not join this room".into()));
        }
        let content = self.join_content(user, &join).await?;
        let draft = EventDraft::state(StateEventType::RoomMember, user.as_str(), content);
        self.append_local(room_id, user, draft, None).await?;
        Ok(())
    }

    /// Whether a user is a guest account of this server (client-server
    /// API, "Guest Access").
    pub async fn is_guest(&self, user: &UserId) -> Result<bool, RoomsError> {
        if user.server_name() != self.config.server.server_name {
            return Ok(false);
        }
        Ok(self.db.get_user(user.to_owned()).await?.is_some_and(|u| u.is_guest))
    }

    /// Spec: "Guest Access", "Server behaviour": guests may join a room
    /// only while its `m.room.guest_access` is `can_join`.
    async fn guests_can_join(&self, state: &super::StateMap) -> Result<bool, RoomsError> {
        let Some(id) = state.get(&(StateEventType::RoomGuestAccess, String::new())) else {
            return Ok(false);
        };
        Ok(self.get_pdu(id).await?.is_some_and(|pdu| {
            pdu.content::<RoomGuestAccessEventContent>().is_some_and(|c| c.guest_access == GuestAccess::CanJoin)
        }))
    }

    /// Spec: "Guest Access", "Server behaviour": once a room's
    /// `m.room.guest_access` is no longer `can_join`, the guests of this
    /// server in it leave (each sends its own leave, as Synapse does, which
    /// no power level can refuse).
    pub(super) async fn guests_leave_unless_allowed(&self, room_id: &RoomId) -> Result<(), RoomsError> {
        let state = self.current_state(room_id).await?;
        if self.guests_can_join(&state).await? {
            return Ok(());
        }
        for member in self.joined_members(room_id).await? {
            if self.is_guest(&member).await? {
                let content = RoomMemberEventContent::new(MembershipState::Leave);
                // Boxed: the leave goes through the append path that called this.
                Box::pin(self.member_event(room_id, &member, &member, content, None)).await?;
                tracing::info!(%room_id, user_id = %member, "a guest left a room that no longer allows guests");
            }
        }
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
        match self.membership(room_id, target).await? {
            Some(MembershipState::Join) => {
                return Err(RoomsError::Forbidden("the user is already in the room".into()));
            }
            Some(MembershipState::Ban) => {
                return Err(RoomsError::Forbidden("the user is banned from the room".into()));
            }
            Some(MembershipState::Invite) => return Ok(()),
            _ => {}
        }
        let mut content = self.member_content(target, MembershipState::Invite).await?;
        content.is_direct = is_direct.then_some(true);
        self.member_event(room_id, sender, target, content, reason).await?;
        Ok(())
    }

    /// Leaves a room, or rejects an invite or retracts a knock.
    pub async fn leave(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), RoomsError> {
        match self.membership(room_id, user).await? {
            Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock) => {}
            Some(MembershipState::Leave) => return Ok(()),
            Some(MembershipState::Ban) => {
                return Err(RoomsError::Forbidden("you are banned from this room".into()));
            }
            _ => {
                return Err(RoomsError::NotFound("you are not a member of this room".into()));
            }
        }
        let content = RoomMemberEventContent::new(MembershipState::Leave);
        self.member_event(room_id, user, user, content, reason).await?;
        Ok(())
    }

    pub async fn kick(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), RoomsError> {
        match self.membership(room_id, target).await? {
            Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock) => {}
            _ => return Err(RoomsError::Forbidden("the user is not in the room".into())),
        }
        let content = RoomMemberEventContent::new(MembershipState::Leave);
        self.member_event(room_id, sender, target, content, reason).await?;
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
        let content = RoomMemberEventContent::new(MembershipState::Ban);
        self.member_event(room_id, sender, target, content, reason).await?;
        Ok(())
    }

    pub async fn unban(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), RoomsError> {
        if self.membership(room_id, target).await? != Some(MembershipState::Ban) {
            return Err(RoomsError::Forbidden("the user is not banned".into()));
        }
        let content = RoomMemberEventContent::new(MembershipState::Leave);
        self.member_event(room_id, sender, target, content, reason).await?;
        Ok(())
    }

    /// Knocks on a room whose join rule allows it (room versions 7+).
    pub async fn knock(&self, room_id: &RoomId, user: &OwnedUserId, reason: Option<String>) -> Result<(), RoomsError> {
        let version = self.room_version(room_id).await?;
        let knocking = version.rules().is_some_and(|r| r.authorization.knocking);
        if !knocking {
            return Err(RoomsError::Forbidden("this room version does not allow knocking".into()));
        }
        let content = self.member_content(user, MembershipState::Knock).await?;
        self.member_event(room_id, user, user, content, reason).await?;
        Ok(())
    }

    /// Forgets a room the user has left.
    pub async fn forget(&self, room_id: &RoomId, user: &OwnedUserId) -> Result<(), RoomsError> {
        match self.membership(room_id, user).await? {
            Some(MembershipState::Leave | MembershipState::Ban) => {
                self.db.forget_room(room_id.to_string(), user.to_string()).await?;
                Ok(())
            }
            Some(_) => Err(RoomsError::BadJson("leave the room before forgetting it".into())),
            None => Err(RoomsError::NotFound("you were never in this room".into())),
        }
    }

    /// A member event's content with the local user's `displayname` and
    /// `avatar_url` (spec: they are copied into join, invite and knock
    /// events).
    pub async fn member_content(
        &self,
        user: &UserId,
        membership: MembershipState,
    ) -> Result<RoomMemberEventContent, RoomsError> {
        let profile = self.db.get_profile(user.to_owned()).await?;
        let field = |name: &str| profile.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let mut content = RoomMemberEventContent::new(membership);
        content.displayname = field("displayname");
        content.avatar_url = field("avatar_url").map(Into::into);
        Ok(content)
    }

    /// Sends the user's current display name and avatar into every room
    /// they have joined, as a new join event where either differs from
    /// what their member event says (spec: "Events on change of profile
    /// information"). A room that refuses it (the user may not change
    /// their member event there) is skipped; the others go on.
    pub async fn refresh_member_profiles(&self, user: &OwnedUserId) -> Result<(), RoomsError> {
        let wanted = self.member_content(user, MembershipState::Join).await?;
        for room_id in self.joined_rooms(user).await? {
            let current = self
                .current_state_event(&room_id, &StateEventType::RoomMember, user.as_str())
                .await?
                .and_then(|pdu| pdu.content::<RoomMemberEventContent>());
            let Some(mut content) = current.filter(|c| c.membership == MembershipState::Join) else { continue };
            if content.displayname == wanted.displayname && content.avatar_url == wanted.avatar_url {
                continue;
            }
            content.displayname = wanted.displayname.clone();
            content.avatar_url = wanted.avatar_url.clone();
            if let Err(e) = self.member_event(&room_id, user, user, content, None).await {
                tracing::warn!(%room_id, %user, error = %e, "could not send a profile change into a room");
            }
        }
        Ok(())
    }
}
