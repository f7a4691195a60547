//! Timeline slices (client-server API, "Syncing": `timeline`, `limited`,
//! `prev_batch`; "Filtering"): the newest events of a room in the window
//! that the user may see and the filter lets through, at most the room's
//! timeline limit.

use std::sync::Arc;

use ruma::{
    UInt,
    api::client::{filter::RoomEventFilter, sync::sync_events::v3::Timeline},
    events::AnySyncTimelineEvent,
    serde::Raw,
};

use super::super::scope::{Membership, RoomView, Scope};
use crate::{
    rooms::{EventFilter, PaginationToken, pdu::Pdu, visibility::VisibilityCheck},
    sync::SyncError,
};

/// Timeline events per room when the client sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The most timeline events per room, whatever the client asks.
const MAX_TIMELINE_LIMIT: usize = 500;

/// A timeline slice: chronological events, whether older ones were left
/// out, and the position just before the first event.
pub struct Slice {
    pub events: Vec<Arc<Pdu>>,
    pub limited: bool,
    pub before: i64,
    /// The state group at `before`, when the rows read already tell it
    /// (`Some(None)`: no event at or before it).
    pub before_group: Option<Option<i64>>,
}

impl Slice {
    /// No events, ending at `until`.
    pub fn empty(until: i64) -> Self {
        Self { events: vec![], limited: false, before: until, before_group: None }
    }
}

/// The timeline limit to use when a client asks for `asked`.
pub fn timeline_limit(asked: Option<UInt>) -> usize {
    asked.and_then(|l| usize::try_from(l).ok()).unwrap_or(DEFAULT_TIMELINE_LIMIT).clamp(1, MAX_TIMELINE_LIMIT)
}

/// The timeline limit of `/sync`: as `timeline_limit`, except that a
/// limit of 0 is kept (the rooms' state without their events, which
/// Sytest's "Can pass a JSON filter as a query parameter" expects).
pub fn sync_timeline_limit(asked: Option<UInt>) -> usize {
    if asked == Some(UInt::MIN) { 0 } else { timeline_limit(asked) }
}

/// A client's timeline filter as `Rooms` applies it.
pub fn event_filter(filter: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.as_ref().map(|s| s.iter().map(|u| u.to_string()).collect()),
        not_senders: filter.not_senders.iter().map(|u| u.to_string()).collect(),
        ignored: Default::default(),
    }
}

/// The newest visible events in `(after, until]`, at most the timeline
/// limit, from `stored` (newest first, one more than the limit).
pub async fn slice(
    scope: &Scope<'_>,
    view: &RoomView,
    stored: Vec<Arc<Pdu>>,
    after: i64,
    until: i64,
) -> Result<Slice, SyncError> {
    let limit = view.timeline_limit;
    let limited = stored.len() > limit;
    // The user's membership now: joined rooms are "join"; a room left is
    // read as the user left it.
    let membership = match &view.membership {
        Membership::Join => "join".to_owned(),
        Membership::Leave(membership) => membership.clone(),
    };
    let mut check =
        VisibilityCheck::with_membership(&scope.syncer.rooms, &view.room_id, scope.user_id, Some(membership));
    let mut events = Vec::new();
    let mut oldest_kept = None;
    for (i, pdu) in stored.iter().take(limit).enumerate() {
        if scope.timeline.filter.allows(pdu) && check.can_see(pdu).await? {
            events.push(pdu.clone());
            oldest_kept = Some(i);
        }
    }
    events.reverse();
    let before = events.first().and_then(|p| p.stream_ordering).map(|p| p - 1).unwrap_or(until);
    // The rows are the room's events in `(after, until]`, newest first and
    // without gaps, so the one after the oldest kept is the last event at
    // or before `before`.
    let predecessor = oldest_kept.map_or(0, |i| i + 1);
    let before_group = match stored.get(predecessor) {
        Some(pdu) => Some(pdu.state_group),
        None if after == 0 => Some(None),
        None => None,
    };
    Ok(Slice { events, limited, before, before_group })
}

/// The slice as the response carries it, with its events formatted.
pub fn section(slice: &Slice, events: Vec<Raw<AnySyncTimelineEvent>>) -> Timeline {
    let mut timeline = Timeline::new();
    timeline.events = events;
    timeline.limited = slice.limited;
    timeline.prev_batch = Some(PaginationToken(slice.before.max(0)).to_string());
    timeline
}
