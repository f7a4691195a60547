//! Invites and knocks of local users to rooms this server is not in: the
//! events kept as outliers with the stripped state their server sent, and
//! local invites of users of other servers, built and signed here before
//! their server signs them too.

use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, UserId,
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

use super::{
    Rooms, RoomsError,
    remote::{STRIPPED_STATE, VerifiedPdu},
};
use crate::commit::Commit;

impl Rooms {
    /// Builds, authorises and signs a local event without storing it (an
    /// invite of a remote user, which that user's server must sign first).
    pub async fn build_unstored(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: super::EventDraft,
    ) -> Result<(RoomVersionId, CanonicalJsonObject, OwnedEventId), RoomsError> {
        let guard = self.lock_head(room_id, true).await?;
        let head = guard.as_ref().ok_or_else(|| RoomsError::NotFound("unknown room".into()))?;
        let (pdu, new_event) = self.build_event(room_id, sender, &draft, head, None).await?;
        let obj: CanonicalJsonObject =
            serde_json::from_str(&new_event.json).map_err(|e| RoomsError::Internal(e.to_string()))?;
        Ok((self.room_version(room_id).await?, obj, pdu.event_id))
    }

    /// The state an invitee is shown (as full PDUs, spec v1.16): create,
    /// join rules, name, avatar, aliases, encryption, topic, and the
    /// inviter's membership.
    pub async fn invite_state_pdus(
        &self,
        room_id: &RoomId,
        inviter: &UserId,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, RoomsError> {
        let state = self.current_state(room_id).await?;
        let mut ids: Vec<OwnedEventId> =
            STRIPPED_STATE.iter().filter_map(|kind| state.get(&(kind.clone(), String::new())).cloned()).collect();
        if let Some(own) = state.get(&(StateEventType::RoomMember, inviter.to_string())) {
            ids.push(own.clone());
        }
        self.pdu_jsons(&ids).await
    }

    /// Records an invite of a local user to a room this server is not in
    /// (or the user's knock on one, with the stripped state its server
    /// answered), and wakes the user.
    pub async fn store_remote_invite(
        &self,
        invite: &VerifiedPdu,
        user: &UserId,
        version: &RoomVersionId,
        stripped_state: Vec<Value>,
        via: Vec<OwnedServerName>,
    ) -> Result<(), RoomsError> {
        let stripped = serde_json::to_string(&stripped_state).map_err(|e| RoomsError::Internal(e.to_string()))?;
        let via = serde_json::to_string(&via).map_err(|e| RoomsError::Internal(e.to_string()))?;
        let membership = match invite.pdu.membership() {
            Some(MembershipState::Knock) => MembershipState::Knock,
            _ => MembershipState::Invite,
        };
        let pos = self
            .db
            .store_remote_invite(
                invite.outlier(false),
                user.to_string(),
                membership,
                version.to_string(),
                stripped,
                via,
            )
            .await?;
        self.commits.committed(Commit::RemoteInvite { position: pos, user }).await;
        Ok(())
    }

    /// Records that a local user declined a remote invite with `leave`.
    pub async fn store_declined_invite(&self, leave: &VerifiedPdu, user: &UserId) -> Result<(), RoomsError> {
        let pos = self.db.decline_remote_invite(leave.outlier(false), user.to_string()).await?;
        self.commits.committed(Commit::RemoteInvite { position: pos, user }).await;
        Ok(())
    }
}
