//! Room state (client-server API, "Getting events for a room: state",
//! "Sending events to a room: state").

use axum::Router;
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use serde_json::Value;

use super::{
    delayed_events::{DELAY_PARAM, send_delayed_state},
    events::{client_event, raw_events},
};
use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(get_all).ruma_with_empty_last(get_one).ruma_with_query_variant(
        put,
        DELAY_PARAM,
        send_delayed_state,
        true,
    )
}

async fn get_all(
    state: AppState,
    req: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let room_state = state.rooms.readable_state(&user, &req.body.room_id).await?;
    let events = state.rooms.state_events(&room_state).await?;
    Ok(get_state_events::v3::Response::new(raw_events(&state, &events).await?))
}

async fn get_one(
    state: AppState,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let room_state = state.rooms.readable_state(&user, &body.room_id).await?;
    let id = room_state
        .get(&(body.event_type.clone(), body.state_key.clone()))
        .ok_or_else(|| ApiError::not_found("no such state event"))?;
    let pdu = state.rooms.get_pdu(id).await?.ok_or_else(|| ApiError::not_found("no such state event"))?;
    let value = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => client_event(&state, &pdu).await?,
        _ => pdu.content_value(),
    };
    let raw = serde_json::value::to_raw_value(&value).map_err(ApiError::internal_with)?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

async fn put(
    state: AppState,
    req: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response, ApiError> {
    let session = req.session().clone();
    state.rate_limits.message.check(&session.user_id)?;
    let body = req.body;
    let content: Value = serde_json::from_str(body.body.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let pdu = state.rooms.send_state(&body.room_id, &session.user_id, body.event_type, body.state_key, content).await?;
    Ok(send_state_event::v3::Response::new(pdu.event_id.clone()))
}
