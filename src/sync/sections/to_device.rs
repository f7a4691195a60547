//! To-device messages (client-server API, "Send-to-Device messaging"):
//! the messages queued for the syncing device that the token does not
//! cover. A message is deleted only once the device syncs past it.

use ruma::serde::Raw;
use serde_json::{Value, json};

use super::{super::scope::Scope, raw};
use crate::{storage::e2ee::ToDeviceRow, sync::SyncError};

/// The device's new messages. Syncing with a token acknowledges what
/// that token covered (`acked`, when the user row read found any of it
/// still stored).
pub async fn events<T>(
    scope: &Scope<'_>,
    messages: Vec<ToDeviceRow>,
    acked: Option<i64>,
) -> Result<Vec<Raw<T>>, SyncError> {
    if let Some(through) = acked {
        scope.syncer.db.ack_to_device(scope.user_id.to_string(), scope.device_id.to_string(), through).await?;
    }
    Ok(messages
        .into_iter()
        .map(|msg| {
            let content: Value = serde_json::from_str(&msg.content).unwrap_or(Value::Null);
            raw(json!({"sender": msg.sender, "type": msg.kind, "content": content}))
        })
        .collect())
}
