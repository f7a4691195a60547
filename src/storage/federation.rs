//! Federation tables: other servers' verify keys, the persistent outbound
//! queue with the transaction in flight per destination, the ids of
//! transactions received, and invites to rooms on other servers.

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
