//! The `/sync` response (client-server API, "Syncing", `GET /sync`):
//! chooses the rooms it covers from the user's memberships, the token and
//! the filter, runs the read plan, and places what each section made.
//! The response covers positions up to the `next_batch` it returns, read
//! when it starts, so a later sync neither repeats nor skips anything.

use std::collections::{BTreeMap, HashSet};

use ruma::{
    OwnedRoomId,
    api::client::{
        filter::{LazyLoadOptions, RoomFilter},
        sync::sync_events::v3::{JoinedRoom, LeftRoom, Response, Rooms, State, StateEvents},
    },
};

use super::{
    SyncError, SyncRequest, SyncToken, Syncer,
    members_sent::DeviceMembers,
    plan::{self, RoomPlan},
    scope::{EphemeralOptions, LazyMembers, Membership, RoomView, Scope, StateWanted, TimelineOptions, Window},
    sections::{
        account_data::{self, AccountData},
        device_keys::{self, DeviceListRows},
        ephemeral, memberships, presence, rooms, timeline, to_device,
    },
};
use crate::{
    push,
    rooms::{EventFilter, PaginationToken},
    storage::sync::SyncUserRows,
    streams::IgnoredUsers,
};

/// Whether an incremental response carries nothing for the client.
pub fn is_empty(r: &Response) -> bool {
    r.rooms.join.is_empty()
        && r.rooms.invite.is_empty()
        && r.rooms.leave.is_empty()
        && r.rooms.knock.is_empty()
        && r.presence.events.is_empty()
        && r.account_data.events.is_empty()
        && r.to_device.events.is_empty()
        && r.device_lists.changed.is_empty()
        && r.device_lists.left.is_empty()
}

/// One `/sync` response over the positions from `since` to those current
/// now: the user read, the rooms chosen, the room reads, then each part.
pub(super) async fn compute(
    syncer: &Syncer,
    req: &SyncRequest,
    since: Option<SyncToken>,
) -> Result<Response, SyncError> {
    let mut window = Window { since, until: syncer.notifier.current() };
    let to_device_after = Some(since.map(|s| s.misc));
    let rows = plan::read_user(syncer, &req.user_id, &req.device_id, &mut window, to_device_after).await?;
    let SyncUserRows {
        until_events: _,
        memberships_changed,
        memberships,
        account_data,
        rooms_changed,
        presence,
        new_room_mates,
        to_device,
        to_device_to_ack,
        device_list_changes,
        users_sharing_rooms,
        membership_changes_seen,
        one_time_key_counts,
        unused_fallback_algorithms,
    } = rows;
    let members_sent = members_sent(syncer, req);
    let scope = Scope {
        syncer,
        user_id: &req.user_id,
        device_id: &req.device_id,
        window,
        timeline: timeline_options(req, members_sent.as_ref(), syncer.streams.ignored_users(&req.user_id).await?),
        ephemeral: EphemeralOptions { receipts: true, typing: true },
    };

    let mut response = Response::new(window.until.to_string());
    let mut account_data = AccountData::from_rows(account_data);
    if scope.window.since.is_none() {
        // A user who never changed their push rules has the defaults.
        account_data.add_global_default("m.push_rules", || push::server_default_rules(scope.user_id));
    }
    let global_filter = EventFilter {
        types: req.filter.account_data.types.clone(),
        not_types: req.filter.account_data.not_types.clone(),
        ..EventFilter::default()
    };
    account_data.retain_types(&global_filter, &timeline::event_filter(&req.filter.room.account_data));
    response.account_data.events = account_data.take_global();
    let membership_rows = MembershipRows { current: memberships, changed: memberships_changed, rooms_changed };
    let mut plans = select_rooms(&scope, req, membership_rows, &mut account_data, &mut response.rooms).await?;
    plan::read_rooms(&scope, &mut plans).await?;
    for plan in plans {
        let room_id = plan.view.room_id.clone();
        match plan.view.membership {
            Membership::Join => {
                if let Some(joined) = joined_room(&scope, plan).await? {
                    response.rooms.join.insert(room_id, joined);
                }
            }
            Membership::Leave(_) => {
                response.rooms.leave.insert(room_id, left_room(&scope, plan).await?);
            }
        }
    }

    let acked = since.filter(|_| to_device_to_ack).map(|s| s.misc);
    response.to_device.events = to_device::events(&scope, to_device, acked).await?;
    if since.is_some() {
        let rows = DeviceListRows { changes: device_list_changes, users_sharing_rooms, membership_changes_seen };
        response.device_lists = device_keys::device_lists(&req.user_id, rows);
    }
    response.device_one_time_keys_count = device_keys::one_time_key_counts(one_time_key_counts);
    response.device_unused_fallback_key_types = Some(device_keys::fallback_key_types(unused_fallback_algorithms));
    response.presence.events = presence::events(presence, new_room_mates);
    if let Some(members_sent) = members_sent {
        members_sent.sent_with(&response.next_batch);
    }
    Ok(response)
}

/// The device's record of the membership events it has, when members are
/// lazy-loaded and redundant ones left out. An initial sync starts it
/// afresh: the client has no members yet (as Synapse does).
fn members_sent<'s>(syncer: &'s Syncer, req: &SyncRequest) -> Option<DeviceMembers<'s>> {
    let LazyLoadOptions::Enabled { include_redundant_members: false } = req.filter.room.state.lazy_load_options else {
        return None;
    };
    Some(syncer.members_sent.device(&req.user_id, &req.device_id, req.since.as_deref()))
}

fn timeline_options<'a>(
    req: &SyncRequest,
    members_sent: Option<&'a DeviceMembers<'a>>,
    ignored: IgnoredUsers,
) -> TimelineOptions<'a> {
    let filter: &RoomFilter = &req.filter.room;
    let lazy_members = match filter.state.lazy_load_options {
        LazyLoadOptions::Disabled => LazyMembers::Off,
        LazyLoadOptions::Enabled { .. } => LazyMembers::On { sent: members_sent },
    };
    TimelineOptions {
        filter: EventFilter { ignored, ..timeline::event_filter(&filter.timeline) },
        lazy_members,
        state_filter: timeline::event_filter(&filter.state),
        thread_counts: filter.timeline.unread_thread_notifications,
    }
}

/// The user's memberships as the user read found them:
/// `(room_id, membership, stream_ordering)`.
struct MembershipRows {
    /// Every current membership (incremental syncs only).
    current: Vec<(String, String, i64)>,
    /// Memberships changed in the window.
    changed: Vec<(String, String, i64)>,
    /// Rooms with events in the window (incremental syncs only).
    rooms_changed: Vec<String>,
}

/// The rooms the response covers. Every joined room is examined on an
/// incremental sync too (new events, receipts, typing or account data may
/// be waiting); rooms whose membership changed in the window are too, and
/// invites, knocks and declined remote invites go straight into `out`.
async fn select_rooms(
    scope: &Scope<'_>,
    req: &SyncRequest,
    rows: MembershipRows,
    account_data: &mut AccountData,
    out: &mut Rooms,
) -> Result<Vec<RoomPlan>, SyncError> {
    let filter = &req.filter.room;
    let Window { since, until } = scope.window;
    let timeline_limit = timeline::sync_timeline_limit(filter.timeline.limit);
    let room_allowed = |room: &str| {
        filter.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == room))
            && !filter.not_rooms.iter().any(|r| r.as_str() == room)
    };
    let mut in_view: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (room, membership, pos) in rows.current {
        if membership == "join" {
            in_view.insert(room, (membership, pos));
        }
    }
    for (room, membership, pos) in rows.changed {
        in_view.insert(room, (membership, pos));
    }
    let with_events: HashSet<String> = rows.rooms_changed.into_iter().collect();

    let mut plans = Vec::new();
    for (room, (membership, pos)) in in_view {
        if !room_allowed(&room) {
            continue;
        }
        let Ok(room_id) = OwnedRoomId::try_from(room.as_str()) else { continue };
        let changed_membership = since.is_none_or(|s| pos > s.events);
        let left_shown = changed_membership && (since.is_some() || filter.include_leave);
        match membership.as_str() {
            "join" => {
                let initial = changed_membership || req.full_state;
                let after = if initial { 0 } else { since.unwrap_or_default().events };
                let timeline = (initial || with_events.contains(&room)).then_some((after, until.events));
                let view = RoomView {
                    room_id,
                    membership: Membership::Join,
                    initial,
                    timeline,
                    timeline_limit,
                    state: StateWanted::BeforeTimeline,
                };
                plans.push(RoomPlan::new(view, account_data.take_room(&room)));
            }
            "invite" if changed_membership => {
                // Spec: "Ignoring Users": invites from ignored users are not sent.
                if let Some(invited) = memberships::invited_room(scope, &room_id).await? {
                    out.invite.insert(room_id, invited);
                }
            }
            "knock" if changed_membership => {
                out.knock.insert(room_id.clone(), memberships::knocked_room(scope, &room_id).await?);
            }
            "leave" | "ban" if left_shown && !scope.syncer.rooms.knows_room(&room_id).await? => {
                // A declined invite to a room on another server: no events,
                // its timeline starts and ends at the decline.
                let mut left = LeftRoom::new();
                left.timeline.prev_batch = Some(PaginationToken(pos).to_string());
                out.leave.insert(room_id, left);
            }
            "leave" | "ban" if left_shown => {
                let initial = since.is_none() || req.full_state;
                let after = since.map(|s| s.events).unwrap_or(0);
                let timeline = Some((after.min(pos), pos));
                let membership = Membership::Leave(membership.clone());
                let view = RoomView {
                    room_id,
                    membership,
                    initial,
                    timeline,
                    timeline_limit,
                    state: StateWanted::BeforeTimeline,
                };
                plans.push(RoomPlan::new(view, account_data.take_room(&room)));
            }
            _ => {}
        }
    }
    Ok(plans)
}

/// A joined room, unless an incremental sync has nothing for it.
async fn joined_room(scope: &Scope<'_>, plan: RoomPlan) -> Result<Option<JoinedRoom>, SyncError> {
    let RoomPlan { view, timeline, ephemeral, account_data } = plan;
    let state = state_events(scope, &timeline).await?;
    if !view.initial
        && timeline.slice.events.is_empty()
        && state.is_empty()
        && ephemeral.events.is_empty()
        && account_data.is_empty()
    {
        return Ok(None);
    }
    let mut joined = JoinedRoom::new();
    joined.timeline = rooms::timeline(scope, &timeline).await?;
    joined.state = State::Before(StateEvents::from(rooms::client_events(scope, &state).await?));
    joined.ephemeral = ephemeral::section(ephemeral.events);
    joined.account_data.events = account_data::raw_events(account_data);
    if let Some(summary) = rooms::summary(scope, &timeline) {
        joined.summary = summary;
    }
    (joined.unread_notifications, joined.unread_thread_notifications) = rooms::unread(scope, &timeline);
    Ok(Some(joined))
}

/// A room the user left or was banned from, up to that moment.
async fn left_room(scope: &Scope<'_>, plan: RoomPlan) -> Result<LeftRoom, SyncError> {
    let state = state_events(scope, &plan.timeline).await?;
    let mut left = LeftRoom::new();
    left.timeline = rooms::timeline(scope, &plan.timeline).await?;
    left.state = State::Before(StateEvents::from(rooms::client_events(scope, &state).await?));
    left.account_data.events = account_data::raw_events(plan.account_data);
    Ok(left)
}

/// The room's `state` events the filter's `room.state` lets through.
async fn state_events(
    scope: &Scope<'_>,
    timeline: &rooms::RoomTimeline,
) -> Result<Vec<std::sync::Arc<crate::rooms::pdu::Pdu>>, SyncError> {
    let mut state = rooms::state_events(scope, timeline).await?;
    state.retain(|pdu| scope.timeline.state_filter.allows(pdu));
    Ok(state)
}
