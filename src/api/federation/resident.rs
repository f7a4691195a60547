//! The resident server's side of membership over federation (server-server
//! API, "Joining Rooms", "Leaving Rooms (Rejecting Invites)", "Knocking
//! Upon a Room", "Inviting to a Room"): templates for the joining server to
//! sign, the signed events it sends back, and invites of this server's
//! users, which this server signs.

use axum::Router;
use http::StatusCode;
use ruma::{
    OwnedEventId, ServerName,
    api::{
        error::ErrorKind,
        federation::membership::{
            RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event,
            prepare_join_event, prepare_knock_event, prepare_leave_event,
        },
    },
};
use serde_json::Value;

use super::{Fed, endpoints::require_acl_allows, mount};
use crate::{
    federation::FedError,
    http::ApiError,
    rooms::{RemoteOutcome, pdu::Pdu},
    services::AppState,
};

/// The membership endpoints of the resident server.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = mount(router, make_join);
    let router = mount(router, send_join);
    let router = mount(router, make_leave);
    let router = mount(router, send_leave);
    let router = mount(router, make_knock);
    let router = mount(router, send_knock);
    mount(router, invite)
}

/// 400 `M_INCOMPATIBLE_ROOM_VERSION`, naming the room's version.
fn incompatible_version(version: ruma::RoomVersionId, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(version)),
        message,
    )
}

/// A `make_join`/`make_leave` template for a user of the requesting server.
async fn membership_template(
    state: &AppState,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    user_id: &ruma::UserId,
    membership: &str,
) -> Result<(ruma::RoomVersionId, ruma::CanonicalJsonObject), ApiError> {
    if user_id.server_name() != origin {
        return Err(ApiError::forbidden("the user does not belong to the requesting server"));
    }
    if !state.rooms.knows_room(room_id).await? {
        return Err(ApiError::not_found("this server does not know the room"));
    }
    require_acl_allows(state, room_id, origin).await?;
    Ok(state.rooms.make_membership_template(room_id, user_id, membership).await?)
}

async fn make_join(
    state: AppState,
    req: Fed<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let (version, template) = membership_template(&state, &origin, &body.room_id, &body.user_id, "join").await?;
    if !body.ver.contains(&version) {
        return Err(incompatible_version(version, "your server does not support this room's version"));
    }
    let raw = serde_json::value::to_raw_value(&template).map_err(|_| ApiError::internal())?;
    let mut response = prepare_join_event::v1::Response::new(raw);
    response.room_version = Some(version);
    Ok(response)
}

/// The membership event of a `send_join`/`send_leave`: verified, in the
/// room, and a `membership` of a user of the sending server.
async fn verified_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    raw: &serde_json::value::RawValue,
    membership: &str,
) -> Result<crate::rooms::VerifiedPdu, ApiError> {
    if !state.rooms.knows_room(room_id).await? {
        return Err(ApiError::not_found("this server does not know the room"));
    }
    require_acl_allows(state, room_id, origin).await?;
    let version = state.rooms.room_version(room_id).await?;
    let event = state.federation.verify_pdu(&version, room_id, raw).await?;
    let pdu: &Pdu = &event.pdu;
    if pdu.event_id != event_id || pdu.room != room_id {
        return Err(ApiError::bad_json("the event does not match the request"));
    }
    let is_membership = *pdu.kind() == ruma::events::TimelineEventType::RoomMember
        && pdu.state_key() == Some(pdu.sender().as_str())
        && pdu.content_value().get("membership").and_then(Value::as_str) == Some(membership);
    if !is_membership || pdu.sender().server_name() != origin {
        return Err(ApiError::bad_json(format!("expected a {membership} of a user of the sending server")));
    }
    Ok(event)
}

/// Appends a verified membership event, sending it on to the room's other
/// servers.
async fn accept_membership(
    state: &AppState,
    origin: &ServerName,
    event: crate::rooms::VerifiedPdu,
    membership: &str,
) -> Result<(), ApiError> {
    match state.rooms.append_remote(event, Some(origin)).await? {
        RemoteOutcome::Accepted(_) | RemoteOutcome::Known => Ok(()),
        RemoteOutcome::SoftFailed => {
            Err(ApiError::forbidden(format!("the {membership} is not allowed by the current state")))
        }
        RemoteOutcome::Rejected(reason) => Err(ApiError::forbidden(format!("the {membership} is refused: {reason}"))),
    }
}

async fn send_join(
    state: AppState,
    req: Fed<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let event = verified_membership(&state, &origin, &body.room_id, &body.event_id, &body.pdu, "join").await?;
    // The state the joining server needs is the state before the join.
    let state_before: Vec<OwnedEventId> = state.rooms.current_state(&body.room_id).await?.values().cloned().collect();
    let event_json = event.json.clone();
    accept_membership(&state, &origin, event, "join").await?;
    let chain = state
        .db
        .auth_chain(state_before.iter().map(|id| id.to_string()).chain([body.event_id.to_string()]).collect())
        .await
        .map_err(FedError::from)?;
    let chain: Vec<OwnedEventId> = chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect();
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = state.rooms.pdu_jsons(&state_before).await?;
    room_state.auth_chain = state.rooms.pdu_jsons(&chain).await?;
    room_state.event = serde_json::value::RawValue::from_string(event_json).ok();
    let mut servers: Vec<String> =
        state.federation.room_servers(&body.room_id).await?.into_iter().map(|s| s.to_string()).collect();
    servers.push(state.federation.server_name().to_string());
    room_state.servers_in_room = Some(servers);
    Ok(create_join_event::v2::Response::new(room_state))
}

async fn make_leave(
    state: AppState,
    req: Fed<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let (version, template) = membership_template(&state, &origin, &body.room_id, &body.user_id, "leave").await?;
    let raw = serde_json::value::to_raw_value(&template).map_err(|_| ApiError::internal())?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), raw))
}

async fn send_leave(
    state: AppState,
    req: Fed<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let event = verified_membership(&state, &origin, &body.room_id, &body.event_id, &body.pdu, "leave").await?;
    accept_membership(&state, &origin, event, "leave").await?;
    Ok(create_leave_event::v2::Response::new())
}

/// Spec: server-server API, "Knocking upon a room" (resident side).
async fn make_knock(
    state: AppState,
    req: Fed<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    if state.rooms.knows_room(&body.room_id).await? {
        let version = state.rooms.room_version(&body.room_id).await?;
        let knocking = version.rules().is_some_and(|r| r.authorization.knocking);
        if !knocking || !body.ver.contains(&version) {
            return Err(incompatible_version(
                version,
                "the room's version does not support knocking, or your server does not support the room's version",
            ));
        }
    }
    let (version, template) = membership_template(&state, &origin, &body.room_id, &body.user_id, "knock").await?;
    let raw = serde_json::value::to_raw_value(&template).map_err(|_| ApiError::internal())?;
    Ok(prepare_knock_event::v1::Response::new(version, raw))
}

async fn send_knock(
    state: AppState,
    req: Fed<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let event = verified_membership(&state, &origin, &body.room_id, &body.event_id, &body.pdu, "knock").await?;
    let knocker = event.pdu.sender().to_owned();
    accept_membership(&state, &origin, event, "knock").await?;
    // The knocker is shown the room's stripped state.
    let stripped = state.rooms.invite_state_pdus(&body.room_id, &knocker).await?;
    Ok(create_knock_event::v1::Response::new(stripped.into_iter().map(RawStrippedState::Pdu).collect()))
}

async fn invite(
    state: AppState,
    req: Fed<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    if !crate::rooms::versions::can_follow(&body.room_version) {
        return Err(incompatible_version(body.room_version.clone(), "this server does not support the room's version"));
    }
    require_acl_allows(&state, &body.room_id, &origin).await?;
    let fed = &state.federation;
    let event = fed.verify_pdu(&body.room_version, &body.room_id, &body.event).await?;
    let pdu: &Pdu = &event.pdu;
    let is_invite = *pdu.kind() == ruma::events::TimelineEventType::RoomMember
        && pdu.content_value().get("membership").and_then(Value::as_str) == Some("invite");
    if pdu.event_id != body.event_id || !is_invite || pdu.sender().server_name() != origin {
        return Err(ApiError::bad_json("the invite is not an invite sent by a user of the requesting server"));
    }
    let invitee = pdu
        .state_key()
        .and_then(|k| ruma::OwnedUserId::try_from(k).ok())
        .filter(|u| u.server_name() == fed.server_name())
        .ok_or_else(|| ApiError::bad_json("the invitee is not a user of this server"))?;
    if state.db.get_user(invitee.clone()).await.map_err(FedError::from)?.is_none() {
        return Err(ApiError::not_found("the invited user does not exist"));
    }
    let rules = body.room_version.rules().ok_or_else(ApiError::internal)?;
    let mut signed: ruma::CanonicalJsonObject = serde_json::from_str(&event.json).map_err(|_| ApiError::internal())?;
    ruma::signatures::sign_event(fed.server_name().as_str(), &fed.key.keypair, &mut signed, &rules.redaction)
        .map_err(|_| ApiError::internal())?;
    // When users of this server are in the room, the invite arrives with
    // the room's other events; otherwise it is kept as a remote invite.
    let own = fed.server_name();
    let resident = state.rooms.knows_room(&body.room_id).await?
        && state.rooms.joined_members(&body.room_id).await?.iter().any(|u| u.server_name() == own);
    if !resident {
        let stripped = crate::federation::stripped_events(&body.invite_room_state);
        let stored = crate::rooms::VerifiedPdu::new(event.pdu.event_id.clone(), &body.room_id, &signed)?;
        state.rooms.store_remote_invite(&stored, &invitee, &body.room_version, stripped, vec![origin]).await?;
    }
    let raw = serde_json::value::to_raw_value(&signed).map_err(|_| ApiError::internal())?;
    Ok(create_invite::v2::Response::new(raw))
}
