//! Account data, receipts, presence and filters: the per-user streams sync
//! reads, each change at a position of the shared `misc` stream.

use super::now_ms;

/// One account data entry.
#[derive(Debug, Clone)]
pub struct AccountDataRow {
    pub room_id: String,
    pub kind: String,
    pub content: String,
}

/// One receipt.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// One user's presence.
#[derive(Debug, Clone)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
}

/// Current time, for callers that stamp rows.
pub fn timestamp() -> i64 {
    now_ms()
}
