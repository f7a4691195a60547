//! What the sections of one sync work from: who syncs, over which stream
//! positions, how timelines are read (`Scope`), and each room an
//! assembler puts in view (`RoomView`). Sections and the read plan both
//! take these; only the plan runs the sections.

use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

use super::{SyncToken, Syncer};
use crate::rooms::EventFilter;

/// The stream positions a sync covers: after `since` (from the start
/// when there is none), up to and including `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: Option<SyncToken>,
    pub until: SyncToken,
}

/// How the timelines of one sync are read.
pub struct TimelineOptions {
    /// Which events a timeline carries.
    pub filter: EventFilter,
    /// Member events only for the timeline's senders and the user.
    pub lazy_members: bool,
    /// Unread counts per thread (`unread_thread_notifications`), the room's
    /// own counting only its main timeline.
    pub thread_counts: bool,
}

/// What every section works from: who syncs, over which positions, and
/// how timelines are read.
pub struct Scope<'a> {
    pub syncer: &'a Syncer,
    pub user_id: &'a OwnedUserId,
    pub device_id: &'a OwnedDeviceId,
    pub window: Window,
    pub timeline: TimelineOptions,
}

/// The user's membership of a room in view. Invites and knocks carry only
/// stripped state and are not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Join,
    /// Left or banned: the membership as stored.
    Leave(String),
}

/// A room an assembler puts in view, and how: the input of the per-room
/// sections.
pub struct RoomView {
    pub room_id: OwnedRoomId,
    pub membership: Membership,
    /// Whether the client gets the room afresh (new to it, or
    /// `full_state`): all its state and its member summary.
    pub initial: bool,
    /// The timeline range to read, `(after, until]`, if any.
    pub timeline: Option<(i64, i64)>,
    /// The most timeline events to send.
    pub timeline_limit: usize,
}
