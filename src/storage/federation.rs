//! Federation tables: other servers' verify keys, the persistent outbound
//! queue with the transaction in flight per destination, the ids of
//! transactions received, and invites to rooms on other servers.

use async_trait::async_trait;

use super::Result;

/// A verify key of another server, as checked and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredServerKey {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    /// Set for an old key: it verifies only what was signed before then.
    pub expired_ts: Option<i64>,
}

/// One queued item for a destination.
#[derive(Debug, Clone)]
pub struct QueuedItem {
    pub kind: QueueKind,
    pub json: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Pdu,
    Edu,
}

/// A transaction to (re)send: its id, its items, and the last queue row it covers.
#[derive(Debug, Clone)]
pub struct OutgoingTxn {
    pub txn_id: String,
    pub items: Vec<QueuedItem>,
    pub last_id: i64,
}

/// A local user's invite to (or knock on) a room this server is not in.
#[derive(Debug, Clone)]
pub struct RemoteInvite {
    pub event_id: String,
    pub room_version: String,
    pub stripped_state: String,
    pub via: String,
}

/// Other servers' verify keys, the outbound queue per destination and the
/// transactions received.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - The queue of each destination is first in, first out. PDUs are
///   queued in the commit that stores their event (`NewEvent::send_to`),
///   so nothing acknowledged to a client is lost.
/// - `next_federation_txn` answers with the transaction in flight (same
///   id, same items) until `federation_txn_done` removes it with its
///   items: a transaction resent after a restart is the same transaction.
///   Items queued meanwhile wait for the next one.
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// The stored verify keys of a server.
    async fn server_keys(&self, server: String) -> Result<Vec<StoredServerKey>>;

    /// Stores verified keys of `server`, replacing older copies (a key's
    /// `valid_until_ts` never moves back).
    async fn store_server_keys(&self, server: String, keys: Vec<StoredServerKey>) -> Result<()>;

    /// Queues EDUs (or PDUs) `(destination, kind, json)`, in order.
    async fn enqueue_federation(&self, items: Vec<(String, QueueKind, String)>) -> Result<()>;

    /// Destinations with something queued.
    async fn queued_destinations(&self) -> Result<Vec<String>>;

    /// The transaction to send next to `destination`: the one in flight if
    /// there is one, else a new one of at most `max_pdus` PDUs and
    /// `max_edus` EDUs from the head of the queue (`None` when it is empty).
    async fn next_federation_txn(
        &self,
        destination: String,
        max_pdus: usize,
        max_edus: usize,
    ) -> Result<Option<OutgoingTxn>>;

    /// A transaction was accepted: drop its items (up to `last_id`).
    async fn federation_txn_done(&self, destination: String, last_id: i64) -> Result<()>;

    /// Whether a transaction from `origin` was already applied.
    async fn federation_txn_seen(&self, origin: String, txn_id: String) -> Result<bool>;

    /// Records that a transaction from `origin` was applied.
    async fn mark_federation_txn(&self, origin: String, txn_id: String) -> Result<()>;
}
