//! Delayed events (MSC4140, unstable `org.matrix.msc4140`): `PUT .../send`
//! and `.../state` with `org.matrix.msc4140.delay` schedule an event and
//! answer with a `delay_id` (mounted by `message` and `state` on their own
//! paths); `GET /delayed_events` lists the caller's; `POST
//! /delayed_events/{delay_id}` with an `action` in the body, or
//! `POST /delayed_events/{delay_id}/{action}`, restarts, cancels or sends one.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path, Request, State},
    routing::{get, post},
};
use ruma::api::client::{
    delayed_events::{delayed_message_event, delayed_state_event, update_delayed_event},
    message::send_message_event,
    state::send_state_event,
};
use serde_json::{Value, json};

use crate::{
    delayed::{DelayedAction, DelayedEventRequest},
    http::{ApiError, RouterExt, Ruma, extract_access_token},
    services::AppState,
    storage::delayed_events::{DelayedEventRow, DelayedStatus},
    users::Session,
};

/// The query parameter that makes a send a delayed one.
pub(super) const DELAY_PARAM: &str = "org.matrix.msc4140.delay";

const PREFIX: &str = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(update_with_action_in_body)
        .route(PREFIX, get(list))
        .route(&format!("{PREFIX}/{{delay_id}}/{{action}}"), post(update_with_action_in_path))
}

/// The delay in milliseconds, from the query parameter's value.
fn delay_ms(value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| ApiError::invalid_param(format!("`{DELAY_PARAM}` must be a number of milliseconds")))
}

fn content_of(body: &str) -> Result<Value, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError::bad_json(e.to_string()))
}

/// `PUT /rooms/{roomId}/send/{eventType}/{txnId}?org.matrix.msc4140.delay=`.
pub(super) async fn send_delayed_message(
    state: AppState,
    req: Ruma<send_message_event::v3::Request>,
    delay: String,
) -> Result<delayed_message_event::unstable::Response, ApiError> {
    let session = req.session().clone();
    state.rate_limits.message.check(&session.user_id)?;
    let body = req.body;
    let request = DelayedEventRequest {
        room_id: body.room_id,
        kind: body.event_type.to_string(),
        state_key: None,
        content: content_of(body.body.json().get())?,
        delay_ms: delay_ms(&delay)?,
        txn_id: Some(body.txn_id.to_string()),
    };
    let delay_id = state.delayed.schedule(&session.user_id, &session.device_id, request).await?;
    Ok(delayed_message_event::unstable::Response::new(delay_id))
}

/// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}?org.matrix.msc4140.delay=`.
pub(super) async fn send_delayed_state(
    state: AppState,
    req: Ruma<send_state_event::v3::Request>,
    delay: String,
) -> Result<delayed_state_event::unstable::Response, ApiError> {
    let session = req.session().clone();
    state.rate_limits.message.check(&session.user_id)?;
    let body = req.body;
    let request = DelayedEventRequest {
        room_id: body.room_id,
        kind: body.event_type.to_string(),
        state_key: Some(body.state_key),
        content: content_of(body.body.json().get())?,
        delay_ms: delay_ms(&delay)?,
        txn_id: None,
    };
    let delay_id = state.delayed.schedule(&session.user_id, &session.device_id, request).await?;
    Ok(delayed_state_event::unstable::Response::new(delay_id))
}

/// `POST /delayed_events/{delay_id}` with `{"action": ...}` (the earlier
/// form of MSC4140, which matrix-js-sdk falls back to).
async fn update_with_action_in_body(
    state: AppState,
    req: Ruma<update_delayed_event::unstable::Request>,
) -> Result<update_delayed_event::unstable::Response, ApiError> {
    state.rate_limits.delayed_event_management.check(&req.session().user_id.to_string())?;
    let action = DelayedAction::parse(req.body.action.as_str())
        .ok_or_else(|| ApiError::invalid_param("`action` must be one of `restart`, `cancel` or `send`"))?;
    state.delayed.act(&req.body.delay_id, action).await?;
    Ok(update_delayed_event::unstable::Response::new())
}

/// `POST /delayed_events/{delay_id}/{action}`. No access token is needed:
/// knowing the delay id is what allows it (MSC4140, "Delegating delayed
/// events"). Rate-limited per user when a token comes, else per address.
async fn update_with_action_in_path(
    State(state): State<AppState>,
    Path((delay_id, action)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, _) = req.into_parts();
    let session = optional_session(&state, &parts).await?;
    let key = match &session {
        Some(session) => session.user_id.to_string(),
        None => client_ip(&parts),
    };
    state.rate_limits.delayed_event_management.check(&key)?;
    let action = DelayedAction::parse(&action).ok_or_else(|| {
        ApiError::unrecognized(http::StatusCode::NOT_FOUND, "unknown delayed event action (restart, cancel or send)")
    })?;
    state.delayed.act(&delay_id, action).await?;
    Ok(Json(json!({})))
}

/// `GET /delayed_events`: the caller's scheduled delayed events and the
/// outcome of those finalised lately, in matrix-js-sdk's shape
/// (`scheduled`, `finalised`), with the scheduled ones also under
/// `delayed_events`, as Synapse answers.
async fn list(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (parts, _) = req.into_parts();
    let session = optional_session(&state, &parts).await?.ok_or_else(ApiError::missing_token)?;
    state.rate_limits.delayed_event_management.check(&session.user_id.to_string())?;
    let mut pending = None;
    let mut delay_ids = Vec::new();
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match &*key {
            "status" => {
                pending = Some(match &*value {
                    "scheduled" => true,
                    "finalised" => false,
                    _ => return Err(ApiError::invalid_param("`status` must be `scheduled` or `finalised`")),
                })
            }
            "delay_id" => delay_ids.push(value.into_owned()),
            // Every delayed event fits one page: no `next_batch` is ever
            // handed out, so no `from` can be valid.
            "from" => return Err(ApiError::invalid_param("unknown `from` token")),
            _ => {}
        }
    }
    let rows = state.delayed.list(&session.user_id, pending, delay_ids).await?;
    let (scheduled, finalised): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.status.is_pending());
    let scheduled: Vec<Value> = scheduled.into_iter().map(item).collect();
    let finalised: Vec<Value> = finalised.into_iter().map(finalised_item).collect();
    Ok(Json(json!({ "scheduled": scheduled, "finalised": finalised, "delayed_events": scheduled })))
}

/// A delayed event as MSC4140 lists it.
fn item(row: &DelayedEventRow) -> Value {
    let mut item = json!({
        "delay_id": row.delay_id,
        "room_id": row.room_id,
        "type": row.kind,
        "delay": row.delay_ms,
        "running_since": row.running_since,
        "content": serde_json::from_str::<Value>(&row.content).unwrap_or_else(|_| json!({})),
    });
    if let Some(key) = &row.state_key {
        item["state_key"] = json!(key);
    }
    item
}

fn finalised_item(row: &DelayedEventRow) -> Value {
    let outcome = if row.status == DelayedStatus::Sent { "send" } else { "cancel" };
    let mut finalised = json!({
        "delayed_event": item(row),
        "outcome": outcome,
        "reason": row.reason.as_deref().unwrap_or("error"),
    });
    if let Some(error) = row.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
        finalised["error"] = error;
    }
    if let Some(event_id) = &row.event_id {
        finalised["event_id"] = json!(event_id);
    }
    if let Some(ts) = row.finalised_ts {
        finalised["origin_server_ts"] = json!(ts);
    }
    finalised
}

/// The caller, if the request carries an access token (which must be valid).
async fn optional_session(state: &AppState, parts: &http::request::Parts) -> Result<Option<Session>, ApiError> {
    match extract_access_token(parts)? {
        Some(token) => Ok(Some(state.users.authenticate_token(&token).await?)),
        None => Ok(None),
    }
}

fn client_ip(parts: &http::request::Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}
