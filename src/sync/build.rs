//! Building one sync response from the stores, bounded by the stream
//! positions current when it starts, so the `next_batch` it returns
//! covers exactly what it delivered.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, UInt,
    api::client::{
        filter::{LazyLoadOptions, RoomEventFilter},
        sync::sync_events::{
            UnreadNotificationsCount,
            v3::{
                Ephemeral, InviteState, InvitedRoom, JoinedRoom, KnockState, KnockedRoom, LeftRoom, Response,
                RoomSummary, State, StateEvents, Timeline,
            },
        },
    },
    events::{StateEventType, TimelineEventType},
    serde::Raw,
};
use serde_json::{Map, Value, json};

use super::{SyncError, SyncRequest, SyncToken, Syncer};
use crate::{
    rooms::{EventFilter, StateMap, pdu::Pdu, visibility::VisibilityCheck},
    storage::sync::{MemberSummary, RoomDetails, RoomDetailsQuery, SyncRoomQuery, SyncUserQuery, UnreadCount},
    streams::presence_info,
};

/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The most timeline events per room, whatever the filter asks.
const MAX_TIMELINE_LIMIT: usize = 500;

use crate::rooms::STRIPPED_STATE;

fn raw<T>(value: Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("a JSON value always serialises"))
}

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

struct Ctx<'a> {
    syncer: &'a Syncer,
    req: &'a SyncRequest,
    since: Option<SyncToken>,
    timeline_limit: usize,
    timeline_filter: EventFilter,
    lazy_members: bool,
}

/// A room the response may carry, and what is known of it so far.
struct RoomPlan {
    room_id: OwnedRoomId,
    kind: PlanKind,
    /// Whether the client gets the room's full state (new to it, or `full_state`).
    initial: bool,
    /// The timeline range to read, `(after, until]`, if any.
    timeline: Option<(i64, i64)>,
    receipts: (i64, i64),
    account_data: Vec<Value>,
    slice: Slice,
    receipt_rows: Vec<crate::storage::streams::ReceiptRow>,
    ephemeral: Vec<Value>,
    state: StateMap,
    /// Member summary and unread count, as far as read.
    details: Option<RoomDetails>,
    /// Whether the events read have a membership change (so the client's
    /// member summary is out of date).
    member_change: bool,
    /// The state groups at the positions asked for (`RoomDetailsQuery::state_at`).
    state_groups: Vec<Option<i64>>,
}

#[derive(PartialEq, Eq)]
enum PlanKind {
    Join,
    /// Left or banned: the membership as stored.
    Leave(String),
}

pub(super) async fn compute(
    syncer: &Syncer,
    req: &SyncRequest,
    since: Option<SyncToken>,
) -> Result<Response, SyncError> {
    let mut now = syncer.notifier.current();
    let user = req.user_id.to_string();
    let rows = syncer
        .db
        .sync_user_rows(SyncUserQuery {
            user_id: user.clone(),
            device_id: req.device_id.to_string(),
            since: since.map(|s| (s.events, s.misc)),
            until_events: now.events,
            until_misc: now.misc,
            presence: syncer.streams.presence_enabled(),
        })
        .await?;
    // A membership committed before the notifier heard of it: every event
    // up to it is committed too, so the response may safely cover it.
    now.events = rows.until_events;
    let room_filter = &req.filter.room;
    let timeline_limit = room_filter
        .timeline
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, MAX_TIMELINE_LIMIT);
    let ctx = Ctx {
        syncer,
        req,
        since,
        timeline_limit,
        timeline_filter: event_filter(&room_filter.timeline),
        lazy_members: matches!(room_filter.state.lazy_load_options, LazyLoadOptions::Enabled { .. }),
    };
    let room_allowed = |room: &str| {
        room_filter.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == room))
            && !room_filter.not_rooms.iter().any(|r| r.as_str() == room)
    };

    let mut response = Response::new(now.to_string());
    let mut room_account_data: HashMap<String, Vec<Value>> = HashMap::new();
    for row in rows.account_data {
        let content: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
        let event = json!({"type": row.kind, "content": content});
        if row.room_id.is_empty() {
            response.account_data.events.push(raw(event));
        } else {
            room_account_data.entry(row.room_id).or_default().push(event);
        }
    }

    // Every room the user is joined to is examined on an incremental sync
    // too: new events, receipts, typing or account data may be waiting.
    let mut rooms: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (room, membership, pos) in rows.memberships {
        if membership == "join" {
            rooms.insert(room, (membership, pos));
        }
    }
    for (room, membership, pos) in rows.memberships_changed {
        rooms.insert(room, (membership, pos));
    }
    let changed_rooms: HashSet<String> = rows.rooms_changed.into_iter().collect();

    let mut plans = Vec::new();
    for (room, (membership, pos)) in rooms {
        if !room_allowed(&room) {
            continue;
        }
        let Ok(room_id) = OwnedRoomId::try_from(room.as_str()) else { continue };
        let changed_membership = since.is_none_or(|s| pos > s.events);
        match membership.as_str() {
            "join" => {
                let initial = changed_membership || req.full_state;
                let s = since.unwrap_or_default();
                let after = if initial { 0 } else { s.events };
                let misc_since = if initial { 0 } else { s.misc };
                let account_data = room_account_data.remove(&room).unwrap_or_default();
                let timeline = (initial || changed_rooms.contains(&room)).then_some((after, now.events));
                plans.push(RoomPlan::new(
                    room_id,
                    PlanKind::Join,
                    initial,
                    timeline,
                    (misc_since, now.misc),
                    account_data,
                ));
            }
            "invite" if changed_membership => {
                let events = stripped_state(&ctx, &room_id).await?;
                response.rooms.invite.insert(room_id, InvitedRoom::from(InviteState::from(events)));
            }
            "knock" if changed_membership => {
                let events = stripped_state(&ctx, &room_id).await?;
                let mut state = KnockState::new();
                state.events = events;
                response.rooms.knock.insert(room_id, KnockedRoom::from(state));
            }
            "leave" | "ban"
                if changed_membership
                    && (since.is_some() || room_filter.include_leave)
                    && !syncer.rooms.knows_room(&room_id).await? =>
            {
                // A declined invite to a room on another server.
                response.rooms.leave.insert(room_id.clone(), LeftRoom::new());
            }
            "leave" | "ban" if changed_membership && (since.is_some() || room_filter.include_leave) => {
                let initial = since.is_none() || req.full_state;
                let after = since.map(|s| s.events).unwrap_or(0);
                let account_data = room_account_data.remove(&room).unwrap_or_default();
                let timeline = Some((after.min(pos), pos));
                plans.push(RoomPlan::new(
                    room_id,
                    PlanKind::Leave(membership.clone()),
                    initial,
                    timeline,
                    (0, 0),
                    account_data,
                ));
            }
            _ => {}
        }
    }

    rooms_section(&ctx, &mut plans).await?;
    for plan in plans {
        match plan.kind {
            PlanKind::Join => {
                if let Some(joined) = joined_room(&ctx, plan).await? {
                    response.rooms.join.insert(joined.0, joined.1);
                }
            }
            PlanKind::Leave(_) => {
                let (room_id, left) = left_room(&ctx, plan).await?;
                response.rooms.leave.insert(room_id, left);
            }
        }
    }

    e2ee_sections(
        &ctx,
        &mut response,
        DeviceRows {
            to_device: rows.to_device,
            to_device_to_ack: rows.to_device_to_ack,
            device_list_changes: rows.device_list_changes,
            users_sharing_rooms: rows.users_sharing_rooms,
            membership_changes_seen: rows.membership_changes_seen,
            one_time_key_counts: rows.one_time_key_counts,
            unused_fallback_algorithms: rows.unused_fallback_algorithms,
        },
    )
    .await?;

    for row in rows.presence {
        let info = presence_info(&row);
        let mut content = json!({"presence": info.state, "currently_active": info.currently_active});
        if let Some(ago) = info.last_active_ago {
            content["last_active_ago"] = json!(ago);
        }
        if let Some(msg) = info.status_msg {
            content["status_msg"] = json!(msg);
        }
        response.presence.events.push(raw(json!({"type": "m.presence", "sender": row.user_id, "content": content})));
    }
    Ok(response)
}

impl RoomPlan {
    fn new(
        room_id: OwnedRoomId,
        kind: PlanKind,
        initial: bool,
        timeline: Option<(i64, i64)>,
        receipts: (i64, i64),
        account_data: Vec<Value>,
    ) -> Self {
        let until = timeline.map(|(_, until)| until).unwrap_or_default();
        Self {
            room_id,
            kind,
            initial,
            timeline,
            receipts,
            account_data,
            slice: Slice { events: vec![], limited: false, before: until, before_group: None },
            receipt_rows: vec![],
            ephemeral: vec![],
            state: StateMap::new(),
            details: None,
            member_change: false,
            state_groups: vec![],
        }
    }

    /// Whether the response carries the room's member summary: the spec
    /// requires it only when it changed, and counting members of a large
    /// room for every message would make fan-out cost grow with its size.
    fn needs_member_summary(&self) -> bool {
        self.kind == PlanKind::Join && (self.initial || self.slice.limited || self.member_change)
    }

    fn lacks_unread(&self) -> bool {
        self.kind == PlanKind::Join && self.details.as_ref().is_none_or(|d| d.unread.is_none())
    }

    fn lacks_member_summary(&self) -> bool {
        self.needs_member_summary() && self.details.as_ref().is_none_or(|d| d.members.is_none())
    }

    /// Whether an incremental sync has nothing for this joined room (once
    /// its timeline, state and ephemeral events are known).
    fn nothing_new(&self) -> bool {
        self.kind == PlanKind::Join
            && !self.needs_state_groups()
            && self.slice.events.is_empty()
            && self.state.is_empty()
            && self.ephemeral.is_empty()
            && self.account_data.is_empty()
    }

    /// Whether the state sent is computed from state groups (else only
    /// lazy-loaded members are added to a complete incremental timeline).
    fn needs_state_groups(&self) -> bool {
        self.initial || self.slice.limited
    }
}

/// Reads the timelines, receipts, state and summaries of every room in
/// the response with a few batched reads, not a few per room.
async fn rooms_section(ctx: &Ctx<'_>, plans: &mut [RoomPlan]) -> Result<(), SyncError> {
    let syncer = ctx.syncer;
    let user = &ctx.req.user_id;
    // A joined room with new events is almost surely returned: its unread
    // count (and for a room new to the client, its member summary) is read
    // in the same pass.
    let queries = plans
        .iter()
        .map(|p| {
            let joined_with_news = p.kind == PlanKind::Join && p.timeline.is_some();
            SyncRoomQuery {
                room_id: p.room_id.to_string(),
                timeline: p.timeline.map(|(after, until)| (after, until, ctx.timeline_limit + 1)),
                receipts: p.receipts,
                unread: joined_with_news.then(|| syncer.rooms.last_unread_count(&p.room_id, user)),
                members: joined_with_news && p.initial,
            }
        })
        .collect();
    let room_rows = syncer.db.sync_room_rows(user.to_string(), queries).await?;
    let mut stored = Vec::with_capacity(plans.len());
    for (plan, rows) in plans.iter_mut().zip(room_rows) {
        plan.receipt_rows = rows.receipts;
        if let Some(details) = rows.details {
            if let Some(unread) = details.unread {
                syncer.rooms.remember_unread_count(&plan.room_id, user, unread);
            }
            plan.details = Some(details);
        }
        let events = rows.events.into_iter().map(|e| syncer.rooms.pdu_from_stored(e)).collect::<Result<Vec<_>, _>>()?;
        plan.member_change = events.iter().any(|e| *e.kind() == TimelineEventType::RoomMember);
        stored.push(events);
    }
    // The state groups the visibility rules look at, in one read.
    syncer.rooms.preload_state_groups(stored.iter().flatten().filter_map(|p| p.state_group)).await?;
    for (plan, events) in plans.iter_mut().zip(stored) {
        if let Some((after, until)) = plan.timeline {
            plan.slice = timeline_slice(ctx, plan, events, after, until).await?;
        }
    }

    // What an incremental sync has for a room it may leave out is known
    // without further reads: summaries are read only for rooms it keeps.
    for plan in plans.iter_mut() {
        plan.ephemeral = ephemeral(ctx, plan);
        if !plan.needs_state_groups() {
            plan.state = state_for(ctx, plan).await?;
        }
    }
    let kept: Vec<usize> = (0..plans.len())
        .filter(|i| {
            let p = &plans[*i];
            let needs_groups = p.needs_state_groups() && (p.slice.before_group.is_none() || !p.initial);
            !p.nothing_new() && (p.lacks_unread() || p.lacks_member_summary() || needs_groups)
        })
        .collect();
    let details = kept
        .iter()
        .map(|i| &plans[*i])
        .map(|p| {
            let mut state_at = Vec::new();
            if p.needs_state_groups() {
                if p.slice.before_group.is_none() {
                    state_at.push(p.slice.before);
                }
                if !p.initial {
                    state_at.push(ctx.since.map(|s| s.events).unwrap_or(0));
                }
            }
            RoomDetailsQuery {
                room_id: p.room_id.to_string(),
                state_at,
                unread: p.lacks_unread().then(|| syncer.rooms.last_unread_count(&p.room_id, user)),
                members: p.lacks_member_summary(),
            }
        })
        .collect();
    let details = syncer.db.sync_room_details(user.to_string(), details).await?;
    for (i, details) in kept.into_iter().zip(details) {
        let plan = &mut plans[i];
        plan.state_groups = details.state_groups;
        if plan.kind == PlanKind::Join {
            let known = plan.details.get_or_insert_with(RoomDetails::default);
            if let Some(unread) = details.unread {
                syncer.rooms.remember_unread_count(&plan.room_id, user, unread);
                known.unread = Some(unread);
            }
            if details.members.is_some() {
                known.members = details.members;
            }
        }
    }
    let mut groups = Vec::new();
    for plan in plans.iter_mut().filter(|p| p.needs_state_groups()) {
        let mut found = plan.state_groups.iter().copied();
        if plan.slice.before_group.is_none() {
            plan.slice.before_group = Some(found.next().flatten());
        }
        groups.extend(plan.slice.before_group.flatten());
        groups.extend(found.flatten());
    }
    syncer.rooms.preload_state_groups(groups).await?;
    for plan in plans.iter_mut().filter(|p| p.needs_state_groups()) {
        plan.state = state_for(ctx, plan).await?;
    }

    // The events the client formats refer to (state replaced, redactions):
    // fetch those not cached with one read.
    let state_events = syncer.rooms.get_pdus(plans.iter().flat_map(|p| p.state.values())).await?;
    let referenced: Vec<OwnedEventId> = plans
        .iter()
        .flat_map(|p| p.slice.events.iter())
        .chain(state_events.values())
        .flat_map(|p| p.replaces_state.iter().chain(p.redacted_by.iter()))
        .cloned()
        .collect();
    syncer.rooms.get_pdus(referenced.iter()).await?;
    Ok(())
}

/// To-device messages, device list changes and key counts, as read.
struct DeviceRows {
    to_device: Vec<crate::storage::e2ee::ToDeviceRow>,
    to_device_to_ack: bool,
    device_list_changes: Vec<String>,
    users_sharing_rooms: Vec<String>,
    membership_changes_seen: Vec<(String, String)>,
    one_time_key_counts: Vec<(String, i64)>,
    unused_fallback_algorithms: Vec<String>,
}

/// To-device messages, device list changes and one-time key counts.
async fn e2ee_sections(ctx: &Ctx<'_>, response: &mut Response, rows: DeviceRows) -> Result<(), SyncError> {
    let user = ctx.req.user_id.to_string();
    if let Some(since) = ctx.since
        && rows.to_device_to_ack
    {
        // Syncing with a token acknowledges what that token covered.
        ctx.syncer.db.ack_to_device(user.clone(), ctx.req.device_id.to_string(), since.misc).await?;
    }
    for msg in rows.to_device {
        let content: Value = serde_json::from_str(&msg.content).unwrap_or(Value::Null);
        response.to_device.events.push(raw(json!({"sender": msg.sender, "type": msg.kind, "content": content})));
    }
    if ctx.since.is_some() {
        let mut changed: std::collections::BTreeSet<String> = rows.device_list_changes.into_iter().collect();
        // New room-mates' devices are news too; former room-mates are `left`.
        let shared: HashSet<String> = rows.users_sharing_rooms.into_iter().collect();
        let mut left = std::collections::BTreeSet::new();
        for (other, membership) in rows.membership_changes_seen {
            if other == user {
                continue;
            }
            if membership == "join" && shared.contains(&other) {
                changed.insert(other);
            } else if membership != "join" && !shared.contains(&other) {
                left.insert(other);
            }
        }
        response.device_lists.changed = changed.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
        response.device_lists.left = left.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
    }
    for (algorithm, count) in rows.one_time_key_counts {
        response
            .device_one_time_keys_count
            .insert(algorithm.as_str().into(), UInt::try_from(count.max(0) as u64).unwrap_or_default());
    }
    response.device_one_time_keys_count.entry("signed_curve25519".into()).or_insert_with(|| UInt::from(0u32));
    response.device_unused_fallback_key_types =
        Some(rows.unused_fallback_algorithms.iter().map(|a| a.as_str().into()).collect());
    Ok(())
}

fn event_filter(filter: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.as_ref().map(|s| s.iter().map(|u| u.to_string()).collect()),
        not_senders: filter.not_senders.iter().map(|u| u.to_string()).collect(),
    }
}

/// A timeline slice: chronological events, whether older ones were left
/// out, and the position just before the first event.
struct Slice {
    events: Vec<Arc<Pdu>>,
    limited: bool,
    before: i64,
    /// The state group at `before`, when the rows read already tell it
    /// (`Some(None)`: no event at or before it).
    before_group: Option<Option<i64>>,
}

/// The newest visible events in `(after, until]`, at most the timeline
/// limit, from `stored` (newest first, one more than the limit).
async fn timeline_slice(
    ctx: &Ctx<'_>,
    plan: &RoomPlan,
    stored: Vec<Arc<Pdu>>,
    after: i64,
    until: i64,
) -> Result<Slice, SyncError> {
    let limited = stored.len() > ctx.timeline_limit;
    // The user's membership now: joined rooms are "join"; a room left is
    // read as the user left it.
    let membership = match &plan.kind {
        PlanKind::Join => "join".to_owned(),
        PlanKind::Leave(membership) => membership.clone(),
    };
    let mut check =
        VisibilityCheck::with_membership(&ctx.syncer.rooms, &plan.room_id, &ctx.req.user_id, Some(membership));
    let mut events = Vec::new();
    let mut oldest_kept = None;
    for (i, pdu) in stored.iter().take(ctx.timeline_limit).enumerate() {
        if ctx.timeline_filter.allows(pdu) && check.can_see(pdu).await? {
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

async fn client_events<T>(ctx: &Ctx<'_>, pdus: &[Arc<Pdu>]) -> Result<Vec<Raw<T>>, SyncError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        let mut event = ctx.syncer.rooms.client_event(pdu, Some((&ctx.req.user_id, &ctx.req.device_id))).await?;
        if let Some(obj) = event.as_object_mut() {
            obj.remove("room_id"); // the sync format omits it
        }
        out.push(raw(event));
    }
    Ok(out)
}

fn timeline(slice: &Slice, events: Vec<Raw<ruma::events::AnySyncTimelineEvent>>) -> Timeline {
    let mut timeline = Timeline::new();
    timeline.events = events;
    timeline.limited = slice.limited;
    timeline.prev_batch = Some(crate::rooms::PaginationToken(slice.before.max(0)).to_string());
    timeline
}

/// The state events to send with a timeline slice: everything at its
/// start for a room new to the client, else what changed since `since`
/// (nothing when the timeline is complete: the changes are in it).
/// The state groups it needs are already read.
async fn state_for(ctx: &Ctx<'_>, plan: &RoomPlan) -> Result<StateMap, SyncError> {
    let rooms = &ctx.syncer.rooms;
    let slice = &plan.slice;
    if !plan.needs_state_groups() {
        return lazy_members(ctx, &plan.room_id, slice, StateMap::new(), true).await;
    }
    let at_start = match slice.before_group.flatten() {
        Some(group) => rooms.state_at_group(group).await?,
        None => Arc::default(),
    };
    let wanted = if plan.initial {
        (*at_start).clone()
    } else {
        let at_since = match plan.state_groups.last().copied().flatten() {
            Some(group) => rooms.state_at_group(group).await?,
            None => Arc::default(),
        };
        at_start.iter().filter(|(k, id)| at_since.get(*k) != Some(*id)).map(|(k, id)| (k.clone(), id.clone())).collect()
    };
    lazy_members(ctx, &plan.room_id, slice, wanted, false).await
}

/// Applies lazy loading of members: member events only for the timeline's
/// senders (and the user). With `only_missing`, adds just those members.
async fn lazy_members(
    ctx: &Ctx<'_>,
    room: &OwnedRoomId,
    slice: &Slice,
    mut state: StateMap,
    only_missing: bool,
) -> Result<StateMap, SyncError> {
    let rooms = &ctx.syncer.rooms;
    let in_timeline: HashSet<&OwnedEventId> = slice.events.iter().map(|p| &p.event_id).collect();
    if ctx.lazy_members {
        let mut needed: HashSet<String> = slice.events.iter().map(|p| p.sender().to_string()).collect();
        needed.insert(ctx.req.user_id.to_string());
        state.retain(|(kind, key), _| *kind != StateEventType::RoomMember || needed.contains(key));
        let current = rooms.current_state(room).await?;
        for user in needed {
            let key = (StateEventType::RoomMember, user);
            if !state.contains_key(&key)
                && !only_missing
                && let Some(id) = current.get(&key)
            {
                state.insert(key, id.clone());
            }
        }
        if only_missing {
            // Incremental and complete timeline: members of new senders the
            // client may not know yet.
            for pdu in &slice.events {
                let key = (StateEventType::RoomMember, pdu.sender().to_string());
                if let Some(id) = current.get(&key) {
                    state.insert(key, id.clone());
                }
            }
        }
    } else if only_missing {
        return Ok(StateMap::new());
    }
    state.retain(|_, id| !in_timeline.contains(id));
    Ok(state)
}

/// Receipts as the `m.receipt` ephemeral event's content.
fn receipt_content(ctx: &Ctx<'_>, receipts: Vec<crate::storage::streams::ReceiptRow>) -> Map<String, Value> {
    let mut content = Map::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != ctx.req.user_id.as_str() {
            continue;
        }
        let mut entry = json!({"ts": r.ts});
        if !r.thread_id.is_empty() {
            entry["thread_id"] = json!(r.thread_id);
        }
        let by_event = content.entry(r.event_id).or_insert_with(|| json!({}));
        by_event[r.receipt_type.as_str()][r.user_id.as_str()] = entry;
    }
    content
}

/// The room's typing notice and new receipts.
fn ephemeral(ctx: &Ctx<'_>, plan: &mut RoomPlan) -> Vec<Value> {
    let mut ephemeral: Vec<Value> = Vec::new();
    if plan.kind != PlanKind::Join {
        return ephemeral;
    }
    let typing_since = if plan.initial { 0 } else { ctx.since.unwrap_or_default().typing };
    if let Some(typing) = ctx.syncer.streams.typing_in(&plan.room_id, typing_since) {
        ephemeral.push(json!({"type": "m.typing", "content": {"user_ids": typing}}));
    }
    let receipts = receipt_content(ctx, std::mem::take(&mut plan.receipt_rows));
    if !receipts.is_empty() {
        ephemeral.push(json!({"type": "m.receipt", "content": receipts}));
    }
    ephemeral
}

async fn joined_room(ctx: &Ctx<'_>, plan: RoomPlan) -> Result<Option<(OwnedRoomId, JoinedRoom)>, SyncError> {
    let RoomPlan { room_id, initial, account_data, slice, ephemeral, state, details, .. } = plan;
    let state = ctx.syncer.rooms.state_events(&state).await?;
    if !initial && slice.events.is_empty() && state.is_empty() && ephemeral.is_empty() && account_data.is_empty() {
        return Ok(None);
    }

    let mut joined = JoinedRoom::new();
    joined.timeline = timeline(&slice, client_events(ctx, &slice.events).await?);
    joined.state = State::Before(StateEvents::from(client_events(ctx, &state).await?));
    joined.ephemeral = {
        let mut e = Ephemeral::new();
        e.events = ephemeral.into_iter().map(raw).collect();
        e
    };
    joined.account_data.events = account_data.into_iter().map(raw).collect();
    // Every joined room the response carries had its unread count read.
    debug_assert!(details.as_ref().is_some_and(|d| d.unread.is_some()), "a returned room has its unread count");
    let details = details.unwrap_or_default();
    if let Some(members) = &details.members {
        joined.summary = summary(ctx, members);
    }
    joined.unread_notifications = unread(details.unread.unwrap_or_default());
    Ok(Some((room_id, joined)))
}

fn summary(ctx: &Ctx<'_>, details: &MemberSummary) -> RoomSummary {
    let mut summary = RoomSummary::new();
    summary.joined_member_count = Some(UInt::try_from(details.joined_count.max(0) as u64).unwrap_or_default());
    summary.invited_member_count = Some(UInt::try_from(details.invited_count.max(0) as u64).unwrap_or_default());
    summary.heroes = details
        .heroes
        .iter()
        .filter(|u| *u != ctx.req.user_id.as_str())
        .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
        .take(5)
        .collect();
    summary
}

fn unread(count: UnreadCount) -> UnreadNotificationsCount {
    let mut unread = UnreadNotificationsCount::new();
    unread.notification_count = Some(UInt::try_from(count.count.max(0) as u64).unwrap_or_default());
    unread.highlight_count = Some(UInt::from(0u32));
    unread
}

async fn left_room(ctx: &Ctx<'_>, plan: RoomPlan) -> Result<(OwnedRoomId, LeftRoom), SyncError> {
    let state = ctx.syncer.rooms.state_events(&plan.state).await?;
    let mut left = LeftRoom::new();
    left.timeline = timeline(&plan.slice, client_events(ctx, &plan.slice.events).await?);
    left.state = State::Before(StateEvents::from(client_events(ctx, &state).await?));
    left.account_data.events = plan.account_data.into_iter().map(raw).collect();
    Ok((plan.room_id, left))
}

async fn stripped_state<T>(ctx: &Ctx<'_>, room: &OwnedRoomId) -> Result<Vec<Raw<T>>, SyncError> {
    let rooms = &ctx.syncer.rooms;
    if !rooms.knows_room(room).await? {
        return remote_stripped_state(ctx, room).await;
    }
    let current = rooms.current_state(room).await?;
    let mut ids: Vec<OwnedEventId> =
        STRIPPED_STATE.iter().filter_map(|kind| current.get(&(kind.clone(), String::new())).cloned()).collect();
    if let Some(own) = current.get(&(StateEventType::RoomMember, ctx.req.user_id.to_string())) {
        ids.push(own.clone());
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(pdu) = rooms.get_pdu(&id).await? {
            let mut event = json!({
                "type": pdu.kind().to_string(),
                "state_key": pdu.state_key().unwrap_or(""),
                "sender": pdu.sender(),
                "content": pdu.content_value(),
            });
            if *pdu.kind() == TimelineEventType::RoomMember {
                event["event_id"] = json!(pdu.event_id);
                event["origin_server_ts"] = json!(u64::from(pdu.fields.origin_server_ts.0));
            }
            out.push(raw(event));
        }
    }
    Ok(out)
}

/// The stripped state of a room on another server the user is invited to,
/// as its server sent it, and the invite itself.
async fn remote_stripped_state<T>(ctx: &Ctx<'_>, room: &OwnedRoomId) -> Result<Vec<Raw<T>>, SyncError> {
    let syncer = ctx.syncer;
    let Some(invite) = syncer.db.remote_invite(room.to_string(), ctx.req.user_id.to_string()).await? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Raw<T>> = serde_json::from_str::<Vec<Value>>(&invite.stripped_state)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.get("state_key").and_then(Value::as_str) != Some(ctx.req.user_id.as_str()))
        .map(raw)
        .collect();
    if let Ok(id) = OwnedEventId::try_from(invite.event_id.as_str())
        && let Ok(Some(stored)) = syncer.db.get_event(id.to_string()).await
        && let Ok(pdu) = serde_json::from_str::<Value>(&stored.json)
    {
        out.push(raw(json!({
            "type": "m.room.member",
            "state_key": ctx.req.user_id,
            "sender": pdu.get("sender"),
            "content": pdu.get("content"),
            "event_id": id,
            "origin_server_ts": pdu.get("origin_server_ts"),
        })));
    }
    Ok(out)
}
