//! Push actions: what each local user's push rules said of the events that
//! notify them (client-server API "Push notifications"). Written by the
//! push evaluation after an event is committed; read back as unread
//! notification counts (by sync, see `sync::UnreadCount`) and by
//! `GET /notifications`.

use async_trait::async_trait;

use super::Result;

/// One user's push actions for one event that notifies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushActionRow {
    pub user_id: String,
    pub room_id: String,
    pub event_id: String,
    pub stream_ordering: i64,
    /// The thread root the event belongs to, or `None` for the main
    /// timeline.
    pub thread_id: Option<String>,
    pub highlight: bool,
    /// The actions, as the JSON array the rules gave.
    pub actions: String,
    pub ts: i64,
}

/// A page of `GET /notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub action: PushActionRow,
    /// Whether the user's read receipts in the room cover the event.
    pub read: bool,
}

/// Where push actions are kept.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores the actions of one event for its users, in one write.
    async fn add_push_actions(&self, rows: Vec<PushActionRow>) -> Result<()>;

    /// Forgets the actions of a redacted event and the pushes queued for
    /// it (`PusherStore`), in one write: it no longer notifies.
    async fn remove_push_actions(&self, event_id: String) -> Result<()>;

    /// The user's notifications, newest first, strictly before stream
    /// position `before` (all when `None`), at most `limit`, only the
    /// highlighting ones when `only_highlight`.
    async fn notifications(
        &self,
        user_id: String,
        before: Option<i64>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>>;

    /// How many notifications the user has not read, in every room they
    /// are joined to (a push's `counts.unread`).
    async fn unread_notification_total(&self, user_id: String) -> Result<u64>;
}
