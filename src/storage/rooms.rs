//! Rooms, events, DAG edges, state groups, current state, memberships and
//! transaction ids (aliases and the public directory: `directory.rs`).
//! Callers hand over fully built, verified events; storage only stores
//! and finds them.

use std::{collections::HashMap, pin::Pin};

use async_trait::async_trait;
use ruma::events::room::member::MembershipState;

use super::{Result, federation::RemoteInvite};

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
    pub membership: Option<(String, MembershipState)>,
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

/// A queued append: resolves once the event is committed (or refused).
pub type QueuedAppend = Pin<Box<dyn Future<Output = Result<AppendOutcome>> + Send>>;

/// Events: the timeline (each event at a stream position), outliers, DAG
/// and auth edges, forward extremities and transaction ids.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - Stream positions: a timeline event gets a position above that of
///   every event appended before it, and a reader that sees an event at
///   position `N` (or `events_position` at `N`) sees every timeline event
///   below `N`. Sync and `/messages` tokens are positions: an event a
///   reader skipped would never be delivered. (Backfilled history takes
///   positions below every existing one, see `store_backfilled`.)
/// - An append is one atomic write: the event with its edges, its state
///   group, the current state and memberships it changes, the forward
///   extremities, the client's transaction id, the redaction it makes and
///   the PDUs it queues for other servers are committed together or not
///   at all.
/// - Transaction ids are idempotent per `(user, device, txn id)`:
///   `queue_local_append` checks and records the id in the same step as it
///   stores the event, so of two appends under one id exactly one is
///   stored and the other is `AlreadySent` with the first one's event id.
/// - `queue_local_append` keeps order: events are stored in the order they
///   were queued, so an event may be built on one still queued, and an
///   event whose prev events are not stored (one before it failed) is
///   refused as `StaleHead`, storing nothing.
/// - Outliers never appear in timeline reads.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores one event and everything it changes, atomically.
    async fn append_event(&self, event: NewEvent) -> Result<Appended>;

    /// Queues one event to be stored like `append_event`, unless its
    /// transaction id was used already (`AlreadySent`) or one of its prev
    /// events is not stored (`StaleHead`). The event is queued when this
    /// returns, behind every event queued before it; the returned future
    /// resolves once it is committed. `then` is told whether the event was
    /// stored and committed before that future resolves, on any thread,
    /// and even if the future is dropped: the room's next event waits on
    /// it, so it must be cheap and must not block.
    fn queue_local_append(&self, event: NewEvent, then: Box<dyn FnOnce(bool) + Send>) -> Result<QueuedAppend>;

    /// Stores events that are not part of the timeline (see `Outlier`).
    /// Events already stored are left as they are.
    async fn store_outliers(&self, events: Vec<Outlier>) -> Result<()>;

    /// Stores history fetched from other servers (oldest first, each with
    /// its prev events) before the start of the timeline: each event gets
    /// a stream position below every existing one, older events lower, so
    /// backward pagination continues into it. Events already in the
    /// timeline are skipped; outliers join the timeline. Returns how many
    /// were stored.
    async fn store_backfilled(&self, events: Vec<(Outlier, Vec<String>)>, state_group: i64) -> Result<usize>;

    async fn get_event(&self, event_id: String) -> Result<Option<StoredEvent>>;

    /// The events stored among `event_ids`, in that order (unknown ids
    /// are left out).
    async fn get_events(&self, event_ids: Vec<String>) -> Result<Vec<StoredEvent>>;

    /// Whether an event is stored, and if so whether only as an outlier.
    async fn event_outlier(&self, event_id: String) -> Result<Option<bool>>;

    /// The auth chain of events: every event reachable through auth_events,
    /// the starting events themselves excluded.
    async fn auth_chain(&self, event_ids: Vec<String>) -> Result<Vec<String>>;

    /// The auth events of an event, as stored.
    async fn auth_event_ids(&self, event_id: String) -> Result<Vec<String>>;

    /// What appending to a room starts from: its version, current state
    /// group, forward extremities and greatest depth. `None` for a room
    /// not stored.
    async fn room_head(&self, room_id: String) -> Result<Option<RoomHeadRecord>>;

    async fn room_version(&self, room_id: String) -> Result<Option<String>>;

    /// Up to `limit` timeline events of a room: `Forward`, ascending, at
    /// positions in `(from, to]`; `Backward`, descending, in `(to, from]`
    /// (`to` unbounded when `None`).
    async fn room_events(
        &self,
        room_id: String,
        from: i64,
        to: Option<i64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The highest stream position of an event stored for a room, outliers
    /// included (0 when none).
    async fn room_max_stream(&self, room_id: String) -> Result<i64>;

    /// The oldest event of a room's timeline.
    async fn oldest_timeline_event(&self, room_id: String) -> Result<Option<StoredEvent>>;

    /// The timeline event whose `origin_server_ts` is closest to `ts` at or
    /// after it (`Forward`) or at or before it (`Backward`).
    async fn event_near_timestamp(&self, room_id: String, ts: i64, direction: Direction)
    -> Result<Option<StoredEvent>>;

    /// The event a device sent under a transaction id.
    async fn find_txn(&self, user_id: String, device_id: String, txn_id: String) -> Result<Option<String>>;
}

/// State groups and each room's current state.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A state group never changes once written. Resolving one applies its
///   chain of deltas oldest first onto the full snapshot it starts from
///   (`StateWrite`), a later entry replacing an earlier one of the same
///   key, so any reader at any time gets the same map.
/// - The current state changes only with the append that changes it.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The full state of a group, resolved through its delta chain (empty
    /// for an unknown group).
    async fn state_group(&self, group: i64) -> Result<StoredState>;

    /// Several state groups, resolved, in one read.
    async fn state_groups(&self, groups: Vec<i64>) -> Result<HashMap<i64, StoredState>>;

    /// The current state of a room as `(type, state_key) -> event_id`.
    async fn current_state(&self, room_id: String) -> Result<StoredState>;

    /// Rows a room's state takes: `(state groups, state group entries)`,
    /// for tests and diagnostics.
    async fn state_storage_counts(&self, room_id: String) -> Result<(i64, i64)>;
}

/// Room memberships: each user's latest membership per room (from the
/// member events appended, or an invite, knock or declined invite for a
/// room on another server), and those invites.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A membership changes in the same commit as the event that changes
///   it and carries that event's stream position, so a reader that sees
///   the membership sees the event too.
/// - Forgetting is only for rooms left or banned from, and undone by the
///   next membership.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// A user's current membership in a room, with the stream position of
    /// the membership event.
    async fn membership(&self, room_id: String, user_id: String) -> Result<Option<(MembershipState, i64)>>;

    /// Whether a member event joined the user to the room after stream
    /// position `after`.
    async fn joined_since(&self, room_id: String, user_id: String, after: i64) -> Result<bool>;

    /// Rooms where the user's membership is `membership` (and not
    /// forgotten), by the position of that membership.
    async fn rooms_with_membership(&self, user_id: String, membership: MembershipState) -> Result<Vec<String>>;

    /// Users whose current membership in the room is `membership`, by id.
    async fn room_members_with(&self, room_id: String, membership: MembershipState) -> Result<Vec<String>>;

    /// Marks a left room forgotten for the user. Returns false when the
    /// user is still in (or invited to) the room.
    async fn forget_room(&self, room_id: String, user_id: String) -> Result<bool>;

    /// Users sharing a joined room with the user (the user included).
    async fn users_sharing_rooms(&self, user_id: String) -> Result<Vec<String>>;

    /// Stores an invite of a local user to a room on another server, or
    /// the user's knock on one (`membership` is `invite` or `knock`): the
    /// membership event (as an outlier), the user's membership and the
    /// stripped state. Returns the membership's stream position.
    async fn store_remote_invite(
        &self,
        invite: Outlier,
        user_id: String,
        membership: MembershipState,
        room_version: String,
        stripped_state: String,
        via: String,
    ) -> Result<i64>;

    /// The stored invite (or knock) of a user to a room on another server.
    async fn remote_invite(&self, room_id: String, user_id: String) -> Result<Option<RemoteInvite>>;

    /// A declined remote invite (or withdrawn knock): the membership
    /// becomes `leave` at the position of `leave` (stored as an outlier)
    /// and the invite is gone. Returns that position.
    async fn decline_remote_invite(&self, leave: Outlier, user_id: String) -> Result<i64>;
}
