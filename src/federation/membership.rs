//! Joining a room that lives on other servers (server-server API,
//! "Joining Rooms"), as the joining server: `make_join` for a template,
//! sign it, `send_join`, check the returned state and auth chain, and
//! store them. The resident side lives in `server`.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName, OwnedUserId,
    RoomId, RoomVersionId,
    api::federation::membership::{create_join_event, prepare_join_event},
    signatures::{hash_and_sign_event, reference_hash},
};
use serde_json::Value;

use super::{FedError, Federation};
use crate::rooms::{VerifiedPdu, versions};

impl Federation {
    /// Joins `user` to `room_id` through the first of `via` that can help.
    pub async fn join_remote(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        via: &[OwnedServerName],
    ) -> Result<(), FedError> {
        if !self.enabled() {
            return Err(FedError::NotFound("this server is not in the room and does not federate".into()));
        }
        let mut last_error = FedError::NotFound("no server to join the room through".into());
        for server in via.iter().filter(|s| *s != self.server_name()) {
            match self.join_through(room_id, user, server).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "cannot join through this server");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        server: &OwnedServerName,
    ) -> Result<(), FedError> {
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.clone());
        request.ver = versions::FOLLOWED.to_vec();
        let template = self.request(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let rules = version
            .rules()
            .filter(|_| versions::can_follow(&version))
            .ok_or_else(|| FedError::BadRequest(format!("room version {version} is not supported here")))?;
        let mut obj: CanonicalJsonObject = serde_json::from_str(template.event.get())
            .map_err(|e| FedError::BadResponse(format!("make_join template: {e}")))?;
        // The template must be the join this server asked for.
        let is = |key: &str, want: &str| matches!(obj.get(key), Some(CanonicalJsonValue::String(v)) if v == want);
        if !is("type", "m.room.member") || !is("sender", user.as_str()) || !is("state_key", user.as_str()) {
            return Err(FedError::BadResponse("the join template is not a join of this user".into()));
        }
        if !is("room_id", room_id.as_str()) {
            return Err(FedError::BadResponse("the join template is for another room".into()));
        }
        let mut content = serde_json::json!({ "membership": "join" });
        if let Ok(Value::Object(profile)) = self.rooms.member_profile(user).await
            && let Some(map) = content.as_object_mut()
        {
            map.extend(profile);
        }
        obj.insert("content".into(), CanonicalJsonValue::try_from(content).expect("canonical content"));
        obj.insert("origin".into(), CanonicalJsonValue::String(self.server_name().to_string()));
        obj.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(MilliSecondsSinceUnixEpoch::now().0.into()));
        obj.remove("signatures");
        obj.remove("hashes");
        obj.remove("unsigned");
        hash_and_sign_event(self.server_name().as_str(), &self.key.keypair, &mut obj, &rules.redaction)
            .map_err(|e| FedError::Internal(format!("cannot sign the join: {e}")))?;
        let hash = reference_hash(&obj, &rules).map_err(|e| FedError::Internal(e.to_string()))?;
        let event_id = OwnedEventId::try_from(format!("${hash}")).map_err(|e| FedError::Internal(e.to_string()))?;
        let pdu_raw = serde_json::value::to_raw_value(&obj).map_err(|e| FedError::Internal(e.to_string()))?;

        let response = self
            .request(server, create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu_raw))
            .await?;
        let room_state = response.room_state;
        // Every event of the state and auth chain must verify.
        let mut state = Vec::with_capacity(room_state.state.len());
        for raw in &room_state.state {
            let event = self.verify_pdu(&version, room_id, raw).await?;
            if event.pdu.room != room_id {
                return Err(FedError::BadResponse("send_join returned an event of another room".into()));
            }
            state.push(event);
        }
        let mut auth_chain = Vec::with_capacity(room_state.auth_chain.len());
        for raw in &room_state.auth_chain {
            let event = self.verify_pdu(&version, room_id, raw).await?;
            if event.pdu.room != room_id {
                return Err(FedError::BadResponse("send_join returned an event of another room".into()));
            }
            auth_chain.push(event);
        }
        // The resident server may have countersigned the join (restricted rooms).
        let signed_join = match &room_state.event {
            Some(raw) => self.verify_pdu(&version, room_id, raw).await?,
            None => VerifiedPdu::new(event_id, room_id, &obj)?,
        };
        self.rooms.import_joined_room(&version, state, auth_chain, signed_join).await?;
        tracing::info!(%room_id, %user, %server, "joined a room over federation");
        Ok(())
    }
}
