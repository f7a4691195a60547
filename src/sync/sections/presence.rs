//! Presence (client-server API, "Presence"): the `m.presence` events of
//! the users whose presence changed in the window, as the user row read
//! found them (none when presence is off), and of the users newly sharing
//! a room with the user, whenever their presence last changed (offline
//! when it never did), as Synapse sends them.

use ruma::serde::Raw;
use serde_json::json;

use super::raw;
use crate::{storage::streams::PresenceRow, streams::presence_info};

/// One `m.presence` event per row, then one per new room-mate.
pub fn events<T>(rows: Vec<PresenceRow>, new_room_mates: Vec<(String, Option<PresenceRow>)>) -> Vec<Raw<T>> {
    let mut events: Vec<Raw<T>> = rows.into_iter().map(|row| event(&row)).collect();
    for (user, row) in new_room_mates {
        events.push(match row {
            Some(row) => event(&row),
            None => raw(json!({"type": "m.presence", "sender": user, "content": {"presence": "offline"}})),
        });
    }
    events
}

fn event<T>(row: &PresenceRow) -> Raw<T> {
    let info = presence_info(row);
    let mut content = json!({"presence": info.state, "currently_active": info.currently_active});
    if let Some(ago) = info.last_active_ago {
        content["last_active_ago"] = json!(ago);
    }
    if let Some(msg) = info.status_msg {
        content["status_msg"] = json!(msg);
    }
    raw(json!({"type": "m.presence", "sender": row.user_id, "content": content}))
}
