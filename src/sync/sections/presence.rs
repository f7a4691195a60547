//! Presence (client-server API, "Presence"): the `m.presence` events of
//! the users whose presence changed in the window, as the user row read
//! found them (none when presence is off).

use ruma::serde::Raw;
use serde_json::json;

use super::raw;
use crate::{storage::streams::PresenceRow, streams::presence_info};

/// One `m.presence` event per row.
pub fn events<T>(rows: Vec<PresenceRow>) -> Vec<Raw<T>> {
    rows.into_iter()
        .map(|row| {
            let info = presence_info(&row);
            let mut content = json!({"presence": info.state, "currently_active": info.currently_active});
            if let Some(ago) = info.last_active_ago {
                content["last_active_ago"] = json!(ago);
            }
            if let Some(msg) = info.status_msg {
                content["status_msg"] = json!(msg);
            }
            raw(json!({"type": "m.presence", "sender": row.user_id, "content": content}))
        })
        .collect()
}
