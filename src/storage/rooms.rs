//! Rooms, events, DAG edges, state groups, current state, memberships and
//! transaction ids (aliases and the public directory: `directory.rs`).
//! Callers hand over fully built, verified events; storage only stores
//! and finds them.

use std::collections::HashMap;

/// A state map as stored: `(type, state_key) -> event_id`.
pub type StoredState = HashMap<(String, String), String>;

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub json: String,
    pub state_group: i64,
    pub replaces_state: Option<String>,
    pub redacted_by: Option<String>,
    pub rejected: bool,
    /// `(device_id, txn_id)` when the sender's device sent it through the
    /// client-server API (so that device sees its `transaction_id`).
    pub txn: Option<(String, String)>,
}

/// How an event changes the room state.
#[derive(Debug, Clone)]
pub enum StateWrite {
    /// A non-state event: the state after it is the state before it.
    Unchanged { group: i64 },
    /// A state event: a new group as a delta on `prev_group`.
    Delta { prev_group: i64, delta_depth: i64, key: (String, String), event_id: String },
    /// A state event starting a fresh snapshot (first event, or a long chain).
    Full { state: StoredState },
}

/// Everything one appended event writes, in one transaction.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub room_id: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub json: String,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub state: StateWrite,
    pub replaces_state: Option<String>,
    /// The room's forward extremities after this event.
    pub forward_extremities: Vec<String>,
    /// `(user_id, membership)` for `m.room.member` events.
    pub membership: Option<(String, String)>,
    /// `(user_id, device_id, txn_id)` of the client request.
    pub txn: Option<(String, String, String)>,
    /// A create event makes the room row: `(room_version, creator)`.
    pub new_room: Option<(String, String)>,
    /// A redaction rewrites its target: `(target_event_id, redacted_json)`.
    pub redaction: Option<(String, String)>,
    /// How the room's current state changes.
    pub current_state: CurrentStateWrite,
    /// Other servers to send this PDU to (queued in the same transaction).
    pub send_to: Vec<String>,
}

/// What an appended event does to the room's current state.
#[derive(Debug, Clone, Default)]
pub enum CurrentStateWrite {
    /// A state event becomes current for its key (local events, and remote
    /// events that extend the only forward extremity).
    #[default]
    ThisEvent,
    /// The current state becomes this map (after state resolution, or when
    /// joining a room over federation); memberships follow it.
    Replace(StoredState),
    /// Nothing changes (a soft-failed event).
    Unchanged,
}

/// An event stored only for its content: the state and auth chain of a
/// room joined over federation, or an event that failed the auth rules.
/// Outliers never appear in timelines.
#[derive(Debug, Clone)]
pub struct Outlier {
    pub event_id: String,
    pub room_id: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub json: String,
    pub auth_events: Vec<String>,
    pub rejected: bool,
}

/// What an append produced.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub stream_ordering: i64,
    pub state_group: i64,
}

/// What appending a client's event did.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    Stored(Appended),
    /// The device already sent an event under this transaction id (its
    /// id); nothing was stored.
    AlreadySent(String),
    /// A prev event is not stored (an event it was built on failed):
    /// nothing was stored, and the event must be built again.
    StaleHead,
}

/// Facts about a room needed to append to it.
#[derive(Debug, Clone)]
pub struct RoomHeadRecord {
    pub room_version: String,
    pub current_state_group: i64,
    pub forward_extremities: Vec<String>,
    pub max_depth: i64,
}

/// Which way a pagination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}
