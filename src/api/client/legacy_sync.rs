//! The legacy sync endpoints (deprecated, served as Synapse serves them,
//! since clients still preview rooms with them): `GET
//! /rooms/{roomId}/initialSync`, `GET /initialSync`, `GET /events` and `GET
//! /events/{eventId}`. Mounted by hand: ruma's types lack `limit`, the
//! presence of a room's `initialSync`, and `/events` without `room_id`.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use http::request::Parts;
use ruma::{OwnedEventId, OwnedRoomId, serde::Raw};
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::timeline_events;
use crate::{
    http::{ApiError, require_session},
    rooms::pdu::Pdu,
    services::AppState,
    sync::legacy::{EventsRequest, RoomSnapshot},
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    ["r0", "v3"].into_iter().fold(router, |router, version| {
        router
            .route(&format!("/_matrix/client/{version}/rooms/{{room_id}}/initialSync"), get(room_initial_sync))
            .route(&format!("/_matrix/client/{version}/initialSync"), get(initial_sync))
            .route(&format!("/_matrix/client/{version}/events"), get(events))
            .route(&format!("/_matrix/client/{version}/events/{{event_id}}"), get(event))
    })
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    from: Option<String>,
    room_id: Option<OwnedRoomId>,
    /// Milliseconds.
    timeout: Option<u64>,
}

fn query<T: for<'de> Deserialize<'de>>(parts: &Parts) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_param(format!("invalid query parameter: {e}")))
}

/// `GET /rooms/{roomId}/initialSync`: a room's messages, state and members'
/// presence, for a member or, when the room is world-readable, anyone
/// (Element Web's room preview; on 403 it offers to join instead).
async fn room_initial_sync(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let session = require_session(&state, &parts).await?;
    let room_id = OwnedRoomId::try_from(room_id).map_err(|_| ApiError::invalid_param("not a room id"))?;
    let LimitQuery { limit } = query(&parts)?;
    let snapshot = state.sync.room_initial_sync(&session.user_id, &room_id, limit).await?;
    Ok(Json(room_json(&state, &session.user_id, snapshot).await?))
}

async fn room_json(state: &AppState, user: &ruma::OwnedUserId, room: RoomSnapshot) -> Result<Value, ApiError> {
    let messages: Vec<Value> = with_user_id(timeline_events::<Value>(state, user, &room.messages).await?);
    let mut out = json!({
        "room_id": room.room_id,
        "messages": {"chunk": messages, "start": room.start.to_string(), "end": room.end.to_string()},
        "state": with_user_id(client_events(state, &room.state).await?),
        "presence": room.presence.iter().map(|(user, info)| crate::sync::legacy::presence_event(user, info)).collect::<Vec<_>>(),
        "receipts": [],
        "account_data": room.tags.map(|tags| vec![json!({"type": "m.tag", "content": {"tags": tags}})])
            .unwrap_or_default(),
        "visibility": if room.public { "public" } else { "private" },
    });
    if let Some(membership) = room.membership {
        out["membership"] = membership.as_str().into();
    }
    Ok(out)
}

/// The legacy endpoints' events carry their sender as `user_id` too, as
/// the r0 API's did (Synapse's "v1" event format), which their clients
/// read.
fn with_user_id<E: serde::Serialize>(events: Vec<E>) -> Vec<Value> {
    events
        .into_iter()
        .filter_map(|event| serde_json::to_value(event).ok())
        .map(|mut event| {
            if let Some(sender) = event.get("sender").cloned()
                && let Some(fields) = event.as_object_mut()
            {
                fields.entry("user_id").or_insert(sender);
            }
            event
        })
        .collect()
}

async fn client_events(state: &AppState, pdus: &[std::sync::Arc<Pdu>]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        out.push(state.rooms.client_event(pdu, None).await?);
    }
    Ok(out)
}

/// `GET /initialSync`: every room the user is in, with global account
/// data and presence.
async fn initial_sync(State(state): State<AppState>, parts: Parts) -> Result<Json<Value>, ApiError> {
    let session = require_session(&state, &parts).await?;
    let LimitQuery { limit } = query(&parts)?;
    let snapshot = state.sync.initial_sync(&session.user_id, &session.device_id, limit).await?;
    let mut rooms = Vec::with_capacity(snapshot.rooms.len());
    for room in snapshot.rooms {
        rooms.push(room_json(&state, &session.user_id, room).await?);
    }
    Ok(Json(json!({
        "end": snapshot.end.to_string(),
        "rooms": rooms,
        "presence": snapshot.presence,
        "account_data": snapshot.account_data,
        "receipts": [],
    })))
}

/// `GET /events`: new events of the user's rooms, or of the one room
/// `room_id` names (peeked into if world-readable), after `from`; waits
/// up to `timeout` for some.
async fn events(State(state): State<AppState>, parts: Parts) -> Result<Json<Value>, ApiError> {
    let session = require_session(&state, &parts).await?;
    let EventsQuery { from, room_id, timeout } = query(&parts)?;
    let request = EventsRequest {
        user_id: session.user_id.clone(),
        from,
        room_id,
        timeout: Duration::from_millis(timeout.unwrap_or(0)),
    };
    let page = state.sync.events(&request).await?;
    let mut chunk: Vec<Value> = with_user_id(timeline_events::<Value>(&state, &session.user_id, &page.chunk).await?);
    chunk.extend(page.other);
    Ok(Json(json!({"chunk": chunk, "start": page.start.to_string(), "end": page.end.to_string()})))
}

/// `GET /events/{eventId}`: one event the user may see, wherever it is.
async fn event(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    parts: Parts,
) -> Result<Json<Raw<Value>>, ApiError> {
    let session = require_session(&state, &parts).await?;
    let not_found = || ApiError::from(crate::rooms::RoomsError::NotFound("event not found".into()));
    let event_id = OwnedEventId::try_from(event_id).map_err(|_| not_found())?;
    let pdu = state.rooms.get_pdu(&event_id).await?.ok_or_else(not_found)?;
    let pdu = state.rooms.event_for_user(&session.user_id, &pdu.room, &event_id).await?;
    let mut events: Vec<Raw<Value>> = timeline_events(&state, &session.user_id, std::slice::from_ref(&pdu)).await?;
    Ok(Json(events.pop().ok_or_else(ApiError::internal)?))
}
