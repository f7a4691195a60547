//! Ephemeral data units from other servers (server-server API, "EDUs"):
//! typing notices, read receipts, presence, to-device messages and device
//! list updates, parsed into ruma's `Edu` and applied through the domain
//! services. EDUs are best effort: what does not parse or check out is
//! dropped, and EDU types this server does not know are ignored.

use std::time::Duration;

use ruma::{
    RoomId, ServerName,
    api::federation::transactions::edu::{DirectDeviceContent, Edu, PresenceContent, ReceiptContent, TypingContent},
    serde::Raw,
};

use crate::services::AppState;

/// How long a remote typing notice lasts unless renewed (Synapse uses 30 s).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the room's server ACL lets `origin` send EDUs about it
/// (server-server API, "Server ACLs": typing and receipts of denied
/// servers are dropped).
async fn acl_allows(state: &AppState, room: &RoomId, origin: &ServerName) -> bool {
    state.rooms.server_allowed(room, origin).await.unwrap_or(false)
}

/// Applies one EDU from `origin`.
/// Whether an EDU is applied before the PDUs of its transaction: to-device
/// messages and device list updates carry what clients need to read the
/// room events sent after them (room keys, new devices), so a sync must not
/// hand out those events first. Typing and receipts may name the
/// transaction's events, so they come after.
pub fn applies_before_pdus(edu: &Raw<Edu>) -> bool {
    matches!(
        edu.get_field::<String>("edu_type").ok().flatten().as_deref(),
        Some("m.direct_to_device" | "m.device_list_update" | "m.signing_key_update")
    )
}

pub async fn receive_edu(state: &AppState, origin: &ServerName, edu: &Raw<Edu>) {
    let edu = match edu.deserialize() {
        Ok(edu) => edu,
        Err(e) => {
            tracing::debug!(%origin, error = %e, "dropped an EDU that does not parse");
            return;
        }
    };
    match edu {
        Edu::Typing(content) => typing(state, origin, content).await,
        Edu::Receipt(content) => receipts(state, origin, content).await,
        Edu::Presence(content) => presence(state, origin, content).await,
        Edu::DirectToDevice(content) => to_device(state, origin, content).await,
        Edu::DeviceListUpdate(update) => {
            if update.user_id.server_name() == origin {
                state.federation.receive_device_list_update(update).await;
            }
        }
        Edu::SigningKeyUpdate(update) => {
            if update.user_id.server_name() == origin {
                state.federation.receive_signing_key_update(update).await;
            }
        }
        _ => tracing::debug!(%origin, "ignored an EDU type"),
    }
}

async fn typing(state: &AppState, origin: &ServerName, content: TypingContent) {
    let TypingContent { room_id: room, user_id: user, typing, .. } = content;
    if user.server_name() != origin || !acl_allows(state, &room, origin).await {
        return;
    }
    let timeout = typing.then_some(REMOTE_TYPING_TIMEOUT);
    if let Err(e) = state.streams.typing.set(&room, &user, timeout).await {
        tracing::debug!(%room, %user, error = %e, "dropped a typing EDU");
    }
}

async fn receipts(state: &AppState, origin: &ServerName, content: ReceiptContent) {
    for (room, receipts) in content.receipts {
        if !acl_allows(state, &room, origin).await {
            continue;
        }
        for (user, receipt) in receipts.read {
            if user.server_name() != origin {
                continue;
            }
            let thread = receipt.data.thread.as_str().map(str::to_owned);
            for id in &receipt.event_ids {
                if let Err(e) = state.streams.set_receipt(&user, &room, "m.read", id, thread.clone()).await {
                    tracing::debug!(%room, %user, error = %e, "dropped a receipt EDU");
                }
            }
        }
    }
}

/// Presence is taken from a server only for its own users.
async fn presence(state: &AppState, origin: &ServerName, content: PresenceContent) {
    for update in content.push {
        if update.user_id.server_name() != origin {
            continue;
        }
        let (user, ago) = (&update.user_id, u64::from(update.last_active_ago));
        let presence = update.presence.as_str();
        if let Err(e) = state.streams.store_remote_presence(user, presence, update.status_msg.clone(), ago).await {
            tracing::debug!(%origin, %user, error = %e, "dropped a presence EDU");
        }
    }
}

/// To-device messages of a user of `origin` for devices of this server.
async fn to_device(state: &AppState, origin: &ServerName, content: DirectDeviceContent) {
    if content.sender.server_name() != origin {
        return;
    }
    let own = &state.config.server.server_name;
    let kind = content.ev_type.to_string();
    let mut messages = Vec::new();
    for (user, devices) in content.messages {
        if user.server_name() != own {
            continue;
        }
        for (device, body) in devices {
            if body.json().get().trim_start().starts_with('{') {
                messages.push((user.to_string(), device.to_string(), kind.clone(), body.json().get().to_owned()));
            }
        }
    }
    // The message id is the transaction: a retried EDU is queued once.
    let message_id = format!("{origin}:{}", content.message_id);
    if let Err(e) = state.e2ee.receive_remote_to_device(&content.sender, &message_id, messages).await {
        tracing::info!(%origin, error = %e, "dropped a to-device EDU");
    }
}
