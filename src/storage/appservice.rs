//! The outbound queue of application services (application service API,
//! "Pushing events"): per appservice, the events and ephemeral data it
//! still has to be sent, grouped into transactions that keep their id
//! until the appservice acknowledges them.

use async_trait::async_trait;

use super::Result;

/// What a queued item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppserviceItemKind {
    /// A timeline event, in the client format.
    Event,
    /// Typing or a receipt (`ephemeral` of a transaction).
    Ephemeral,
    /// A to-device message for a device of a namespace user (MSC2409).
    ToDevice,
    /// A user id whose device list changed (MSC3202 `device_lists.changed`).
    DeviceListChanged,
    /// A user id no longer sharing a room with the appservice's users
    /// (MSC3202 `device_lists.left`).
    DeviceListLeft,
    /// `{"user_id", "device_id", "counts", "fallback"}`: a namespace
    /// user's device's one-time key counts and unused fallback key types
    /// (MSC3202); a later one for the same device replaces it.
    KeyCounts,
}

impl AppserviceItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Ephemeral => "ephemeral",
            Self::ToDevice => "to_device",
            Self::DeviceListChanged => "device_list_changed",
            Self::DeviceListLeft => "device_list_left",
            Self::KeyCounts => "key_counts",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "event" => Some(Self::Event),
            "ephemeral" => Some(Self::Ephemeral),
            "to_device" => Some(Self::ToDevice),
            "device_list_changed" => Some(Self::DeviceListChanged),
            "device_list_left" => Some(Self::DeviceListLeft),
            "key_counts" => Some(Self::KeyCounts),
            _ => None,
        }
    }
}

/// One item to queue for one appservice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppserviceItem {
    pub appservice_id: String,
    pub kind: AppserviceItemKind,
    /// The item as sent, JSON.
    pub json: String,
}

/// A transaction: its id and its items, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppserviceTransaction {
    pub txn_id: i64,
    pub items: Vec<(AppserviceItemKind, String)>,
}

/// The appservice queues.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A queue is first in, first out: items queued by one write keep their
///   order, and later writes come after.
/// - A transaction, once formed, keeps its id and its items until it is
///   completed; no item is in two transactions, and transaction ids are
///   never reused for an appservice, also across restarts.
#[async_trait]
pub trait AppserviceStore: Send + Sync {
    /// Queues items (for one or more appservices), in one write.
    async fn queue_appservice_items(&self, items: Vec<AppserviceItem>) -> Result<()>;

    /// The appservice's transaction in flight, or else a new one of its
    /// oldest `limit` items (`None` when nothing is queued).
    async fn appservice_transaction(
        &self,
        appservice_id: String,
        limit: usize,
    ) -> Result<Option<AppserviceTransaction>>;

    /// The appservice acknowledged the transaction: its items go.
    async fn complete_appservice_transaction(&self, appservice_id: String, txn_id: i64) -> Result<()>;

    /// Appservices with something queued.
    async fn queued_appservices(&self) -> Result<Vec<String>>;
}
