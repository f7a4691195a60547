//! Pushers and the outbound push queue (client-server API "Push
//! notifications", push gateway API): the pushers each device set, and
//! what each pusher still has to send to its gateway.

use async_trait::async_trait;

use super::Result;

/// A pusher as its device set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherRow {
    pub user_id: String,
    /// The device that set it; the pusher goes when the device goes.
    pub device_id: String,
    pub app_id: String,
    pub pushkey: String,
    /// `http` (the only kind this server delivers).
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The pusher's `data` object, as JSON (`url`, `format`, and whatever
    /// else the client put there for its gateway).
    pub data: String,
    /// When the pushkey was last set, in milliseconds.
    pub pushkey_ts: i64,
}

/// A stored pusher: what was set, and the id its queue refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPusher {
    pub id: i64,
    pub pusher: PusherRow,
}

/// One user's pushes for one event: the actions their rules gave it, and
/// the devices whose pushers get nothing (they are syncing now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToQueue {
    pub user_id: String,
    /// The push actions, as JSON.
    pub actions: String,
    pub skip_devices: Vec<String>,
}

/// One queued push: a notification of one event for one pusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPush {
    pub id: i64,
    pub event_id: String,
    pub room_id: String,
    /// The push actions, as JSON.
    pub actions: String,
    /// When it was queued, in milliseconds.
    pub queued_ts: i64,
}

/// Pushers and their queues.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A user has at most one pusher per `(app_id, pushkey)`; setting it
///   again updates it in place (same id, its queue kept).
/// - A pusher is removed with the device that set it, by every write that
///   removes devices (`AccountStore::delete_devices`,
///   `delete_other_devices`, `deactivate_user`), in that same write.
/// - A pusher's queue is first in, first out, and goes with the pusher.
#[async_trait]
pub trait PusherStore: Send + Sync {
    /// Creates or updates the user's pusher for `(app_id, pushkey)`, and
    /// unless `append`, removes the pushers of other users with the same
    /// `(app_id, pushkey)`; in one write. Returns the pusher's id.
    async fn set_pusher(&self, pusher: PusherRow, append: bool) -> Result<i64>;

    /// Removes the user's pusher for `(app_id, pushkey)`; whether there was one.
    async fn delete_pusher(&self, user_id: String, app_id: String, pushkey: String) -> Result<bool>;

    /// Removes a pusher by id (its gateway rejected its pushkey).
    async fn delete_pusher_by_id(&self, id: i64) -> Result<()>;

    /// The user's pushers, oldest first.
    async fn pushers(&self, user_id: String) -> Result<Vec<StoredPusher>>;

    /// Users with at least one pusher.
    async fn users_with_pushers(&self) -> Result<Vec<String>>;

    /// Queues a push of the event to every pusher of each user in `pushes`
    /// but those of its `skip_devices`, in one write. Returns the ids of the
    /// pushers that got one.
    async fn queue_pushes(
        &self,
        event_id: String,
        room_id: String,
        pushes: Vec<PushToQueue>,
        queued_ts: i64,
    ) -> Result<Vec<i64>>;

    /// Pushers with something queued.
    async fn queued_pushers(&self) -> Result<Vec<i64>>;

    /// The oldest push queued for a pusher, with the pusher (`None` when its
    /// queue is empty or the pusher is gone).
    async fn next_queued_push(&self, pusher_id: i64) -> Result<Option<(StoredPusher, QueuedPush)>>;

    /// Removes a queued push (sent, or given up on).
    async fn remove_queued_push(&self, id: i64) -> Result<()>;
}
