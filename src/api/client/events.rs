//! Turning PDUs into what clients see (client-server API, "Room Events":
//! the client event format with `unsigned.age`, `prev_content` and
//! `redacted_because`, bundled aggregations).

use ruma::serde::Raw;
use serde_json::Value;

use crate::{http::ApiError, rooms::pdu::Pdu, services::AppState};

/// The client format of an event, with the `unsigned` extras looked up.
pub async fn client_event(state: &AppState, pdu: &Pdu) -> Result<Value, ApiError> {
    Ok(state.rooms.client_event(pdu, None).await?)
}

/// Many events in client format, as ruma raw values.
pub async fn raw_events<T>(state: &AppState, pdus: &[std::sync::Arc<Pdu>]) -> Result<Vec<Raw<T>>, ApiError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        out.push(to_raw(client_event(state, pdu).await?)?);
    }
    Ok(out)
}

/// Timeline events in client format with their bundled aggregations
/// (`unsigned.m.relations`) as `user` sees them, read in one batch.
pub async fn timeline_events<T>(
    state: &AppState,
    user: &ruma::OwnedUserId,
    pdus: &[std::sync::Arc<Pdu>],
) -> Result<Vec<Raw<T>>, ApiError> {
    state.rooms.client_events(pdus, user, None).await?.into_iter().map(to_raw).collect()
}

/// One timeline event in client format with its bundled aggregations.
pub async fn timeline_event<T>(
    state: &AppState,
    user: &ruma::OwnedUserId,
    pdu: &std::sync::Arc<Pdu>,
) -> Result<Raw<T>, ApiError> {
    let mut events = timeline_events(state, user, std::slice::from_ref(pdu)).await?;
    events.pop().ok_or_else(ApiError::internal)
}

pub fn to_raw<T>(value: Value) -> Result<Raw<T>, ApiError> {
    let raw = serde_json::value::to_raw_value(&value).map_err(ApiError::internal_with)?;
    Ok(Raw::from_json(raw))
}
