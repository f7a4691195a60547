//! The resident server's side of membership over federation (server-server
//! API, "Joining Rooms", "Leaving Rooms (Rejecting Invites)", "Knocking
//! Upon a Room", "Inviting to a Room"): templates for the joining server to
//! sign, the signed events it sends back, and invites of this server's
//! users, which this server signs.

use axum::{Json, Router, extract::State, routing::put};
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
    events::room::member::MembershipState,
};

use super::{Fed, FedRaw, mount};
use crate::{
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
    let router = mount(router, invite);
    // The v1 forms older servers send (deprecated; answered `[200, body]`).
    router
        .route("/_matrix/federation/v1/send_join/{room_id}/{event_id}", put(send_join_v1))
        .route("/_matrix/federation/v1/send_leave/{room_id}/{event_id}", put(send_leave_v1))
        .route("/_matrix/federation/v1/invite/{room_id}/{event_id}", put(invite_v1))
}

/// A v1 answer: `[200, body]`.
fn v1_answer(body: impl serde::Serialize) -> Result<Json<serde_json::Value>, ApiError> {
    let body = serde_json::to_value(body).map_err(ApiError::internal_with)?;
    Ok(Json(serde_json::json!([200, body])))
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
    membership: MembershipState,
) -> Result<(ruma::RoomVersionId, ruma::CanonicalJsonObject), ApiError> {
    if user_id.server_name() != origin {
        return Err(ApiError::forbidden("the user does not belong to the requesting server"));
    }
    if !state.rooms.knows_room(room_id).await? {
        return Err(ApiError::not_found("this server does not know the room"));
    }
    // A server whose users all left cannot vouch for the room's state, nor
    // send a join on: the joining server must ask another (as Synapse;
    // Sytest "Inbound /make_join rejects attempts to join rooms where all
    // users have left").
    let joining = matches!(membership, MembershipState::Join | MembershipState::Knock);
    if joining && !state.rooms.is_resident(room_id).await? {
        return Err(ApiError::not_found("no user of this server is in the room any more"));
    }
    state.rooms.require_server_allowed(room_id, origin).await?;
    Ok(state.rooms.make_membership_template(room_id, user_id, membership).await?)
}

async fn make_join(
    state: AppState,
    req: Fed<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let (version, template) =
        membership_template(&state, &origin, &body.room_id, &body.user_id, MembershipState::Join).await?;
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
    membership: MembershipState,
) -> Result<crate::rooms::VerifiedPdu, ApiError> {
    if !state.rooms.knows_room(room_id).await? {
        return Err(ApiError::not_found("this server does not know the room"));
    }
    state.rooms.require_server_allowed(room_id, origin).await?;
    let version = state.rooms.room_version(room_id).await?;
    let event = state.federation.verify_pdu(&version, room_id, raw).await?;
    let pdu: &Pdu = &event.pdu;
    if pdu.event_id != event_id || pdu.room != room_id {
        return Err(ApiError::bad_json("the event does not match the request"));
    }
    let is_membership =
        pdu.state_key() == Some(pdu.sender().as_str()) && pdu.membership().as_ref() == Some(&membership);
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
    membership: MembershipState,
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
    let room_state = accept_join(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await?;
    Ok(create_join_event::v2::Response::new(room_state))
}

/// `PUT /_matrix/federation/v1/send_join`: the v2 request under v1, whose
/// answer also names the resident server (`origin`).
async fn send_join_v1(
    State(state): State<AppState>,
    req: Fed<create_join_event::v2::Request>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let room_state = accept_join(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await?;
    let mut answer = serde_json::to_value(room_state).map_err(ApiError::internal_with)?;
    if let Some(obj) = answer.as_object_mut() {
        obj.insert("origin".into(), state.federation.server_name().as_str().into());
    }
    v1_answer(answer)
}

/// Accepts the join event of a user of `origin` and returns what the
/// joining server needs: the state before the join and its auth chain.
async fn accept_join(
    state: &AppState,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    pdu: &serde_json::value::RawValue,
) -> Result<create_join_event::v2::RoomState, ApiError> {
    let event = verified_membership(state, origin, room_id, event_id, pdu, MembershipState::Join).await?;
    // The state the joining server needs is the state before the join.
    let state_before: Vec<OwnedEventId> = state.rooms.current_state(room_id).await?.values().cloned().collect();
    let event_json = event.json.clone();
    accept_membership(state, origin, event, MembershipState::Join).await?;
    let mut chain_of = state_before.clone();
    chain_of.push(event_id.to_owned());
    let chain = state.rooms.auth_chain(&chain_of).await?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = state.rooms.pdu_jsons(&state_before).await?;
    room_state.auth_chain = state.rooms.pdu_jsons(&chain).await?;
    room_state.event = serde_json::value::RawValue::from_string(event_json).ok();
    let mut servers: Vec<String> =
        state.federation.room_servers(room_id).await?.into_iter().map(|s| s.to_string()).collect();
    servers.push(state.federation.server_name().to_string());
    room_state.servers_in_room = Some(servers);
    Ok(room_state)
}

async fn make_leave(
    state: AppState,
    req: Fed<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let (version, template) =
        membership_template(&state, &origin, &body.room_id, &body.user_id, MembershipState::Leave).await?;
    let raw = serde_json::value::to_raw_value(&template).map_err(|_| ApiError::internal())?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), raw))
}

async fn send_leave(
    state: AppState,
    req: Fed<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    accept_leave(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await?;
    Ok(create_leave_event::v2::Response::new())
}

/// `PUT /_matrix/federation/v1/send_leave`: the v2 request under v1.
async fn send_leave_v1(
    State(state): State<AppState>,
    req: Fed<create_leave_event::v2::Request>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    accept_leave(&state, &origin, &body.room_id, &body.event_id, &body.pdu).await?;
    v1_answer(serde_json::json!({}))
}

async fn accept_leave(
    state: &AppState,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    pdu: &serde_json::value::RawValue,
) -> Result<(), ApiError> {
    let event = verified_membership(state, origin, room_id, event_id, pdu, MembershipState::Leave).await?;
    accept_membership(state, origin, event, MembershipState::Leave).await
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
    let (version, template) =
        membership_template(&state, &origin, &body.room_id, &body.user_id, MembershipState::Knock).await?;
    let raw = serde_json::value::to_raw_value(&template).map_err(|_| ApiError::internal())?;
    Ok(prepare_knock_event::v1::Response::new(version, raw))
}

async fn send_knock(
    state: AppState,
    req: Fed<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response, ApiError> {
    let origin = req.origin().to_owned();
    let body = req.body;
    let event =
        verified_membership(&state, &origin, &body.room_id, &body.event_id, &body.pdu, MembershipState::Knock).await?;
    let knocker = event.pdu.sender().to_owned();
    accept_membership(&state, &origin, event, MembershipState::Knock).await?;
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
    let signed = state
        .federation
        .receive_invite(
            &origin,
            &body.room_id,
            &body.event_id,
            &body.room_version,
            &body.event,
            &body.invite_room_state,
        )
        .await?;
    let raw = serde_json::value::to_raw_value(&signed).map_err(|_| ApiError::internal())?;
    Ok(create_invite::v2::Response::new(raw))
}

/// `PUT /_matrix/federation/v1/invite`: the body is the invite event
/// itself, the stripped state in its `unsigned.invite_room_state`. It
/// names no room version: servers that send it know only versions 1 and
/// 2, which differ in state resolution alone, so a room unknown here is
/// taken to be of version 1 (as Synapse does).
async fn invite_v1(State(state): State<AppState>, req: FedRaw) -> Result<Json<serde_json::Value>, ApiError> {
    let room_id: ruma::OwnedRoomId = req.param("room_id")?;
    let event_id: OwnedEventId = req.param("event_id")?;
    let event: Box<serde_json::value::RawValue> =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_json(format!("the invite event: {e}")))?;
    let stripped = invite_room_state_of(&event);
    let version = match state.rooms.knows_room(&room_id).await? {
        true => state.rooms.room_version(&room_id).await?,
        false => ruma::RoomVersionId::V1,
    };
    let signed = state.federation.receive_invite(&req.origin, &room_id, &event_id, &version, &event, &stripped).await?;
    v1_answer(serde_json::json!({ "event": signed }))
}

/// The stripped state an invite event carries in `unsigned` (v1 `/invite`).
fn invite_room_state_of(event: &serde_json::value::RawValue) -> Vec<RawStrippedState> {
    #[derive(serde::Deserialize)]
    struct Unsigned {
        #[serde(default)]
        invite_room_state: Vec<Box<serde_json::value::RawValue>>,
    }
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(default)]
        unsigned: Option<Unsigned>,
    }
    serde_json::from_str::<Event>(event.get())
        .ok()
        .and_then(|e| e.unsigned)
        .map(|u| u.invite_room_state.into_iter().map(RawStrippedState::Pdu).collect())
        .unwrap_or_default()
}
