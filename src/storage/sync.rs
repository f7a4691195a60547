//! The reads of one sync, batched: everything about the user in one
//! read, then everything about the rooms in view in one more, each inside
//! one read transaction (one consistent snapshot). A sync of a user in 50
//! rooms used to cost over a thousand round trips to the blocking pool; it
//! now costs a handful.

use async_trait::async_trait;

use super::{
    Result,
    e2ee::ToDeviceRow,
    rooms::StoredEvent,
    streams::{AccountDataRow, PresenceRow, ReceiptRow},
};

/// What a sync reads about its user and device, before looking at rooms.
#[derive(Debug, Clone)]
pub struct SyncUserQuery {
    pub user_id: String,
    pub device_id: String,
    /// `(events, misc)` of the `since` token, for an incremental sync.
    pub since: Option<(i64, i64)>,
    /// The positions the response covers (events may be raised, see
    /// `SyncUserRows::until_events`).
    pub until_events: i64,
    pub until_misc: i64,
    pub presence: bool,
    /// Read the device's to-device messages: those after this `misc`
    /// position (`Some(None)`: all of them). A sliding sync connection
    /// without the to-device extension reads none.
    pub to_device_after: Option<Option<i64>>,
}

/// Everything user-level a sync needs.
#[derive(Debug, Clone, Default)]
pub struct SyncUserRows {
    /// The events position the response covers: raised to the newest
    /// membership change found (committed, so everything before it is too).
    pub until_events: i64,
    /// Memberships changed since the token (all of them on an initial
    /// sync): `(room_id, membership, stream_ordering)`.
    pub memberships_changed: Vec<(String, String, i64)>,
    /// Every current membership (incremental syncs only).
    pub memberships: Vec<(String, String, i64)>,
    pub account_data: Vec<AccountDataRow>,
    /// Rooms with events in `(since, until]` (incremental syncs only).
    pub rooms_changed: Vec<String>,
    pub presence: Vec<PresenceRow>,
    /// Users who newly share a room with the user (incremental syncs with
    /// presence on): who joined or was invited to the user's rooms in the
    /// window, and the members of the rooms the user joined in it; each
    /// with their presence row, if they have one.
    pub new_room_mates: Vec<(String, Option<PresenceRow>)>,
    /// To-device messages not covered by the token.
    pub to_device: Vec<ToDeviceRow>,
    /// Whether messages covered by the token are still stored (the sync
    /// acknowledges them).
    pub to_device_to_ack: bool,
    pub device_list_changes: Vec<String>,
    pub users_sharing_rooms: Vec<String>,
    pub membership_changes_seen: Vec<(String, String)>,
    pub one_time_key_counts: Vec<(String, i64)>,
    pub unused_fallback_algorithms: Vec<String>,
}

/// What a sync reads about one room in the first pass.
#[derive(Debug, Clone)]
pub struct SyncRoomQuery {
    pub room_id: String,
    /// `(after, until, limit)`: up to `limit` newest events in `(after, until]`.
    pub timeline: Option<(i64, i64, usize)>,
    /// Receipts changed in `(since, until]`.
    pub receipts: (i64, i64),
    /// Read the unread count too (for a room the sync will almost surely
    /// return), counting on from this earlier count.
    pub unread: Option<Option<UnreadCount>>,
    /// Read the member summary too (a room new to the client).
    pub members: bool,
}

/// The first pass over one room.
#[derive(Debug, Clone, Default)]
pub struct SyncRoomRows {
    /// Newest first.
    pub events: Vec<StoredEvent>,
    pub receipts: Vec<ReceiptRow>,
    pub details: Option<RoomDetails>,
}

/// What a sync reads about a room it includes in the response.
#[derive(Debug, Clone)]
pub struct RoomDetailsQuery {
    pub room_id: String,
    /// Stream positions whose state group is wanted.
    pub state_at: Vec<i64>,
    /// Read the unread count, counting on from an earlier sync's count.
    pub unread: Option<Option<UnreadCount>>,
    /// Read the member summary.
    pub members: bool,
}

/// A user's unread notifications in one room (the push actions after
/// their read receipts), and what they were counted against, so the next
/// sync counts only the actions stored since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadCount {
    /// The stream position each read receipt of the user reaches, by
    /// thread (`""` for unthreaded receipts, `"main"` for the main
    /// timeline, else the thread root), in thread order. Counts carry on
    /// only while these stay the same.
    pub receipts: Vec<(String, i64)>,
    /// The last push action counted (insertion order).
    pub counted_seq: i64,
    /// The events position counted up to: a redaction after it (which
    /// removes the redacted event's actions) makes the next sync count
    /// again from the receipts.
    pub counted_until: i64,
    /// The main timeline's counts.
    pub main: NotificationCounts,
    /// Each thread's counts (thread root, counts), in thread order; only
    /// threads with unread notifications.
    pub threads: Vec<(String, NotificationCounts)>,
}

/// Notifications and highlights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    pub notifications: u64,
    pub highlights: u64,
}

impl UnreadCount {
    /// Everything unread, threads included.
    pub fn total(&self) -> NotificationCounts {
        self.threads.iter().fold(self.main, |mut total, (_, c)| {
            total.notifications += c.notifications;
            total.highlights += c.highlights;
            total
        })
    }
}

/// The second pass over one room.
#[derive(Debug, Clone, Default)]
pub struct RoomDetails {
    /// The state group after the last event at or before each `state_at`.
    pub state_groups: Vec<Option<i64>>,
    pub members: Option<MemberSummary>,
    pub unread: Option<UnreadCount>,
}

/// Who is in a room, as a sync's room summary tells it.
#[derive(Debug, Clone, Default)]
pub struct MemberSummary {
    pub joined_count: i64,
    pub invited_count: i64,
    /// The first joined and then invited members by user id (at most 6 of each).
    pub heroes: Vec<String>,
}

/// What sliding sync orders and filters a user's rooms by (MSC4186), read
/// for one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingRoomInfo {
    /// The position of the newest event of a type that counts as activity
    /// (MSC4186, "bump_stamp": create, message, encrypted, sticker, call
    /// invite, poll start, beacon info).
    pub bump_stamp: Option<i64>,
    /// The position of the newest event of any type.
    pub last_event: Option<i64>,
    /// The create event's `type` (spaces and other room types).
    pub room_type: Option<String>,
    /// Whether the room has an `m.room.encryption` state event.
    pub encrypted: bool,
    /// Who sent the user's current membership event (a leave sent by
    /// someone else is a kick).
    pub membership_sender: Option<String>,
}

/// The batched reads of one sync.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - Each call reads one consistent snapshot: everything it returns was
///   committed as of one moment.
/// - Reads stay within the positions the query names (`until_events`,
///   `until_misc`, the timeline and receipt ranges), so a sync's
///   `next_batch` covers exactly what it delivered. `sync_user_rows` raises
///   `until_events` only to the position of a membership change it read,
///   which (by the stream guarantee of [`super::EventStore`]) is committed
///   with everything below it.
/// - These run for every sync of every client: each is one round trip to
///   the backend whatever the number of rooms, and an incremental sync's
///   reads should cost no more than a thread hand-off (the SQLite backend
///   runs them on the calling thread).
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Everything about the user and device a sync needs before looking at
    /// rooms: memberships, account data, presence, to-device messages,
    /// device list changes and key counts.
    async fn sync_user_rows(&self, query: SyncUserQuery) -> Result<SyncUserRows>;

    /// The first pass over the rooms of one sync (timelines, receipts, and
    /// details where asked); one result per query, in order.
    async fn sync_room_rows(&self, user_id: String, queries: Vec<SyncRoomQuery>) -> Result<Vec<SyncRoomRows>>;

    /// The second pass over the rooms a sync includes (state groups,
    /// summaries, unread counts); one result per query, in order.
    async fn sync_room_details(&self, user_id: String, queries: Vec<RoomDetailsQuery>) -> Result<Vec<RoomDetails>>;

    /// What sliding sync orders and filters the user's rooms by; one result
    /// per room, in order.
    async fn sliding_room_info(&self, user_id: String, rooms: Vec<String>) -> Result<Vec<SlidingRoomInfo>>;
}
