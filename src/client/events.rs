//! Turning PDUs into what clients see (client-server API, "Room Events":
//! the client event format with `unsigned.age`, `prev_content` and
//! `redacted_because`).

use ruma::serde::Raw;
use serde_json::Value;

use crate::{AppState, http::ApiError, rooms::pdu::Pdu};

/// The client format of an event, with the `unsigned` extras looked up.
pub async fn client_event(state: &AppState, pdu: &Pdu) -> Result<Value, ApiError> {
    let mut event = pdu.to_client_event();
    let unsigned = event
        .get_mut("unsigned")
        .and_then(Value::as_object_mut)
        .expect("to_client_event always sets unsigned");
    if let Some(replaced) = &pdu.replaces_state
        && let Some(prev) = state.rooms.get_pdu(replaced).await?
    {
        unsigned.insert("prev_content".into(), prev.content_value());
        unsigned.insert("replaces_state".into(), Value::String(replaced.to_string()));
        unsigned.insert(
            "prev_sender".into(),
            Value::String(prev.sender().to_string()),
        );
    }
    if let Some(redaction) = &pdu.redacted_by
        && let Some(because) = state.rooms.get_pdu(redaction).await?
    {
        unsigned.insert(
            "redacted_because".into(),
            Value::Object(because.to_client_event()),
        );
    }
    Ok(Value::Object(event))
}

/// Many events in client format, as ruma raw values.
pub async fn raw_events<T>(
    state: &AppState,
    pdus: &[std::sync::Arc<Pdu>],
) -> Result<Vec<Raw<T>>, ApiError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        out.push(to_raw(client_event(state, pdu).await?)?);
    }
    Ok(out)
}

pub fn to_raw<T>(value: Value) -> Result<Raw<T>, ApiError> {
    let raw = serde_json::value::to_raw_value(&value).map_err(ApiError::internal_with)?;
    Ok(Raw::from_json(raw))
}
