//! Joining a room that lives on other servers (server-server API,
//! "Joining Rooms"), as the joining server: `make_join` for a template,
//! sign it, `send_join`, check the returned state and auth chain, and
//! store them. The resident side lives in `server`.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName,
    OwnedUserId, RoomId, RoomVersionId, ServerName,
    api::federation::membership::{
        RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
        prepare_knock_event, prepare_leave_event,
    },
    canonical_json::{RedactedBecause, redact},
    events::room::member::{MembershipState, RoomMemberEventContent},
    signatures::hash_and_sign_event,
};
use serde_json::{Value, value::RawValue};

use super::{FedError, Federation, v1::V1Body};
use crate::rooms::{JoinRequest, VerifiedPdu, event_format, versions};

impl Federation {
    /// Joins `user` to `room_id` through the first of `via` that can help.
    pub async fn join_remote(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        via: &[OwnedServerName],
        join: &JoinRequest,
    ) -> Result<(), FedError> {
        if !self.enabled() {
            return Err(FedError::NotFound("this server is not in the room and does not federate".into()));
        }
        let mut last_error = FedError::NotFound("no server to join the room through".into());
        for server in via.iter().filter(|s| *s != self.server_name()) {
            match self.join_through(room_id, user, server, join).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "cannot join through this server");
                    last_error = more_telling(last_error, e);
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
        join: &JoinRequest,
    ) -> Result<(), FedError> {
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.clone());
        request.ver = versions::FOLLOWED.to_vec();
        let template = self.request(server, request).await?;
        let (version, rules) = followed_rules(template.room_version)?;
        let content = match self.rooms.join_content(user, join).await {
            Ok(content) => content,
            Err(_) => serde_json::json!({"membership": "join"}),
        };
        let (event_id, obj) = self.sign_template(&rules, template.event.get(), room_id, user, &content)?;
        let pdu_raw = serde_json::value::to_raw_value(&obj).map_err(|e| FedError::Internal(e.to_string()))?;

        let request = create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu_raw);
        let response = self.request_with_v1_fallback(server, request, V1Body::SameAsV2).await?;
        let room_state = response.room_state;
        // Events of the state and auth chain that do not verify are dropped;
        // the room server then checks each against its auth events.
        let mut state = Vec::with_capacity(room_state.state.len());
        let mut auth_chain = Vec::with_capacity(room_state.auth_chain.len());
        for (raws, out) in [(&room_state.state, &mut state), (&room_state.auth_chain, &mut auth_chain)] {
            for raw in raws {
                match self.verify_pdu(&version, room_id, raw).await {
                    Ok(event) if event.pdu.room == room_id => out.push(event),
                    Ok(_) => return Err(FedError::BadResponse("send_join returned an event of another room".into())),
                    Err(e) => {
                        tracing::info!(%room_id, %server, error = %e, "dropped a send_join event that does not verify")
                    }
                }
            }
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

impl Federation {
    /// Checks that a `make_join`/`make_leave` template is the membership
    /// event this server asked for, fills in the content, and hashes and
    /// signs it. Returns the event id and the signed event.
    fn sign_template(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        template: &str,
        room_id: &RoomId,
        user: &OwnedUserId,
        content: &impl serde::Serialize,
    ) -> Result<(OwnedEventId, CanonicalJsonObject), FedError> {
        let mut obj: CanonicalJsonObject =
            serde_json::from_str(template).map_err(|e| FedError::BadResponse(format!("membership template: {e}")))?;
        let is = |key: &str, want: &str| matches!(obj.get(key), Some(CanonicalJsonValue::String(v)) if v == want);
        if !is("type", "m.room.member") || !is("sender", user.as_str()) || !is("state_key", user.as_str()) {
            return Err(FedError::BadResponse("the template is not a membership event of this user".into()));
        }
        if !is("room_id", room_id.as_str()) {
            return Err(FedError::BadResponse("the template is for another room".into()));
        }
        let content = serde_json::to_value(content).map_err(|e| FedError::Internal(e.to_string()))?;
        obj.insert("content".into(), CanonicalJsonValue::try_from(content).expect("canonical content"));
        obj.insert("origin".into(), CanonicalJsonValue::String(self.server_name().to_string()));
        obj.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(MilliSecondsSinceUnixEpoch::now().0.into()));
        obj.remove("signatures");
        obj.remove("hashes");
        obj.remove("unsigned");
        // Room versions 1 and 2: the id is this server's to choose.
        obj.remove("event_id");
        event_format::assign_event_id(&mut obj, rules, self.server_name());
        hash_and_sign_event(self.server_name().as_str(), &self.key.keypair, &mut obj, &rules.redaction)
            .map_err(|e| FedError::Internal(format!("cannot sign the event: {e}")))?;
        let event_id = event_format::event_id_of(&obj, rules).map_err(FedError::Internal)?;
        Ok((event_id, obj))
    }

    /// Invites a user of another server: the invite is built and signed
    /// here, signed by the invitee's server (`/invite`), then appended and
    /// sent to the room's other servers.
    pub async fn invite_remote(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
        target: &OwnedUserId,
        reason: Option<String>,
    ) -> Result<(), FedError> {
        if !self.enabled() {
            return Err(FedError::Forbidden("this server does not federate".into()));
        }
        match self.rooms.membership(room_id, target).await? {
            Some(MembershipState::Join) => return Err(FedError::Forbidden("the user is already in the room".into())),
            Some(MembershipState::Ban) => return Err(FedError::Forbidden("the user is banned from the room".into())),
            Some(MembershipState::Invite) => return Ok(()),
            _ => {}
        }
        let mut content = RoomMemberEventContent::new(MembershipState::Invite);
        content.reason = reason;
        let draft = crate::rooms::EventDraft::from_state(target.as_str(), &content);
        let (version, obj, event_id) = self.rooms.build_unstored(room_id, sender, draft).await?;
        let invite_state: Vec<RawStrippedState> =
            self.rooms.invite_state_pdus(room_id, sender).await?.into_iter().map(RawStrippedState::Pdu).collect();
        let event = serde_json::value::to_raw_value(&obj).map_err(|e| FedError::Internal(e.to_string()))?;
        // Servers that only know the v1 `/invite` only know room versions 1
        // and 2, whose events carry their id: only those are offered it.
        let v1_body = match version.rules() {
            Some(rules) if event_format::ids_in_events(&rules) => Some(v1_invite_body(&obj, &invite_state)?),
            _ => None,
        };
        let request =
            create_invite::v2::Request::new(room_id.to_owned(), event_id.clone(), version.clone(), event, invite_state);
        let response = match v1_body {
            Some(body) => self.request_with_v1_fallback(target.server_name(), request, V1Body::Replaced(body)).await?,
            None => self.request(target.server_name(), request).await?,
        };
        let signed = self.verify_pdu(&version, room_id, &response.event).await?;
        if signed.pdu.event_id != event_id {
            return Err(FedError::BadResponse("the invitee's server changed the invite".into()));
        }
        // The invitee's server must have signed it too.
        let signed_obj: CanonicalJsonObject =
            serde_json::from_str(&signed.json).map_err(|e| FedError::Internal(e.to_string()))?;
        let servers = [target.server_name().to_owned(), self.server_name().to_owned()];
        let keys = self.public_key_map(&signed_obj, servers, None).await?;
        let rules = version.rules().ok_or_else(|| FedError::Internal("room version rules".into()))?;
        ruma::signatures::verify_json(
            &keys,
            &redact(signed_obj, &rules.redaction, None::<RedactedBecause>)
                .map_err(|e| FedError::Internal(e.to_string()))?,
        )
        .map_err(|e| FedError::Unauthorized(format!("the invitee's server did not sign the invite: {e}")))?;
        // Sent to every server in the room, the invitee's included (it may
        // have other users there).
        match self.rooms.append_remote(signed, Some(self.server_name())).await? {
            crate::rooms::RemoteOutcome::Accepted(_) | crate::rooms::RemoteOutcome::Known => Ok(()),
            crate::rooms::RemoteOutcome::SoftFailed => {
                Err(FedError::Forbidden("the invite is no longer allowed".into()))
            }
            crate::rooms::RemoteOutcome::Rejected(r) => Err(FedError::Forbidden(format!("the invite is refused: {r}"))),
        }
    }

    /// Declines an invite to a room on another server: `make_leave` and
    /// `send_leave` through the servers the invite named.
    pub async fn decline_remote_invite(&self, room_id: &RoomId, user: &OwnedUserId) -> Result<(), FedError> {
        let Some(invite) = self.db.remote_invite(room_id.to_string(), user.to_string()).await? else {
            return Err(FedError::NotFound("you are not a member of this room".into()));
        };
        let via: Vec<OwnedServerName> = serde_json::from_str(&invite.via).unwrap_or_default();
        let mut last = FedError::NotFound("no server to leave the room through".into());
        for server in via.iter().filter(|s| *s != self.server_name()) {
            match self.leave_through(room_id, user, server).await {
                Ok(()) => return Ok(()),
                Err(e) => last = more_telling(last, e),
            }
        }
        Err(last)
    }

    async fn leave_through(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        server: &OwnedServerName,
    ) -> Result<(), FedError> {
        let template =
            self.request(server, prepare_leave_event::v1::Request::new(room_id.to_owned(), user.clone())).await?;
        let (_, rules) = followed_rules(template.room_version)?;
        let content = RoomMemberEventContent::new(MembershipState::Leave);
        let (event_id, obj) = self.sign_template(&rules, template.event.get(), room_id, user, &content)?;
        let raw = serde_json::value::to_raw_value(&obj).map_err(|e| FedError::Internal(e.to_string()))?;
        let request = create_leave_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw);
        self.request_with_v1_fallback(server, request, V1Body::SameAsV2).await?;
        let leave = VerifiedPdu::new(event_id, room_id, &obj)?;
        self.rooms.store_declined_invite(&leave, user).await?;
        Ok(())
    }

    /// Knocks on a room this server is not in (server-server API,
    /// "Knocking upon a room"): `make_knock` and `send_knock` through the
    /// first of `via` that can help; the stripped state the resident
    /// server answers with is shown to the user like an invite's.
    pub async fn knock_remote(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        reason: Option<String>,
        via: &[OwnedServerName],
    ) -> Result<(), FedError> {
        if !self.enabled() {
            return Err(FedError::NotFound("this server is not in the room and does not federate".into()));
        }
        let mut last_error = FedError::NotFound("no server to knock through".into());
        for server in via.iter().filter(|s| *s != self.server_name()) {
            match self.knock_through(room_id, user, reason.clone(), server).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "cannot knock through this server");
                    last_error = more_telling(last_error, e);
                }
            }
        }
        Err(last_error)
    }

    async fn knock_through(
        &self,
        room_id: &RoomId,
        user: &OwnedUserId,
        reason: Option<String>,
        server: &OwnedServerName,
    ) -> Result<(), FedError> {
        let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.clone());
        request.ver = versions::FOLLOWED.to_vec();
        let template = self.request(server, request).await?;
        let (version, rules) = followed_rules(Some(template.room_version))?;
        if !rules.authorization.knocking {
            return Err(FedError::BadRequest(format!("rooms of version {version} cannot be knocked on")));
        }
        let mut content = RoomMemberEventContent::new(MembershipState::Knock);
        content.reason = reason;
        let (event_id, obj) = self.sign_template(&rules, template.event.get(), room_id, user, &content)?;
        let raw = serde_json::value::to_raw_value(&obj).map_err(|e| FedError::Internal(e.to_string()))?;
        let response = self
            .request(server, create_knock_event::v1::Request::new(room_id.to_owned(), event_id.clone(), raw))
            .await?;
        let stripped = stripped_events(&response.knock_room_state);
        let knock = VerifiedPdu::new(event_id, room_id, &obj)?;
        self.rooms.store_remote_invite(&knock, user, &version, stripped, vec![server.clone()]).await?;
        tracing::info!(%room_id, %user, %server, "knocked on a room over federation");
        Ok(())
    }

    /// Receives an invite of a user of this server from `origin`
    /// (server-server API, "Inviting to a room", the invitee's side):
    /// checks it is an invite by a user of `origin` of a user here, and
    /// signs it. When no user of this server is in the room, the invite is
    /// kept with the stripped state `origin` sent; otherwise it arrives
    /// with the room's other events. Returns the event signed.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        raw: &RawValue,
        invite_room_state: &[RawStrippedState],
    ) -> Result<CanonicalJsonObject, FedError> {
        self.rooms.require_server_allowed(room_id, origin).await?;
        let event = self.verify_pdu(version, room_id, raw).await?;
        let pdu = &event.pdu;
        let is_invite = pdu.membership() == Some(MembershipState::Invite);
        if pdu.event_id != event_id || !is_invite || pdu.sender().server_name() != origin {
            return Err(FedError::BadRequest(
                "the invite is not an invite sent by a user of the requesting server".into(),
            ));
        }
        let invitee = pdu
            .state_key()
            .and_then(|k| OwnedUserId::try_from(k).ok())
            .filter(|u| u.server_name() == self.server_name())
            .ok_or_else(|| FedError::BadRequest("the invitee is not a user of this server".into()))?;
        if self.db.get_user(invitee.clone()).await?.is_none() {
            return Err(FedError::NotFound("the invited user does not exist".into()));
        }
        let rules = version.rules().ok_or_else(|| FedError::Internal("room version rules".into()))?;
        let mut signed: CanonicalJsonObject =
            serde_json::from_str(&event.json).map_err(|e| FedError::Internal(e.to_string()))?;
        ruma::signatures::sign_event(self.server_name().as_str(), &self.key.keypair, &mut signed, &rules.redaction)
            .map_err(|e| FedError::Internal(format!("cannot sign the invite: {e}")))?;
        if !self.rooms.is_resident(room_id).await? {
            let stripped = stripped_events(invite_room_state);
            let stored = VerifiedPdu::new(event.pdu.event_id.clone(), room_id, &signed)?;
            self.rooms.store_remote_invite(&stored, &invitee, version, stripped, vec![origin.to_owned()]).await?;
        }
        Ok(signed)
    }

    /// The servers a remote invite suggests joining through.
    pub async fn invite_servers(&self, room_id: &RoomId, user: &OwnedUserId) -> Vec<OwnedServerName> {
        match self.db.remote_invite(room_id.to_string(), user.to_string()).await {
            Ok(Some(invite)) => serde_json::from_str(&invite.via).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// The body of the v1 `/invite`: the invite event itself, the stripped
/// state in its `unsigned.invite_room_state`.
fn v1_invite_body(event: &CanonicalJsonObject, invite_state: &[RawStrippedState]) -> Result<Vec<u8>, FedError> {
    let mut event = serde_json::to_value(event).map_err(|e| FedError::Internal(e.to_string()))?;
    let state = serde_json::to_value(invite_state).map_err(|e| FedError::Internal(e.to_string()))?;
    if let Some(obj) = event.as_object_mut() {
        obj.insert("unsigned".into(), serde_json::json!({ "invite_room_state": state }));
    }
    serde_json::to_vec(&event).map_err(|e| FedError::Internal(e.to_string()))
}

/// Which of two failures of a handshake tried through several servers
/// the user is told: the first answer of a server about the request itself
/// (a 4xx such as `M_FORBIDDEN` or `M_INCOMPATIBLE_ROOM_VERSION`) over any
/// later failure to reach a server, else the later failure.
fn more_telling(earlier: FedError, later: FedError) -> FedError {
    let about_the_request = |e: &FedError| matches!(e, FedError::Remote { status, .. } if status.is_client_error());
    if about_the_request(&earlier) { earlier } else { later }
}

/// The room version a template names (version 1 when it names none) and
/// its rules, when this server can follow rooms of that version.
fn followed_rules(
    version: Option<RoomVersionId>,
) -> Result<(RoomVersionId, ruma::room_version_rules::RoomVersionRules), FedError> {
    let version = version.unwrap_or(RoomVersionId::V1);
    let rules = version
        .rules()
        .filter(|_| versions::can_follow(&version))
        .ok_or_else(|| FedError::BadRequest(format!("room version {version} is not supported here")))?;
    Ok((version, rules))
}

/// The client-visible stripped form (type, state key, sender, content) of
/// the state another server sent with an invite or a knock.
pub fn stripped_events(state: &[ruma::api::federation::membership::RawStrippedState]) -> Vec<Value> {
    use ruma::api::federation::membership::RawStrippedState;
    state
        .iter()
        .filter_map(|s| {
            #[allow(deprecated)]
            let json = match s {
                RawStrippedState::Pdu(raw) => raw.get(),
                RawStrippedState::Stripped(raw) => raw.json().get(),
                _ => return None,
            };
            let v: Value = serde_json::from_str(json).ok()?;
            Some(serde_json::json!({
                "type": v.get("type")?,
                "state_key": v.get("state_key")?,
                "sender": v.get("sender")?,
                "content": v.get("content")?,
            }))
        })
        .collect()
}
