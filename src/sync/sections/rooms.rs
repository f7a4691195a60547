//! Joined and left rooms (client-server API, "Syncing": `rooms.join`,
//! `rooms.leave`): each room's timeline slice (`timeline`), the state
//! before it (`state`), its member summary, sent only when it may have
//! changed, and its unread notification counts (from push actions). What it needs read goes into the plan's
//! room queries; what it made is in each room's `RoomTimeline`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma::{
    OwnedEventId, OwnedUserId, UInt,
    api::client::sync::sync_events::{
        UnreadNotificationsCount,
        v3::{RoomSummary, Timeline},
    },
    events::TimelineEventType,
    serde::Raw,
};

use super::{
    super::scope::{Membership, RoomView, Scope, StateWanted},
    raw, state,
    timeline::{self, Slice},
};
use crate::{
    rooms::{StateMap, pdu::Pdu},
    storage::{
        rooms::StoredEvent,
        sync::{NotificationCounts, RoomDetails, RoomDetailsQuery, UnreadCount},
    },
    sync::SyncError,
};

/// What the section has of one room.
pub struct RoomTimeline {
    pub slice: Slice,
    /// The state to send, as event ids.
    pub state: StateMap,
    /// Member summary and unread count, as far as read.
    pub details: Option<RoomDetails>,
    /// Whether the events read have a membership change (so the client's
    /// member summary is out of date).
    member_change: bool,
    /// The state groups at the positions asked for (`RoomDetailsQuery::state_at`).
    state_groups: Vec<Option<i64>>,
    /// Sliding sync: the whole state at the timeline's end, once resolved
    /// (name, avatar and heroes are read from it).
    pub end_state: Option<Arc<StateMap>>,
    /// The bundled aggregations of the response's timeline events, by
    /// event id (read once for all rooms, shared).
    pub aggregations: Arc<HashMap<OwnedEventId, serde_json::Value>>,
}

impl RoomTimeline {
    pub fn new(view: &RoomView) -> Self {
        let until = view.timeline.map(|(_, until)| until).unwrap_or_default();
        Self {
            slice: Slice::empty(until),
            state: StateMap::new(),
            details: None,
            member_change: false,
            state_groups: vec![],
            end_state: None,
            aggregations: Arc::default(),
        }
    }

    /// Whether the response carries the room's member summary: the spec
    /// requires it only when it changed, and counting members of a large
    /// room for every message would make fan-out cost grow with its size.
    fn needs_member_summary(&self, view: &RoomView) -> bool {
        view.membership == Membership::Join && (view.initial || self.slice.limited || self.member_change)
    }

    fn lacks_unread(&self, view: &RoomView) -> bool {
        view.membership == Membership::Join && self.details.as_ref().is_none_or(|d| d.unread.is_none())
    }

    fn lacks_member_summary(&self, view: &RoomView) -> bool {
        self.needs_member_summary(view) && self.details.as_ref().is_none_or(|d| d.members.is_none())
    }

    /// Whether the state sent is computed from state groups (else only
    /// lazy-loaded members are added to a complete incremental timeline).
    pub fn needs_state_groups(&self, view: &RoomView) -> bool {
        match view.state {
            // A room left: its state is read as it was when the user left
            // (the current state may be later than that).
            StateWanted::BeforeTimeline => {
                view.initial || self.slice.limited || matches!(view.membership, Membership::Leave(_))
            }
            // Sliding sync's state is the state at the timeline's end.
            StateWanted::Required { .. } => view.timeline.is_some(),
        }
    }

    /// Whether this section has nothing new for the room: no events, no
    /// state, and no state to compute.
    pub fn nothing_new(&self, view: &RoomView) -> bool {
        !self.needs_state_groups(view) && self.slice.events.is_empty() && self.state.is_empty()
    }

    /// Whether the room, if kept, needs the plan's second read.
    pub fn lacks_details(&self, view: &RoomView) -> bool {
        let before_known = self.slice.before_group.is_some() && view.initial;
        let needs_groups =
            self.needs_state_groups(view) && (matches!(view.state, StateWanted::Required { .. }) || !before_known);
        self.lacks_unread(view) || self.lacks_member_summary(view) || needs_groups
    }

    /// Settles the state group at the timeline's start from the second
    /// read when the first did not tell it, and adds every group the state
    /// is computed from to `groups`.
    pub fn state_groups_needed(&mut self, view: &RoomView, groups: &mut Vec<i64>) {
        if let StateWanted::Required { .. } = view.state {
            groups.extend(self.state_groups.iter().copied().flatten());
            return;
        }
        let mut found = self.state_groups.iter().copied();
        if self.slice.before_group.is_none() {
            self.slice.before_group = Some(found.next().flatten());
        }
        groups.extend(self.slice.before_group.flatten());
        groups.extend(found.flatten());
    }
}

/// The timeline range of the first read, one event more than the limit
/// (so `limited` is known).
pub fn timeline_query(view: &RoomView) -> Option<(i64, i64, usize)> {
    view.timeline.map(|(after, until)| (after, until, view.timeline_limit + 1))
}

fn joined_with_news(view: &RoomView) -> bool {
    view.membership == Membership::Join && view.timeline.is_some()
}

/// Whether the first read counts unread messages, and from which count on.
pub fn unread_query(scope: &Scope<'_>, view: &RoomView) -> Option<Option<UnreadCount>> {
    joined_with_news(view).then(|| scope.syncer.rooms.last_unread_count(&view.room_id, scope.user_id))
}

/// Whether the first read reads the member summary.
pub fn summary_query(view: &RoomView) -> bool {
    joined_with_news(view) && view.initial
}

/// Takes the room's part of the first read; returns its events, parsed
/// (from the event cache when there), newest first.
pub fn take_rows(
    scope: &Scope<'_>,
    view: &RoomView,
    room: &mut RoomTimeline,
    details: Option<RoomDetails>,
    events: Vec<StoredEvent>,
) -> Result<Vec<Arc<Pdu>>, SyncError> {
    let rooms = &scope.syncer.rooms;
    if let Some(details) = details {
        if let Some(unread) = &details.unread {
            rooms.remember_unread_count(&view.room_id, scope.user_id, unread.clone());
        }
        room.details = Some(details);
    }
    let events = events.into_iter().map(|e| rooms.pdu_from_stored(e)).collect::<Result<Vec<_>, _>>()?;
    room.member_change = events.iter().any(|e| *e.kind() == TimelineEventType::RoomMember);
    Ok(events)
}

/// Cuts the timeline slice from the events read (their state groups are
/// already read, for the visibility rules).
pub async fn cut_timeline(
    scope: &Scope<'_>,
    view: &RoomView,
    room: &mut RoomTimeline,
    events: Vec<Arc<Pdu>>,
) -> Result<(), SyncError> {
    if let Some((after, until)) = view.timeline {
        room.slice = timeline::slice(scope, view, events, after, until).await?;
    }
    Ok(())
}

/// The state of a complete incremental timeline, which needs no state groups.
pub async fn state_without_groups(
    scope: &Scope<'_>,
    view: &RoomView,
    room: &mut RoomTimeline,
) -> Result<(), SyncError> {
    let heroes = lazy_heroes(scope, &room.details);
    room.state = state::without_groups(scope, &view.room_id, &room.slice, &heroes).await?;
    Ok(())
}

/// The heroes of the member summary sent, whose memberships a lazy-loading
/// client is sent with it (spec: `m.heroes`: "When lazy-loading room
/// members is enabled, the membership events for the heroes MUST be
/// included in the `state`, unless they are redundant").
fn lazy_heroes<'d>(scope: &Scope<'_>, details: &'d Option<RoomDetails>) -> Vec<&'d str> {
    if !scope.timeline.lazy_members.is_on() {
        return vec![];
    }
    let Some(members) = details.as_ref().and_then(|d| d.members.as_ref()) else { return vec![] };
    members.heroes.iter().map(String::as_str).filter(|u| *u != scope.user_id.as_str()).take(5).collect()
}

/// The second read of a kept room: the state groups at the timeline's
/// start (unless the first read told it) and at the token, and the unread
/// count and member summary still missing.
pub fn details_query(scope: &Scope<'_>, view: &RoomView, room: &RoomTimeline) -> RoomDetailsQuery {
    let mut state_at = Vec::new();
    if let (StateWanted::Required { .. }, Some((after, until))) = (&view.state, view.timeline) {
        // At the timeline's end, and where the connection's copy ends.
        state_at.push(until);
        if !view.initial {
            state_at.push(after);
        }
    } else if room.needs_state_groups(view) {
        if room.slice.before_group.is_none() {
            state_at.push(room.slice.before);
        }
        if !view.initial {
            state_at.push(scope.window.since.map(|s| s.events).unwrap_or(0));
        }
    }
    RoomDetailsQuery {
        room_id: view.room_id.to_string(),
        state_at,
        unread: room.lacks_unread(view).then(|| scope.syncer.rooms.last_unread_count(&view.room_id, scope.user_id)),
        members: room.lacks_member_summary(view),
    }
}

/// Takes the room's part of the second read.
pub fn take_details(scope: &Scope<'_>, view: &RoomView, room: &mut RoomTimeline, details: RoomDetails) {
    room.state_groups = details.state_groups;
    if view.membership == Membership::Join {
        let known = room.details.get_or_insert_with(RoomDetails::default);
        if let Some(unread) = details.unread {
            scope.syncer.rooms.remember_unread_count(&view.room_id, scope.user_id, unread.clone());
            known.unread = Some(unread);
        }
        if details.members.is_some() {
            known.members = details.members;
        }
    }
}

/// The state of a new or gappy timeline (its state groups already read).
pub async fn state_from_groups(scope: &Scope<'_>, view: &RoomView, room: &mut RoomTimeline) -> Result<(), SyncError> {
    if let StateWanted::Required { config, members_sent } = &view.state {
        let end = room.state_groups.first().copied().flatten();
        let since = room.state_groups.get(1).copied().flatten();
        let (state, end_state) = state::required(scope, view, &room.slice, (end, since), config, members_sent).await?;
        room.state = state;
        room.end_state = Some(end_state);
        return Ok(());
    }
    let at_since = room.state_groups.last().copied().flatten();
    let heroes = lazy_heroes(scope, &room.details);
    room.state = state::from_groups(scope, view, &room.slice, at_since, &heroes).await?;
    Ok(())
}

/// The state events to send, ordered as `Rooms` orders state.
pub async fn state_events(scope: &Scope<'_>, room: &RoomTimeline) -> Result<Vec<Arc<Pdu>>, SyncError> {
    Ok(scope.syncer.rooms.state_events(&room.state).await?)
}

/// The room's `timeline` as the response carries it.
pub async fn timeline(scope: &Scope<'_>, room: &RoomTimeline) -> Result<Timeline, SyncError> {
    let mut events = Vec::with_capacity(room.slice.events.len());
    for pdu in &room.slice.events {
        let mut event = scope
            .syncer
            .rooms
            .client_event_bundled(pdu, scope.user_id, Some(scope.device_id), &room.aggregations)
            .await?;
        if let Some(obj) = event.as_object_mut() {
            obj.remove("room_id"); // the sync format omits it
        }
        events.push(raw(event));
    }
    Ok(timeline::section(&room.slice, events))
}

/// Events in the client format of sync (no `room_id`; the sender's own
/// events carry their transaction id).
pub async fn client_events<T>(scope: &Scope<'_>, pdus: &[Arc<Pdu>]) -> Result<Vec<Raw<T>>, SyncError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        let mut event = scope.syncer.rooms.client_event(pdu, Some((scope.user_id, scope.device_id))).await?;
        if let Some(obj) = event.as_object_mut() {
            obj.remove("room_id"); // the sync format omits it
        }
        out.push(raw(event));
    }
    Ok(out)
}

/// The member summary, when it was read (only when it may have changed).
pub fn summary(scope: &Scope<'_>, room: &RoomTimeline) -> Option<RoomSummary> {
    let members = room.details.as_ref()?.members.as_ref()?;
    let mut summary = RoomSummary::new();
    summary.joined_member_count = Some(UInt::try_from(members.joined_count.max(0) as u64).unwrap_or_default());
    summary.invited_member_count = Some(UInt::try_from(members.invited_count.max(0) as u64).unwrap_or_default());
    summary.heroes = members
        .heroes
        .iter()
        .filter(|u| *u != scope.user_id.as_str())
        .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
        .take(5)
        .collect();
    Some(summary)
}

/// The unread notification counts of a joined room the response carries:
/// the room's, and each thread's when the filter asks for them apart.
pub fn unread(
    scope: &Scope<'_>,
    room: &RoomTimeline,
) -> (UnreadNotificationsCount, BTreeMap<OwnedEventId, UnreadNotificationsCount>) {
    // Every joined room the response carries had its unread count read.
    debug_assert!(room.details.as_ref().is_some_and(|d| d.unread.is_some()), "a returned room has its unread count");
    let count = room.details.as_ref().and_then(|d| d.unread.clone()).unwrap_or_default();
    let to_client = |c: NotificationCounts| {
        let mut unread = UnreadNotificationsCount::new();
        unread.notification_count = Some(UInt::try_from(c.notifications).unwrap_or(UInt::MAX));
        unread.highlight_count = Some(UInt::try_from(c.highlights).unwrap_or(UInt::MAX));
        unread
    };
    if !scope.timeline.thread_counts {
        return (to_client(count.total()), BTreeMap::new());
    }
    let threads = count
        .threads
        .iter()
        .filter_map(|(root, c)| Some((OwnedEventId::try_from(root.as_str()).ok()?, to_client(*c))))
        .collect();
    (to_client(count.main), threads)
}
