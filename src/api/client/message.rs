//! Sending and reading room events (client-server API, "Sending events to
//! a room", "Getting events for a room", "Redactions").

use axum::{
    Router,
    extract::{Path, Request, State},
    routing::post,
};
use http::Method;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction as RumaDirection,
        client::{
            context::get_context,
            filter::RoomEventFilter,
            message::{get_message_events, send_message_event},
            redact::redact_event,
            room::{get_event_by_timestamp, get_room_event},
        },
    },
    events::TimelineEventType,
};
use serde_json::{Value, json};

use super::{
    delayed_events::{DELAY_PARAM, send_delayed_message},
    events::{raw_events, timeline_event, timeline_events},
};
use crate::{
    http::{ApiError, RouterExt, Ruma, RumaResponse},
    rooms::{EventDraft, EventFilter, PageRequest, PaginationToken, TxnRef},
    services::AppState,
    storage::rooms::Direction,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_with_query_variant(send, DELAY_PARAM, send_delayed_message, false)
        .ruma(messages)
        .ruma(context)
        .ruma(event)
        .ruma(timestamp_to_event)
        .ruma(redact)
        .route("/_matrix/client/r0/rooms/{room_id}/send/{event_type}", post(send_without_txn))
        .route("/_matrix/client/v3/rooms/{room_id}/send/{event_type}", post(send_without_txn))
}

/// Synapse's `POST /rooms/{roomId}/send/{eventType}`, a send without a
/// transaction id (not in the spec; older bots and Sytest use it): the
/// server picks the id, so a retry sends the event again.
async fn send_without_txn(
    State(state): State<AppState>,
    Path((room_id, event_type)): Path<(String, String)>,
    req: Request,
) -> Result<RumaResponse<send_message_event::v3::Response>, ApiError> {
    let (mut parts, body) = req.into_parts();
    parts.method = Method::PUT;
    let path = vec![room_id, event_type, ruma::TransactionId::new().to_string()];
    let req = Box::pin(Ruma::from_parts_with_path(parts, body, &state, path)).await?;
    send(state, req).await.map(RumaResponse)
}

fn txn(req_device: &ruma::OwnedDeviceId, txn_id: &ruma::TransactionId) -> TxnRef {
    TxnRef { device_id: req_device.to_string(), txn_id: txn_id.to_string() }
}

async fn send(
    state: AppState,
    req: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response, ApiError> {
    let session = req.session().clone();
    state.rate_limits.message.check(&session.user_id)?;
    let body = req.body;
    let content: Value = serde_json::from_str(body.body.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    if !content.is_object() {
        return Err(ApiError::bad_json("event content must be a JSON object"));
    }
    let kind = TimelineEventType::from(body.event_type.to_string());
    if matches!(kind.to_string().as_str(), "m.room.redaction") {
        return Err(ApiError::bad_json("use the /redact endpoint to redact events"));
    }
    let draft = EventDraft::message(kind, content);
    let pdu = state
        .rooms
        .append_local(&body.room_id, &session.user_id, draft, Some(txn(&session.device_id, &body.txn_id)))
        .await?;
    Ok(send_message_event::v3::Response::new(pdu.event_id.clone()))
}

async fn redact(state: AppState, req: Ruma<redact_event::v3::Request>) -> Result<redact_event::v3::Response, ApiError> {
    let session = req.session().clone();
    state.rate_limits.message.check(&session.user_id)?;
    let body = req.body;
    let mut content = json!({});
    if let Some(reason) = body.reason {
        content["reason"] = Value::String(reason);
    }
    let draft =
        EventDraft { kind: TimelineEventType::RoomRedaction, content, state_key: None, redacts: Some(body.event_id) };
    let pdu = state
        .rooms
        .append_local(&body.room_id, &session.user_id, draft, Some(txn(&session.device_id, &body.txn_id)))
        .await?;
    Ok(redact_event::v3::Response::new(pdu.event_id.clone()))
}

/// The part of a client's room event filter that pagination applies.
pub fn event_filter(filter: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.as_ref().map(|s| s.iter().map(|u| u.to_string()).collect()),
        not_senders: filter.not_senders.iter().map(|u| u.to_string()).collect(),
        ignored: Default::default(),
    }
}

pub(super) fn direction(dir: RumaDirection) -> Direction {
    match dir {
        RumaDirection::Backward => Direction::Backward,
        RumaDirection::Forward => Direction::Forward,
    }
}

pub(super) fn parse_token(token: Option<&str>, name: &str) -> Result<Option<PaginationToken>, ApiError> {
    token
        .map(|t| PaginationToken::parse(t).ok_or_else(|| ApiError::invalid_param(format!("invalid `{name}` token"))))
        .transpose()
}

async fn messages(
    state: AppState,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let from = parse_token(body.from.as_deref(), "from")?;
    let to = parse_token(body.to.as_deref(), "to")?;
    let limit = usize::try_from(body.limit).unwrap_or(1000);
    let mut filter = event_filter(&body.filter);
    filter.ignored = state.streams.ignored_users(&user).await?;
    let limit = body.filter.limit.map(|l| usize::try_from(l).unwrap_or(limit)).unwrap_or(limit);
    let request = PageRequest { from, to, direction: direction(body.dir), limit };
    let mut page = state.rooms.messages(&user, &body.room_id, request, &filter).await?;
    // At the start of the history this server has, ask the room's other
    // servers for older events, then read again.
    if page.end.is_none()
        && page.chunk.len() < limit
        && request.direction == Direction::Backward
        && state.federation.backfill(&body.room_id).await > 0
    {
        page = state.rooms.messages(&user, &body.room_id, request, &filter).await?;
    }
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start.to_string();
    response.end = page.end.map(|t| t.to_string());
    response.chunk = timeline_events(&state, &user, &page.chunk).await?;
    Ok(response)
}

async fn context(state: AppState, req: Ruma<get_context::v3::Request>) -> Result<get_context::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let limit = usize::try_from(body.limit).unwrap_or(10).min(100);
    let mut filter = event_filter(&body.filter);
    filter.ignored = state.streams.ignored_users(&user).await?;
    let (event, before, after, room_state) =
        state.rooms.context(&user, &body.room_id, &body.event_id, limit, &filter).await?;
    let mut response = get_context::v3::Response::new();
    response.event = Some(timeline_event(&state, &user, &event).await?);
    response.events_before = timeline_events(&state, &user, &before.chunk).await?;
    response.events_after = timeline_events(&state, &user, &after.chunk).await?;
    response.start = Some(before.end.unwrap_or(PaginationToken(0)).to_string());
    response.end = Some(after.end.unwrap_or(after.start).to_string());
    response.state = raw_events(&state, &room_state).await?;
    Ok(response)
}

async fn event(
    state: AppState,
    req: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let pdu = state.rooms.event_for_user(&user, &req.body.room_id, &req.body.event_id).await?;
    Ok(get_room_event::v3::Response::new(timeline_event(&state, &user, &pdu).await?))
}

async fn timestamp_to_event(
    state: AppState,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let ts = i64::from(req.body.ts.0);
    let pdu = state.rooms.event_near_timestamp(&user, &req.body.room_id, ts, direction(req.body.dir)).await?;
    let origin: UInt = pdu.fields.origin_server_ts.0;
    Ok(get_event_by_timestamp::v1::Response::new(pdu.event_id.clone(), MilliSecondsSinceUnixEpoch(origin)))
}
