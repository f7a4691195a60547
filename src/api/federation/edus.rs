//! Ephemeral data units from other servers (server-server API, "EDUs"):
//! typing notices, read receipts, presence, to-device messages and device
//! list updates, applied through the domain services. EDUs are best
//! effort: what does not check out is dropped.

use std::time::Duration;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, ServerName};
use serde_json::Value;

use crate::services::AppState;

/// How long a remote typing notice lasts unless renewed (Synapse uses 30 s).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the room's server ACL lets `origin` send EDUs about it
/// (server-server API, "Server ACLs": typing and receipts of denied
/// servers are dropped).
async fn acl_allows(state: &AppState, room: &RoomId, origin: &ServerName) -> bool {
    state.rooms.server_allowed(room, origin).await.unwrap_or(false)
}

/// Applies one EDU from `origin`. EDUs are best effort: what does not
/// check out is dropped.
pub async fn receive_edu(state: &AppState, origin: &ServerName, edu: Value) {
    let content = edu.get("content").cloned().unwrap_or(Value::Null);
    match edu.get("edu_type").and_then(Value::as_str) {
        Some("m.typing") => {
            let room = content.get("room_id").and_then(Value::as_str).and_then(|r| OwnedRoomId::try_from(r).ok());
            let user = content.get("user_id").and_then(Value::as_str).and_then(|u| OwnedUserId::try_from(u).ok());
            let (Some(room), Some(user)) = (room, user) else { return };
            if user.server_name() != origin || !acl_allows(state, &room, origin).await {
                return;
            }
            let typing = content.get("typing").and_then(Value::as_bool).unwrap_or(false);
            let timeout = typing.then_some(REMOTE_TYPING_TIMEOUT);
            if let Err(e) = state.streams.typing.set(&room, &user, timeout).await {
                tracing::debug!(%room, %user, error = %e, "dropped a typing EDU");
            }
        }
        Some("m.receipt") => {
            let Value::Object(rooms) = content else { return };
            for (room, receipts) in rooms {
                let Ok(room) = OwnedRoomId::try_from(room.as_str()) else { continue };
                if !acl_allows(state, &room, origin).await {
                    continue;
                }
                let Some(Value::Object(users)) = receipts.get("m.read") else { continue };
                for (user, receipt) in users {
                    let Ok(user) = OwnedUserId::try_from(user.as_str()) else { continue };
                    if user.server_name() != origin {
                        continue;
                    }
                    let thread = receipt.pointer("/data/thread_id").and_then(Value::as_str).map(str::to_owned);
                    let Some(ids) = receipt.get("event_ids").and_then(Value::as_array) else { continue };
                    for id in ids.iter().filter_map(Value::as_str).filter_map(|i| OwnedEventId::try_from(i).ok()) {
                        if let Err(e) = state.streams.set_receipt(&user, &room, "m.read", &id, thread.clone()).await {
                            tracing::debug!(%room, %user, error = %e, "dropped a receipt EDU");
                        }
                    }
                }
            }
        }
        Some("m.presence") => {
            let Some(Value::Array(updates)) = content.get("push") else { return };
            for update in updates {
                let user = update.get("user_id").and_then(Value::as_str).and_then(|u| OwnedUserId::try_from(u).ok());
                let (Some(user), Some(presence)) = (user, update.get("presence").and_then(Value::as_str)) else {
                    continue;
                };
                if user.server_name() != origin {
                    continue;
                }
                let status = update.get("status_msg").and_then(Value::as_str).map(str::to_owned);
                let ago = update.get("last_active_ago").and_then(Value::as_u64).unwrap_or(0);
                if let Err(e) = state.streams.store_remote_presence(&user, presence, status, ago).await {
                    tracing::debug!(%origin, %user, error = %e, "dropped a presence EDU");
                }
            }
        }
        Some("m.direct_to_device") => {
            let sender = content.get("sender").and_then(Value::as_str).and_then(|u| OwnedUserId::try_from(u).ok());
            let (Some(sender), Some(kind), Some(message_id), Some(Value::Object(users))) = (
                sender,
                content.get("type").and_then(Value::as_str),
                content.get("message_id").and_then(Value::as_str),
                content.get("messages"),
            ) else {
                return;
            };
            if sender.server_name() != origin {
                return;
            }
            let own = &state.config.server.server_name;
            let mut messages = Vec::new();
            for (user, devices) in users {
                let Ok(user) = OwnedUserId::try_from(user.as_str()) else { continue };
                let Value::Object(devices) = devices else { continue };
                if user.server_name() != own {
                    continue;
                }
                for (device, body) in devices {
                    if body.is_object() {
                        messages.push((user.to_string(), device.clone(), kind.to_owned(), body.to_string()));
                    }
                }
            }
            // The message id is the transaction: a retried EDU is queued once.
            let message_id = format!("{origin}:{message_id}");
            if let Err(e) = state.e2ee.receive_remote_to_device(&sender, &message_id, messages).await {
                tracing::info!(%origin, error = %e, "dropped a to-device EDU");
            }
        }
        Some("m.device_list_update" | "m.signing_key_update") => {
            let user = content
                .get("user_id")
                .or_else(|| content.pointer("/master_key/user_id"))
                .or_else(|| content.pointer("/self_signing_key/user_id"))
                .and_then(Value::as_str)
                .and_then(|u| OwnedUserId::try_from(u).ok());
            let Some(user) = user.filter(|u| u.server_name() == origin) else { return };
            if let Err(e) = state.e2ee.remote_device_change(&user).await {
                tracing::info!(%origin, error = %e, "dropped a device list update");
            }
        }
        Some(other) => tracing::debug!(%origin, edu_type = other, "ignored an EDU type"),
        None => {}
    }
}
