//! Ephemeral data units to other servers: typing notices, read receipts
//! and presence of local users in shared rooms (what other servers send is
//! applied by `api::federation::edus`).

use ruma::{EventId, OwnedServerName, RoomId, UserId};
use serde_json::{Value, json};

use super::Federation;
use crate::{storage::streams::PresenceRow, streams::presence_info};

impl Federation {
    /// Tells the other servers in the room that a local user (stopped) typing.
    pub async fn send_typing(&self, room_id: &RoomId, user: &UserId, typing: bool) {
        let edu = json!({
            "edu_type": "m.typing",
            "content": { "room_id": room_id, "user_id": user, "typing": typing },
        });
        self.send_to_room(room_id, edu).await;
    }

    /// Sends a local user's public read receipt to the other servers in the room.
    pub async fn send_receipt(&self, room_id: &RoomId, user: &UserId, event_id: &EventId, thread: Option<&str>) {
        let mut data = json!({ "ts": ruma::MilliSecondsSinceUnixEpoch::now() });
        if let Some(thread) = thread {
            data["thread_id"] = Value::String(thread.to_owned());
        }
        let edu = json!({
            "edu_type": "m.receipt",
            "content": { room_id.as_str(): { "m.read": { user.as_str(): { "event_ids": [event_id], "data": data } } } },
        });
        self.send_to_room(room_id, edu).await;
    }

    /// Sends a local user's new presence to the servers sharing a room
    /// with them.
    pub async fn send_presence(&self, row: PresenceRow, servers: Vec<OwnedServerName>) {
        if !self.enabled() {
            return;
        }
        let info = presence_info(&row);
        let mut update = json!({
            "user_id": row.user_id,
            "presence": info.state,
            "currently_active": info.currently_active,
            "last_active_ago": info.last_active_ago.unwrap_or(0),
        });
        if let Some(status) = info.status_msg {
            update["status_msg"] = Value::String(status);
        }
        let json = json!({ "edu_type": "m.presence", "content": { "push": [update] } }).to_string();
        self.sender.send_edus(servers.into_iter().map(|s| (s, json.clone())).collect()).await;
    }

    async fn send_to_room(&self, room_id: &RoomId, edu: Value) {
        if !self.enabled() {
            return;
        }
        let servers = match self.room_servers(room_id).await {
            Ok(servers) => servers,
            Err(e) => {
                tracing::warn!(%room_id, error = %e, "cannot find the servers of a room");
                return;
            }
        };
        let json = edu.to_string();
        self.sender.send_edus(servers.into_iter().map(|s| (s, json.clone())).collect()).await;
    }
}
