//! Account data, receipts, presence and filters: the per-user streams sync
//! reads, each change at a position of the shared `misc` stream.

use async_trait::async_trait;

use super::{Result, now_ms};

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

/// The two stream positions, the per-user streams a sync reads (account
/// data, receipts, presence) and stored filters.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - Every change to account data, receipts, presence, device lists and
///   to-device messages takes a new position of the shared `misc` stream
///   in the same commit, above every position taken before it; a reader
///   that observes `misc` position `N` (from `misc_position` or from a row)
///   observes every change at a position up to `N`. `events_position` is
///   the same for the events stream.
/// - Setting account data, a receipt or presence replaces the previous
///   value of its key, which moves to the new position.
/// - Filter ids are distinct per user, even for concurrent creations.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// The highest committed position of the events stream.
    async fn events_position(&self) -> Result<i64>;

    /// The highest committed `misc` position.
    async fn misc_position(&self) -> Result<i64>;

    /// Sets account data (`room_id` empty for global); returns its position.
    async fn set_account_data(&self, user_id: String, room_id: String, kind: String, content: String) -> Result<i64>;

    async fn get_account_data(&self, user_id: String, room_id: String, kind: String) -> Result<Option<String>>;

    /// Stores a receipt, replacing the user's previous one of that type
    /// (and thread) in the room; returns its position.
    async fn set_receipt(&self, receipt: ReceiptRow) -> Result<i64>;

    /// Stores a user's presence; returns its position.
    async fn set_presence(&self, row: PresenceRow) -> Result<i64>;

    async fn get_presence(&self, user_id: String) -> Result<Option<PresenceRow>>;

    /// Stores a filter and returns its id (the user's first is 0).
    async fn create_filter(&self, user_id: String, json: String) -> Result<i64>;

    async fn get_filter(&self, user_id: String, filter_id: i64) -> Result<Option<String>>;
}
