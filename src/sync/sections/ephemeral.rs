//! Ephemeral events of joined rooms (client-server API, "Typing
//! Notifications", "Receipts"): who is typing now, from memory, and the
//! receipts that changed in the window, from the rows the plan read.

use ruma::{UserId, api::client::sync::sync_events::v3::Ephemeral};
use serde_json::{Map, Value, json};

use super::{
    super::scope::{Membership, RoomView, Scope},
    raw,
};
use crate::storage::streams::ReceiptRow;

/// One room's ephemeral events: the receipt rows read, then the events.
#[derive(Default)]
pub struct RoomEphemeral {
    pub receipts: Vec<ReceiptRow>,
    pub events: Vec<Value>,
}

/// The receipts to read for a room: those that changed in the window (all
/// of them for a room new to the client), none for a room left.
pub fn receipts_range(scope: &Scope<'_>, view: &RoomView) -> (i64, i64) {
    if !scope.ephemeral.receipts {
        return (0, 0);
    }
    match view.membership {
        Membership::Join if view.initial => (0, scope.window.until.misc),
        Membership::Join => (scope.window.since.unwrap_or_default().misc, scope.window.until.misc),
        Membership::Leave(_) => (0, 0),
    }
}

/// Makes the room's typing notice and receipt event from what was read.
pub fn collect(scope: &Scope<'_>, view: &RoomView, ephemeral: &mut RoomEphemeral) {
    if view.membership != Membership::Join {
        return;
    }
    let typing_since = if view.initial { 0 } else { scope.window.since.unwrap_or_default().typing };
    if scope.ephemeral.typing
        && let Some(typing) = scope.syncer.streams.typing_in(&view.room_id, typing_since)
    {
        ephemeral.events.push(json!({"type": "m.typing", "content": {"user_ids": typing}}));
    }
    let receipts = receipt_content(scope.user_id, std::mem::take(&mut ephemeral.receipts));
    if !receipts.is_empty() {
        ephemeral.events.push(json!({"type": "m.receipt", "content": receipts}));
    }
}

/// The room's `ephemeral` as the response carries it.
pub fn section(events: Vec<Value>) -> Ephemeral {
    let mut ephemeral = Ephemeral::new();
    ephemeral.events = events.into_iter().map(raw).collect();
    ephemeral
}

/// Receipts as the `m.receipt` ephemeral event's content; private read
/// receipts only the user's own.
fn receipt_content(user: &UserId, receipts: Vec<ReceiptRow>) -> Map<String, Value> {
    let mut content = Map::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != user.as_str() {
            continue;
        }
        let mut entry = json!({"ts": r.ts});
        if !r.thread_id.is_empty() {
            entry["thread_id"] = json!(r.thread_id);
        }
        let by_event = content.entry(r.event_id).or_insert_with(|| json!({}));
        by_event[r.receipt_type.as_str()][r.user_id.as_str()] = entry;
    }
    content
}
