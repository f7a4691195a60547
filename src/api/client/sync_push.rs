//! The push transports of sync (see `docs/websocket.md`): a WebSocket that
//! carries sync frames and client requests, and Server-Sent Events per
//! MSC2108. Both call the same sync function as `GET /sync`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{
        Query, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::{SinkExt, StreamExt, stream};
use http::{StatusCode, request::Parts};
use ruma::{
    OwnedEventId, OwnedRoomId,
    api::client::sync::sync_events::v3 as sync_v3,
    events::{StateEventType, TimelineEventType},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    http::{ApiError, extract_access_token},
    rooms::{EventDraft, TxnRef},
    services::AppState,
    sync::{self, SyncRequest, SyncToken},
    users::Session,
};

pub const WEBSOCKET_PATH: &str = "/_matrix/client/unstable/io.plexus.websocket/sync";
pub const SSE_PATH: &str = "/_matrix/client/unstable/org.matrix.msc2108/sync/sse";

/// Largest frame a client may send.
const MAX_INBOUND_FRAME: usize = 64 * 1024;
/// Frames queued for a client before it counts as too slow.
const OUTBOUND_QUEUE: usize = 32;
const PING_EVERY: Duration = Duration::from_secs(30);
const IDLE_LIMIT: Duration = Duration::from_secs(90);
/// How long one push-sync round waits before checking the token again.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_IDLE: u16 = 1011;
const CLOSE_TOO_SLOW: u16 = 1013;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route(WEBSOCKET_PATH, get(websocket)).route(SSE_PATH, get(server_sent_events))
}

#[derive(Debug, Deserialize, Default)]
struct PushQuery {
    since: Option<String>,
    filter: Option<String>,
    set_presence: Option<String>,
}

/// Authenticates and validates everything before the response starts, so
/// errors are plain HTTP Matrix errors.
async fn prepare(
    state: &AppState,
    parts: &Parts,
    query: PushQuery,
    resume: Option<String>,
) -> Result<SyncRequest, ApiError> {
    let token = extract_access_token(parts)?.ok_or_else(ApiError::missing_token)?;
    let session = state.users.authenticate_token(&token).await?;
    // These transports also take sends and state changes over the socket;
    // guests sync with `GET /sync`, whose uses the guest rules cover.
    if session.is_guest {
        return Err(crate::users::UsersError::GuestAccessForbidden.into());
    }
    let since = resume.or(query.since);
    if let Some(s) = &since
        && SyncToken::parse(s).is_none()
    {
        return Err(ApiError::invalid_param("the `since` token is not valid"));
    }
    let filter = match query.filter {
        Some(f) if f.trim_start().starts_with('{') => Some(sync_v3::Filter::FilterDefinition(
            serde_json::from_str(&f).map_err(|e| ApiError::bad_json(format!("invalid filter: {e}")))?,
        )),
        other => other.map(sync_v3::Filter::FilterId),
    };
    let filter = super::sync::resolve_filter(state, &session, filter.as_ref()).await?;
    if let Some(p) = &query.set_presence
        && !crate::streams::PRESENCE_STATES.contains(&p.as_str())
    {
        return Err(ApiError::invalid_param("unknown set_presence value"));
    }
    Ok(SyncRequest {
        user_id: session.user_id,
        device_id: session.device_id,
        since,
        filter,
        full_state: false,
        set_presence: query.set_presence,
        timeout: Duration::ZERO,
    })
}

/// Serialises a sync response exactly as `GET /sync` sends it.
fn response_json(response: ruma::api::client::sync::sync_events::v3::Response) -> Result<(String, String), ApiError> {
    let body = super::sync::response_body(&response)?;
    let body = String::from_utf8(body).map_err(ApiError::internal_with)?;
    Ok((response.next_batch, body))
}

/// Runs one round of sync: the first returns at once, later ones wait.
async fn next_frame(
    state: &AppState,
    req: &mut SyncRequest,
    first: bool,
) -> Result<Option<(String, String)>, ApiError> {
    req.timeout = if first { Duration::ZERO } else { ROUND_TIMEOUT };
    let response = sync::sync(&state.sync, req).await?;
    let empty = req.since.is_some() && crate::sync::is_empty(&response);
    let (next_batch, body) = response_json(response)?;
    req.since = Some(next_batch.clone());
    req.set_presence = None; // presence is set once per connection
    Ok((first || !empty).then_some((next_batch, body)))
}

async fn websocket(
    State(state): State<AppState>,
    Query(query): Query<PushQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    parts: Parts,
) -> Response {
    let req = match prepare(&state, &parts, query, None).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::unrecognized(StatusCode::BAD_REQUEST, format!("a WebSocket upgrade is needed: {e}"))
                .into_response();
        }
    };
    let token = extract_access_token(&parts).ok().flatten().unwrap_or_default();
    // Small buffers: most sockets sit idle, and tungstenite's defaults
    // (128 KiB each way) made an idle socket cost ~100 KB of memory. The
    // read buffer is zero-filled to its capacity before every read, so all
    // of it is resident; 1 KiB holds a typical request frame, and a larger
    // frame gets the room it needs once its header is read.
    ws.protocols(["m.json"])
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(MAX_INBOUND_FRAME)
        .max_frame_size(MAX_INBOUND_FRAME)
        .on_upgrade(move |socket| run_socket(state, socket, req, token))
}

/// Why the connection ends, as a close code and reason.
type CloseReason = Option<(u16, &'static str)>;

async fn run_socket(state: AppState, socket: WebSocket, req: SyncRequest, token: String) {
    let (mut sink, mut inbound) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTBOUND_QUEUE);
    let (close_tx, mut close_rx) = watch::channel::<CloseReason>(None);
    let last_heard = Arc::new(std::sync::Mutex::new(Instant::now()));

    // Writer: queued frames, pings, and the close frame.
    let heard = last_heard.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let reason = loop {
            tokio::select! {
                biased;
                frame = out_rx.recv() => match frame {
                    Some(text) => {
                        // A client that stops reading must not hold the task forever.
                        let sent = tokio::time::timeout(IDLE_LIMIT, sink.send(Message::Text(text.into()))).await;
                        if !matches!(sent, Ok(Ok(()))) { return }
                    }
                    None => break *close_rx.borrow(),
                },
                changed = close_rx.changed() => {
                    if changed.is_err() { break None }
                    let reason = *close_rx.borrow();
                    if reason.is_some() { break reason }
                }
                _ = ping.tick() => {
                    let idle = heard.lock().map(|t| t.elapsed()).unwrap_or_default();
                    if idle > IDLE_LIMIT { break Some((CLOSE_IDLE, "no response to pings")) }
                    if sink.send(Message::Ping(Default::default())).await.is_err() { return }
                }
            }
        };
        if let Some((code, reason)) = reason {
            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
        }
        let _ = sink.close().await;
    });

    // Sync producer.
    let sync_task = {
        let (state, out_tx, close_tx) = (state.clone(), out_tx.clone(), close_tx.clone());
        let mut req = req.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if state.users.authenticate_token(&token).await.is_err() {
                    let _ = close_tx.send(Some((CLOSE_POLICY, "the access token is no longer valid")));
                    return;
                }
                match next_frame(&state, &mut req, first).await {
                    Ok(Some((_, body))) => {
                        if out_tx.try_send(body).is_err() {
                            let _ = close_tx.send(Some((CLOSE_TOO_SLOW, "client too slow")));
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = ?e, "websocket sync failed");
                        let _ = close_tx.send(Some((CLOSE_IDLE, "sync failed")));
                        return;
                    }
                }
                first = false;
            }
        })
    };

    // Reader: requests, pongs, close.
    let session = Session {
        user_id: req.user_id.clone(),
        device_id: req.device_id.clone(),
        is_admin: false,
        is_guest: false,
        appservice_id: None,
    };
    while let Some(message) = inbound.next().await {
        if let Ok(mut t) = last_heard.lock() {
            *t = Instant::now();
        }
        match message {
            Ok(Message::Text(text)) => {
                let (state, session, out_tx, close_tx) =
                    (state.clone(), session.clone(), out_tx.clone(), close_tx.clone());
                tokio::spawn(async move {
                    let reply = handle_frame(&state, &session, text.as_str()).await;
                    if out_tx.try_send(reply.to_string()).is_err() {
                        let _ = close_tx.send(Some((CLOSE_TOO_SLOW, "client too slow")));
                    }
                });
            }
            Ok(Message::Binary(_)) => {
                let reply =
                    json!({"id": null, "error": {"errcode": "M_NOT_JSON", "error": "frames must be JSON text"}});
                let _ = out_tx.try_send(reply.to_string());
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                let too_big =
                    e.to_string().to_lowercase().contains("too long") || e.to_string().to_lowercase().contains("size");
                if too_big {
                    let _ = close_tx.send(Some((CLOSE_TOO_BIG, "frame too large")));
                }
                break;
            }
        }
    }
    sync_task.abort();
    // Copy the reason out first: holding the borrow while sending would
    // deadlock on the watch channel's lock.
    let reason = *close_tx.borrow();
    let _ = close_tx.send(reason.or(Some((1000, "bye"))));
    drop(out_tx);
    let _ = writer.await;
}

#[derive(Deserialize)]
struct RequestFrame {
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

/// Answers one request frame with `{"id", "result"}` or `{"id", "error"}`.
async fn handle_frame(state: &AppState, session: &Session, text: &str) -> Value {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return json!({"id": null, "error": {"errcode": "M_NOT_JSON", "error": e.to_string()}}),
    };
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let frame: RequestFrame = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => return json!({"id": id, "error": ApiError::bad_json(e.to_string()).body_json()}),
    };
    let id_text = match &frame.id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return json!({"id": frame.id, "error": ApiError::bad_json("`id` must be a string or number").body_json()}),
    };
    match call(state, session, &id_text, &frame.method, frame.params).await {
        Ok(result) => json!({"id": frame.id, "result": result}),
        Err(e) => json!({"id": frame.id, "error": e.body_json()}),
    }
}

fn param<T: for<'de> Deserialize<'de>>(params: &Value, name: &str) -> Result<T, ApiError> {
    let value = params.get(name).cloned().ok_or_else(|| ApiError::bad_json(format!("missing param `{name}`")))?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_json(format!("param `{name}`: {e}")))
}

fn optional<T: for<'de> Deserialize<'de>>(params: &Value, name: &str) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone()).map(Some).map_err(|e| ApiError::bad_json(format!("param `{name}`: {e}")))
        }
    }
}

async fn call(state: &AppState, session: &Session, id: &str, method: &str, params: Value) -> Result<Value, ApiError> {
    let user = &session.user_id;
    match method {
        "ping" => Ok(json!({})),
        "send" => {
            state.rate_limits.message.check(user)?;
            let room: OwnedRoomId = param(&params, "room_id")?;
            let kind: String = param(&params, "event_type")?;
            let content: Value = param(&params, "content")?;
            if kind == "m.room.redaction" {
                return Err(ApiError::bad_json("redactions are not sent with `send`"));
            }
            let txn = TxnRef { device_id: session.device_id.to_string(), txn_id: id.to_owned() };
            let pdu = state
                .rooms
                .append_local(&room, user, EventDraft::message(TimelineEventType::from(kind), content), Some(txn))
                .await?;
            Ok(json!({"event_id": pdu.event_id}))
        }
        "state" => {
            state.rate_limits.message.check(user)?;
            let room: OwnedRoomId = param(&params, "room_id")?;
            let kind: String = param(&params, "event_type")?;
            let key: String = optional(&params, "state_key")?.unwrap_or_default();
            let content: Value = param(&params, "content")?;
            let pdu = state
                .rooms
                .append_local(&room, user, EventDraft::state(StateEventType::from(kind), key, content), None)
                .await?;
            Ok(json!({"event_id": pdu.event_id}))
        }
        "typing" => {
            let room: OwnedRoomId = param(&params, "room_id")?;
            let typing: bool = param(&params, "typing")?;
            let timeout: u64 = optional(&params, "timeout")?.unwrap_or(30_000);
            state.streams.typing.set(&room, user, typing.then(|| Duration::from_millis(timeout))).await?;
            Ok(json!({}))
        }
        "read_markers" => {
            let room: OwnedRoomId = param(&params, "room_id")?;
            let fully_read: Option<OwnedEventId> = optional(&params, "m.fully_read")?;
            let read: Option<OwnedEventId> = optional(&params, "m.read")?;
            let private: Option<OwnedEventId> = optional(&params, "m.read.private")?;
            state.streams.set_read_markers(user, &room, fully_read.as_ref(), read.as_ref(), private.as_ref()).await?;
            Ok(json!({}))
        }
        "presence" => {
            let presence: String = param(&params, "presence")?;
            let status: Option<String> = optional(&params, "status_msg")?;
            state.streams.set_presence(user, &presence, status).await?;
            Ok(json!({}))
        }
        other => Err(ApiError::unrecognized(StatusCode::BAD_REQUEST, format!("unknown method `{other}`"))),
    }
}

async fn server_sent_events(State(state): State<AppState>, Query(query): Query<PushQuery>, parts: Parts) -> Response {
    let resume = parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let req = match prepare(&state, &parts, query, resume).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let events = stream::unfold((state, req, true), |(state, mut req, first)| async move {
        loop {
            match next_frame(&state, &mut req, first).await {
                Ok(Some((next_batch, body))) => {
                    let event = Event::default().id(next_batch).event("sync").data(body);
                    return Some((Ok::<_, Infallible>(event), (state, req, false)));
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = ?e, "server-sent events sync failed");
                    return None;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")).into_response()
}
