//! What the sections of one sync work from: who syncs, over which stream
//! positions, how timelines are read (`Scope`), and each room an
//! assembler puts in view (`RoomView`). Sections and the read plan both
//! take these; only the plan runs the sections.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

use super::{SyncToken, Syncer, members_sent::DeviceMembers, sections::required_state::RequiredState};
use crate::rooms::EventFilter;

/// The stream positions a sync covers: after `since` (from the start
/// when there is none), up to and including `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: Option<SyncToken>,
    pub until: SyncToken,
}

/// How the timelines of one sync are read.
pub struct TimelineOptions<'a> {
    /// Which events a timeline carries.
    pub filter: EventFilter,
    /// Whether members are lazy-loaded.
    pub lazy_members: LazyMembers<'a>,
    /// Which state events the `state` section carries (the filter's
    /// `room.state`).
    pub state_filter: EventFilter,
    /// Unread counts per thread (`unread_thread_notifications`), the room's
    /// own counting only its main timeline.
    pub thread_counts: bool,
}

/// Lazy-loading of room members (client-server API, "Lazy-loading room
/// members"): the state carries only the membership events the client
/// needs to show the timeline.
#[derive(Clone, Copy)]
pub enum LazyMembers<'a> {
    Off,
    /// With `sent`, the device's record of membership events it has, which
    /// are not sent again; without (`include_redundant_members`), they are.
    On {
        sent: Option<&'a DeviceMembers<'a>>,
    },
}

impl LazyMembers<'_> {
    pub fn is_on(&self) -> bool {
        matches!(self, Self::On { .. })
    }
}

/// Which ephemeral events of the rooms in view are read: `/sync` has both;
/// sliding sync those its `receipts` and `typing` extensions ask for.
#[derive(Debug, Clone, Copy)]
pub struct EphemeralOptions {
    pub receipts: bool,
    pub typing: bool,
}

/// What every section works from: who syncs, over which positions, and
/// how timelines are read.
pub struct Scope<'a> {
    pub syncer: &'a Syncer,
    pub user_id: &'a OwnedUserId,
    pub device_id: &'a OwnedDeviceId,
    pub window: Window,
    pub timeline: TimelineOptions<'a>,
    pub ephemeral: EphemeralOptions,
}

impl Scope<'_> {
    /// Whether the syncing user ignores `sender` (spec: "Ignoring Users").
    pub fn ignores(&self, sender: &str) -> bool {
        let ignored = &self.timeline.filter.ignored;
        !ignored.is_empty() && ruma::UserId::parse(sender).is_ok_and(|u| ignored.contains(&u))
    }
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
    /// Which state the room carries.
    pub state: StateWanted,
}

/// Which state a room in view carries with its timeline.
#[derive(Debug, Clone)]
pub enum StateWanted {
    /// `/sync`: the state before the timeline (all of it for a room new to
    /// the client, else what changed since the token), members lazy-loaded
    /// as the scope's timeline options say.
    BeforeTimeline,
    /// Sliding sync: the state at the timeline's end that `required_state`
    /// asks for (all of it for a room new to the connection, else what
    /// changed since the timeline's start), and with lazy members those of
    /// the timeline's senders the connection was not sent yet.
    Required { config: Arc<RequiredState>, members_sent: Arc<HashSet<String>> },
}
