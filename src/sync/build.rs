//! Building one sync response from the stores, bounded by the stream
//! positions current when it starts, so the `next_batch` it returns
//! covers exactly what it delivered.

use std::collections::{BTreeMap, HashMap, HashSet};

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

use super::{SyncError, SyncRequest, SyncToken};
use crate::{
    Services,
    rooms::{EventFilter, StateMap, pdu::Pdu},
    storage::rooms::Direction,
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
    services: &'a Services,
    req: &'a SyncRequest,
    since: Option<SyncToken>,
    now: SyncToken,
    timeline_limit: usize,
    timeline_filter: EventFilter,
    lazy_members: bool,
}

pub(super) async fn compute(
    services: &Services,
    req: &SyncRequest,
    since: Option<SyncToken>,
) -> Result<Response, SyncError> {
    let mut now = services.notifier.current();
    let user = req.user_id.to_string();
    let memberships = match since {
        None => services.db.all_memberships(user.clone()).await?,
        Some(s) => services.db.memberships_changed_since(user.clone(), s.events, i64::MAX).await?,
    };
    // A membership committed before the notifier heard of it: every event
    // up to it is committed too, so the response may safely cover it.
    if let Some(max) = memberships.iter().map(|(_, _, pos)| *pos).max() {
        now.events = now.events.max(max);
    }
    let room_filter = &req.filter.room;
    let timeline_limit = room_filter
        .timeline
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, MAX_TIMELINE_LIMIT);
    let ctx = Ctx {
        services,
        req,
        since,
        now,
        timeline_limit,
        timeline_filter: event_filter(&room_filter.timeline),
        lazy_members: matches!(room_filter.state.lazy_load_options, LazyLoadOptions::Enabled { .. }),
    };
    let room_allowed = |room: &str| {
        room_filter.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == room))
            && !room_filter.not_rooms.iter().any(|r| r.as_str() == room)
    };

    let mut response = Response::new(now.to_string());
    let account_data = match since {
        None => services.db.account_data_since(user.clone(), 0, now.misc).await?,
        Some(s) => services.db.account_data_since(user.clone(), s.misc, now.misc).await?,
    };
    let mut room_account_data: HashMap<String, Vec<Value>> = HashMap::new();
    for row in account_data {
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
    if since.is_some() {
        for (room, membership, pos) in services.db.all_memberships(user.clone()).await? {
            if membership == "join" {
                rooms.insert(room, (membership, pos));
            }
        }
    }
    for (room, membership, pos) in memberships {
        rooms.insert(room, (membership, pos));
    }

    let changed_rooms: HashSet<String> = match since {
        Some(s) => services.db.rooms_changed_since(s.events, now.events).await?.into_iter().map(|(r, _)| r).collect(),
        None => HashSet::new(),
    };

    for (room, (membership, pos)) in rooms {
        if !room_allowed(&room) {
            continue;
        }
        let Ok(room_id) = OwnedRoomId::try_from(room.as_str()) else { continue };
        let changed_membership = since.is_none_or(|s| pos > s.events);
        match membership.as_str() {
            "join" => {
                let account = room_account_data.remove(&room).unwrap_or_default();
                if let Some(joined) =
                    joined_room(&ctx, &room_id, changed_membership, changed_rooms.contains(&room), account).await?
                {
                    response.rooms.join.insert(room_id, joined);
                }
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
                    && !services.rooms.knows_room(&room_id).await? =>
            {
                // A declined invite to a room on another server.
                response.rooms.leave.insert(room_id.clone(), LeftRoom::new());
            }
            "leave" | "ban" if changed_membership && (since.is_some() || room_filter.include_leave) => {
                let account = room_account_data.remove(&room).unwrap_or_default();
                response.rooms.leave.insert(room_id.clone(), left_room(&ctx, &room_id, pos, account).await?);
            }
            _ => {}
        }
    }

    e2ee_sections(&ctx, &mut response).await?;

    if services.streams.presence_enabled() {
        let since_misc = since.map(|s| s.misc).unwrap_or(0);
        for row in services.db.presence_since(user, since_misc, now.misc).await? {
            let info = presence_info(&row);
            let mut content = json!({"presence": info.state, "currently_active": info.currently_active});
            if let Some(ago) = info.last_active_ago {
                content["last_active_ago"] = json!(ago);
            }
            if let Some(msg) = info.status_msg {
                content["status_msg"] = json!(msg);
            }
            response
                .presence
                .events
                .push(raw(json!({"type": "m.presence", "sender": row.user_id, "content": content})));
        }
    }
    Ok(response)
}

/// To-device messages, device list changes and one-time key counts.
async fn e2ee_sections(ctx: &Ctx<'_>, response: &mut Response) -> Result<(), SyncError> {
    let db = &ctx.services.db;
    let (user, device) = (ctx.req.user_id.to_string(), ctx.req.device_id.to_string());
    if let Some(since) = ctx.since {
        // Syncing with a token acknowledges what that token covered.
        db.ack_to_device(user.clone(), device.clone(), since.misc).await?;
    }
    for msg in db.to_device_for(user.clone(), device.clone(), ctx.now.misc).await? {
        let content: Value = serde_json::from_str(&msg.content).unwrap_or(Value::Null);
        response.to_device.events.push(raw(json!({"sender": msg.sender, "type": msg.kind, "content": content})));
    }
    if let Some(since) = ctx.since {
        let mut changed: std::collections::BTreeSet<String> =
            db.device_list_changes(user.clone(), since.misc, ctx.now.misc).await?.into_iter().collect();
        // New room-mates' devices are news too; former room-mates are `left`.
        let shared: HashSet<String> = db.users_sharing_rooms(user.clone()).await?.into_iter().collect();
        let mut left = std::collections::BTreeSet::new();
        for (other, membership) in db.membership_changes_seen_by(user.clone(), since.events, ctx.now.events).await? {
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
    for (algorithm, count) in db.one_time_key_counts(user.clone(), device.clone()).await? {
        response
            .device_one_time_keys_count
            .insert(algorithm.as_str().into(), UInt::try_from(count.max(0) as u64).unwrap_or_default());
    }
    response.device_one_time_keys_count.entry("signed_curve25519".into()).or_insert_with(|| UInt::from(0u32));
    let fallback = db.unused_fallback_algorithms(user, device).await?;
    response.device_unused_fallback_key_types = Some(fallback.iter().map(|a| a.as_str().into()).collect());
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
    events: Vec<std::sync::Arc<Pdu>>,
    limited: bool,
    before: i64,
}

/// The newest visible events in `(after, until]`, at most the timeline limit.
async fn timeline_slice(ctx: &Ctx<'_>, room: &OwnedRoomId, after: i64, until: i64) -> Result<Slice, SyncError> {
    let rooms = &ctx.services.rooms;
    let stored = ctx
        .services
        .db
        .room_events(room.to_string(), until, Some(after), Direction::Backward, ctx.timeline_limit + 1)
        .await?;
    let limited = stored.len() > ctx.timeline_limit;
    let mut events = Vec::new();
    let mut check = rooms.visibility_for(room, &ctx.req.user_id).await?;
    for stored in stored.into_iter().take(ctx.timeline_limit) {
        let id = OwnedEventId::try_from(stored.event_id.as_str())
            .map_err(|e| SyncError::Rooms(crate::rooms::RoomsError::Internal(e.to_string())))?;
        let Some(pdu) = rooms.get_pdu(&id).await? else { continue };
        if ctx.timeline_filter.allows(&pdu) && check.can_see(&pdu).await? {
            events.push(pdu);
        }
    }
    events.reverse();
    let before = events.first().and_then(|p| p.stream_ordering).map(|p| p - 1).unwrap_or(until);
    Ok(Slice { events, limited, before })
}

async fn client_events<T>(ctx: &Ctx<'_>, pdus: &[std::sync::Arc<Pdu>]) -> Result<Vec<Raw<T>>, SyncError> {
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        let mut event = ctx.services.rooms.client_event(pdu, Some((&ctx.req.user_id, &ctx.req.device_id))).await?;
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
async fn state_for(
    ctx: &Ctx<'_>,
    room: &OwnedRoomId,
    slice: &Slice,
    initial: bool,
) -> Result<Vec<std::sync::Arc<Pdu>>, SyncError> {
    let rooms = &ctx.services.rooms;
    if !initial && !slice.limited {
        return lazy_members(ctx, room, slice, StateMap::new(), true).await;
    }
    let at_start = match ctx.services.db.state_group_at(room.to_string(), slice.before).await? {
        Some(group) => rooms.state_at_group(group).await?,
        None => StateMap::new(),
    };
    let wanted = if initial {
        at_start
    } else {
        let since_pos = ctx.since.map(|s| s.events).unwrap_or(0);
        let at_since = match ctx.services.db.state_group_at(room.to_string(), since_pos).await? {
            Some(group) => rooms.state_at_group(group).await?,
            None => StateMap::new(),
        };
        at_start.into_iter().filter(|(k, id)| at_since.get(k) != Some(id)).collect()
    };
    lazy_members(ctx, room, slice, wanted, false).await
}

/// Applies lazy loading of members: member events only for the timeline's
/// senders (and the user). With `only_missing`, adds just those members.
async fn lazy_members(
    ctx: &Ctx<'_>,
    room: &OwnedRoomId,
    slice: &Slice,
    mut state: StateMap,
    only_missing: bool,
) -> Result<Vec<std::sync::Arc<Pdu>>, SyncError> {
    let rooms = &ctx.services.rooms;
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
        return Ok(vec![]);
    }
    state.retain(|_, id| !in_timeline.contains(id));
    Ok(rooms.state_events(&state).await?)
}

async fn joined_room(
    ctx: &Ctx<'_>,
    room: &OwnedRoomId,
    newly_joined: bool,
    has_new_events: bool,
    account_data: Vec<Value>,
) -> Result<Option<JoinedRoom>, SyncError> {
    let initial = newly_joined || ctx.req.full_state;
    let since = ctx.since.unwrap_or_default();
    let after = if initial { 0 } else { since.events };
    let slice = if initial || has_new_events {
        timeline_slice(ctx, room, after, ctx.now.events).await?
    } else {
        Slice { events: vec![], limited: false, before: ctx.now.events }
    };
    let state = state_for(ctx, room, &slice, initial).await?;

    let mut ephemeral: Vec<Value> = Vec::new();
    let typing_since = if initial { 0 } else { since.typing };
    if let Some(typing) = ctx.services.streams.typing_in(room, typing_since) {
        ephemeral.push(json!({"type": "m.typing", "content": {"user_ids": typing}}));
    }
    let misc_since = if initial { 0 } else { since.misc };
    let receipts = ctx.services.db.receipts_since(room.to_string(), misc_since, ctx.now.misc).await?;
    let mut receipt_content = Map::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != ctx.req.user_id.as_str() {
            continue;
        }
        let mut entry = json!({"ts": r.ts});
        if !r.thread_id.is_empty() {
            entry["thread_id"] = json!(r.thread_id);
        }
        let by_event = receipt_content.entry(r.event_id).or_insert_with(|| json!({}));
        by_event[r.receipt_type.as_str()][r.user_id.as_str()] = entry;
    }
    if !receipt_content.is_empty() {
        ephemeral.push(json!({"type": "m.receipt", "content": receipt_content}));
    }

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
    joined.summary = summary(ctx, room).await?;
    joined.unread_notifications = unread(ctx, room).await?;
    Ok(Some(joined))
}

async fn summary(ctx: &Ctx<'_>, room: &OwnedRoomId) -> Result<RoomSummary, SyncError> {
    let db = &ctx.services.db;
    let joined = db.room_members_with(room.to_string(), "join").await?;
    let invited = db.room_members_with(room.to_string(), "invite").await?;
    let mut summary = RoomSummary::new();
    summary.joined_member_count = Some(UInt::try_from(joined.len() as u64).unwrap_or_default());
    summary.invited_member_count = Some(UInt::try_from(invited.len() as u64).unwrap_or_default());
    summary.heroes = joined
        .iter()
        .chain(invited.iter())
        .filter(|u| *u != ctx.req.user_id.as_str())
        .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
        .take(5)
        .collect();
    Ok(summary)
}

async fn unread(ctx: &Ctx<'_>, room: &OwnedRoomId) -> Result<UnreadNotificationsCount, SyncError> {
    let db = &ctx.services.db;
    let read_up_to = db.read_up_to(room.to_string(), ctx.req.user_id.to_string()).await?;
    let count = db.count_unread(room.to_string(), ctx.req.user_id.to_string(), read_up_to).await?;
    let mut unread = UnreadNotificationsCount::new();
    unread.notification_count = Some(UInt::try_from(count.max(0) as u64).unwrap_or_default());
    unread.highlight_count = Some(UInt::from(0u32));
    Ok(unread)
}

async fn left_room(
    ctx: &Ctx<'_>,
    room: &OwnedRoomId,
    left_at: i64,
    account_data: Vec<Value>,
) -> Result<LeftRoom, SyncError> {
    let initial = ctx.since.is_none() || ctx.req.full_state;
    let after = ctx.since.map(|s| s.events).unwrap_or(0);
    let slice = timeline_slice(ctx, room, after.min(left_at), left_at).await?;
    let state = state_for(ctx, room, &slice, initial).await?;
    let mut left = LeftRoom::new();
    left.timeline = timeline(&slice, client_events(ctx, &slice.events).await?);
    left.state = State::Before(StateEvents::from(client_events(ctx, &state).await?));
    left.account_data.events = account_data.into_iter().map(raw).collect();
    Ok(left)
}

async fn stripped_state<T>(ctx: &Ctx<'_>, room: &OwnedRoomId) -> Result<Vec<Raw<T>>, SyncError> {
    let rooms = &ctx.services.rooms;
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
    let services = ctx.services;
    let Some(invite) = services.db.remote_invite(room.to_string(), ctx.req.user_id.to_string()).await? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Raw<T>> = serde_json::from_str::<Vec<Value>>(&invite.stripped_state)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.get("state_key").and_then(Value::as_str) != Some(ctx.req.user_id.as_str()))
        .map(raw)
        .collect();
    if let Ok(id) = OwnedEventId::try_from(invite.event_id.as_str())
        && let Ok(Some(stored)) = services.db.get_event(id.to_string()).await
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
