//! The sliding sync response (MSC4186, simplified sliding sync): the
//! second assembler over the read plan and sections. Its lists (`lists`)
//! and room subscriptions give the rooms in view, each with its merged
//! room config (`timeline_limit`, `required_state`); a room new to the
//! connection, or whose config grew, is `initial`; the others carry what
//! changed since the connection last sent them (`connection`). The
//! extensions are the sections of the same name: `to_device`, `e2ee`
//! (`device_keys`), `account_data`, `receipts` and `typing` (`ephemeral`).

pub mod connection;
mod lists;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use ruma::{
    JsOption, OwnedDeviceId, OwnedMxcUri, OwnedRoomId, OwnedUserId, UInt,
    api::client::sync::sync_events::v5::{self as v5, Request, Response, response},
    events::StateEventType,
};
use serde_json::Value;

use self::{
    connection::{ConnectionState, SentRoom},
    lists::{ListMembership, ListRoom},
};
use super::{
    SyncError, SyncToken, Syncer,
    plan::{self, RoomPlan},
    scope::{EphemeralOptions, LazyMembers, Membership, RoomView, Scope, StateWanted, TimelineOptions, Window},
    sections::{
        account_data::{self, AccountData},
        device_keys::{self, DeviceListRows},
        memberships, raw,
        required_state::RequiredState,
        rooms, timeline, to_device,
    },
};
use crate::{push, rooms::EventFilter, storage::sync::SyncUserRows};

/// One sliding sync request, whatever the transport.
#[derive(Debug, Clone)]
pub struct SlidingSyncRequest {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// The connection (`""` when the client names none).
    pub conn_id: String,
    pub pos: Option<String>,
    /// Lists, room subscriptions and extensions, as the client sent them.
    pub body: Request,
    pub timeout: Duration,
    /// `online`, `unavailable` or `offline`; `None` leaves presence alone.
    pub set_presence: Option<String>,
}

/// A room's merged room config.
#[derive(Debug, Clone, Default)]
struct RoomConfig {
    timeline_limit: usize,
    required_state: RequiredState,
}

impl RoomConfig {
    fn merge(&mut self, limit: UInt, required_state: &[(StateEventType, String)]) {
        self.timeline_limit = self.timeline_limit.max(timeline::timeline_limit(Some(limit)));
        self.required_state.merge(&RequiredState::from_pairs(required_state));
    }
}

/// Whether a response has nothing for the client (so a long poll goes on
/// waiting): no rooms, no list whose count changed, no extension news.
/// Key counts ride along and are no news by themselves.
pub fn is_empty(r: &Response, counts_changed: bool) -> bool {
    let e = &r.extensions;
    r.rooms.is_empty()
        && !counts_changed
        && e.to_device.as_ref().is_none_or(|t| t.events.is_empty())
        && e.e2ee.device_lists.is_empty()
        && e.account_data.is_empty()
        && e.receipts.is_empty()
        && e.typing.is_empty()
}

/// One response on a connection, from what it sent as of `prev`: the
/// response (its `pos` still to be set) and what the connection has sent
/// with it, and whether a list's count changed.
pub(super) async fn compute(
    syncer: &Syncer,
    req: &SlidingSyncRequest,
    prev: &ConnectionState,
) -> Result<(Response, ConnectionState, bool), SyncError> {
    let ext = &req.body.extensions;
    let mut window = Window { since: prev.token, until: syncer.notifier.current() };
    // Our own `next_batch`, or a `/sync` token (a client may carry one over).
    let to_device_since = ext
        .to_device
        .since
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok().or_else(|| SyncToken::parse(s).map(|t| t.misc)));
    let to_device_after = (ext.to_device.enabled == Some(true)).then_some(to_device_since);
    let mut rows = plan::read_user(syncer, &req.user_id, &req.device_id, &mut window, to_device_after).await?;
    let scope = Scope {
        syncer,
        user_id: &req.user_id,
        device_id: &req.device_id,
        window,
        timeline: TimelineOptions {
            filter: EventFilter { ignored: syncer.streams.ignored_users(&req.user_id).await?, ..Default::default() },
            lazy_members: LazyMembers::Off,
            state_filter: EventFilter::default(),
            thread_counts: false,
        },
        ephemeral: EphemeralOptions {
            receipts: ext.receipts.enabled == Some(true),
            typing: ext.typing.enabled == Some(true),
        },
    };
    let mut state = prev.clone();
    state.token = Some(window.until);
    let mut response = Response::new(String::new());

    let mut account_data = AccountData::from_rows(std::mem::take(&mut rows.account_data));
    if window.since.is_none() {
        // A user who never changed their push rules has the defaults.
        account_data.add_global_default("m.push_rules", || push::server_default_rules(scope.user_id));
    }
    if let Some(direct) = account_data.global_content("m.direct") {
        state.dm_rooms = dm_rooms(direct);
    }

    let changed: HashSet<String> = std::mem::take(&mut rows.rooms_changed)
        .into_iter()
        .chain(rows.memberships_changed.iter().map(|(room, _, _)| room.clone()))
        .collect();
    // Every current membership: an initial read finds them all as changed.
    // A connection for extensions only (Element X's "encryption") orders
    // no rooms.
    let wants_rooms = !req.body.lists.is_empty() || !req.body.room_subscriptions.is_empty();
    let current = match (wants_rooms, window.since) {
        (false, _) => Vec::new(),
        (true, None) => std::mem::take(&mut rows.memberships_changed),
        (true, Some(_)) => std::mem::take(&mut rows.memberships),
    };
    let list_rooms = read_list_rooms(&scope, current, &changed, &mut state).await?;
    let (configs, counts) = select_rooms(&req.body, &list_rooms);
    let counts_changed = counts != state.list_counts;
    for (name, count) in &counts {
        let mut list = response::List::default();
        list.count = UInt::try_from(*count as u64).unwrap_or_default();
        response.lists.insert(name.clone(), list);
    }
    state.list_counts = counts;

    let by_id: HashMap<&OwnedRoomId, &ListRoom> = list_rooms.iter().map(|r| (&r.room_id, r)).collect();
    let mut plans = Vec::new();
    for (room_id, config) in configs {
        let Some(room) = by_id.get(&room_id) else { continue };
        match room.membership {
            ListMembership::Invite | ListMembership::Knock => {
                if let Some(invited) = invited_room(&scope, room, prev.rooms.get(&room_id), &mut state).await? {
                    response.rooms.insert(room_id, invited);
                }
            }
            ListMembership::Join | ListMembership::Leave => {
                if let Some(view) = room_view(&scope, room, config, prev.rooms.get(&room_id), &state) {
                    plans.push(RoomPlan::new(view, Vec::new()));
                }
            }
        }
    }
    plan::read_rooms(&scope, &mut plans).await?;
    for plan in plans {
        place_room(&scope, plan, prev, &mut state, &mut response).await?;
    }
    place_extensions(&scope, req, rows, account_data, to_device_since, &mut response.extensions).await?;
    Ok((response, state, counts_changed))
}

/// The `to_device`, `e2ee` and `account_data` extensions the request
/// enables (`receipts` and `typing` come with the rooms).
async fn place_extensions(
    scope: &Scope<'_>,
    req: &SlidingSyncRequest,
    rows: SyncUserRows,
    mut account_data: AccountData,
    to_device_since: Option<i64>,
    out: &mut response::Extensions,
) -> Result<(), SyncError> {
    let ext = &req.body.extensions;
    if ext.to_device.enabled == Some(true) {
        let acked = to_device_since.filter(|_| rows.to_device_to_ack);
        let mut messages = response::ToDevice::default();
        messages.events = to_device::events(scope, rows.to_device, acked).await?;
        messages.next_batch = scope.window.until.misc.to_string();
        out.to_device = Some(messages);
    }
    if ext.e2ee.enabled == Some(true) {
        if scope.window.since.is_some() {
            let changes = DeviceListRows {
                changes: rows.device_list_changes,
                users_sharing_rooms: rows.users_sharing_rooms,
                membership_changes_seen: rows.membership_changes_seen,
            };
            out.e2ee.device_lists = device_keys::device_lists(&req.user_id, changes);
        }
        out.e2ee.device_one_time_keys_count = device_keys::one_time_key_counts(rows.one_time_key_counts);
        out.e2ee.device_unused_fallback_key_types =
            Some(device_keys::fallback_key_types(rows.unused_fallback_algorithms));
    }
    if ext.account_data.enabled == Some(true) {
        out.account_data.global = account_data.take_global();
        for (room, events) in account_data.take_rooms() {
            if let Ok(room_id) = OwnedRoomId::try_from(room) {
                out.account_data.rooms.insert(room_id, account_data::raw_events(events));
            }
        }
    }
    Ok(())
}

/// The rooms in the user's `m.direct` account data.
fn dm_rooms(direct: &Value) -> HashSet<OwnedRoomId> {
    let Some(by_user) = direct.as_object() else { return HashSet::new() };
    by_user
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|r| r.as_str().and_then(|r| OwnedRoomId::try_from(r).ok()))
        .collect()
}

/// The user's rooms as lists see them, most recent activity first: what
/// they are ordered and filtered by is read again only for rooms that
/// changed. Rooms left stay while the connection has them, and kicks and
/// bans always (MSC4186, "Lists").
async fn read_list_rooms(
    scope: &Scope<'_>,
    memberships: Vec<(String, String, i64)>,
    changed: &HashSet<String>,
    state: &mut ConnectionState,
) -> Result<Vec<ListRoom>, SyncError> {
    let memberships: Vec<(OwnedRoomId, String, i64)> = memberships
        .into_iter()
        .filter_map(|(room, m, pos)| Some((OwnedRoomId::try_from(room).ok()?, m, pos)))
        .collect();
    let stale: Vec<&OwnedRoomId> = memberships
        .iter()
        .map(|(room, _, _)| room)
        .filter(|room| changed.contains(room.as_str()) || !state.room_info.contains_key(*room))
        .collect();
    let read = scope
        .syncer
        .db
        .sliding_room_info(scope.user_id.to_string(), stale.iter().map(|r| r.to_string()).collect())
        .await?;
    for (room, info) in stale.into_iter().zip(read) {
        state.room_info.insert(room.clone(), info);
    }
    let mut rooms = Vec::with_capacity(memberships.len());
    for (room_id, membership, pos) in memberships {
        let info = state.room_info.get(&room_id).cloned().unwrap_or_default();
        let membership = match membership.as_str() {
            "join" => ListMembership::Join,
            // Spec: "Ignoring Users": invites from ignored users are not sent.
            "invite" if info.membership_sender.as_deref().is_some_and(|s| scope.ignores(s)) => continue,
            "invite" => ListMembership::Invite,
            "knock" => ListMembership::Knock,
            "leave" | "ban" => {
                let kicked = info.membership_sender.as_deref().is_some_and(|s| s != scope.user_id.as_str());
                if !kicked && !state.rooms.contains_key(&room_id) {
                    continue;
                }
                ListMembership::Leave
            }
            _ => continue,
        };
        // A room the user is not in was last active, for them, when their
        // membership changed.
        let bump_stamp = match membership {
            ListMembership::Join => info.bump_stamp.unwrap_or(pos),
            _ => pos,
        };
        rooms.push(ListRoom {
            is_dm: state.dm_rooms.contains(&room_id),
            is_encrypted: info.encrypted,
            room_type: info.room_type.clone(),
            room_id,
            membership,
            bump_stamp,
        });
    }
    lists::order_by_activity(&mut rooms);
    Ok(rooms)
}

/// The rooms the lists' ranges and the subscriptions select, each with its
/// merged config, and each list's count.
fn select_rooms(body: &Request, rooms: &[ListRoom]) -> (BTreeMap<OwnedRoomId, RoomConfig>, BTreeMap<String, usize>) {
    let mut configs: BTreeMap<OwnedRoomId, RoomConfig> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let no_filters = v5::request::ListFilters::default();
    for (name, list) in &body.lists {
        let filters = list.filters.as_ref().unwrap_or(&no_filters);
        let filtered: Vec<&ListRoom> = rooms.iter().filter(|r| lists::passes(r, filters, None)).collect();
        counts.insert(name.clone(), filtered.len());
        for i in lists::in_ranges(&list.ranges, filtered.len()) {
            let details = &list.room_details;
            configs
                .entry(filtered[i].room_id.clone())
                .or_default()
                .merge(details.timeline_limit, &details.required_state);
        }
    }
    for (room_id, sub) in &body.room_subscriptions {
        // Only rooms the user may see: those in the server's list.
        if rooms.iter().any(|r| r.room_id == *room_id) {
            configs.entry(room_id.clone()).or_default().merge(sub.timeline_limit, &sub.required_state);
        }
    }
    (configs, counts)
}

fn membership_name(room: &ListRoom) -> &'static str {
    match room.membership {
        ListMembership::Join => "join",
        ListMembership::Invite => "invite",
        ListMembership::Knock => "knock",
        ListMembership::Leave => "leave",
    }
}

/// An invited or knocked room, once per connection: its stripped state.
async fn invited_room(
    scope: &Scope<'_>,
    room: &ListRoom,
    sent: Option<&SentRoom>,
    state: &mut ConnectionState,
) -> Result<Option<response::Room>, SyncError> {
    let membership = membership_name(room).to_owned();
    if sent.is_some_and(|s| s.membership == membership) {
        return Ok(None);
    }
    let mut out = response::Room::new();
    out.initial = Some(true);
    out.invite_state = Some(memberships::stripped_state(scope, &room.room_id).await?);
    out.bump_stamp = UInt::try_from(room.bump_stamp.max(0) as u64).ok();
    out.is_dm = room.is_dm.then_some(true);
    state.rooms.insert(
        room.room_id.clone(),
        SentRoom {
            events_until: scope.window.until.events,
            membership,
            timeline_limit: 0,
            required_state: Arc::default(),
            members_sent: Arc::default(),
            name: None,
            avatar: None,
            is_dm: room.is_dm,
            bump_stamp: Some(room.bump_stamp),
        },
    );
    Ok(Some(out))
}

/// How a joined or left room is read: afresh when the connection does
/// not have it (or has it as an invite, or with a smaller config), else
/// from where the connection's copy ends, if anything happened since.
/// Rooms with nothing new are still read for their receipts and typing.
fn room_view(
    scope: &Scope<'_>,
    room: &ListRoom,
    config: RoomConfig,
    sent: Option<&SentRoom>,
    state: &ConnectionState,
) -> Option<RoomView> {
    let info = state.room_info.get(&room.room_id).cloned().unwrap_or_default();
    let (membership, until) = match room.membership {
        ListMembership::Join => (Membership::Join, scope.window.until.events),
        // A room left is seen up to the leave.
        _ => (Membership::Leave(membership_name(room).to_owned()), room.bump_stamp.min(scope.window.until.events)),
    };
    let joined_before = sent.is_some_and(|s| s.membership == "join" || s.membership == "leave");
    let grew = sent
        .is_some_and(|s| config.timeline_limit > s.timeline_limit || !s.required_state.covers(&config.required_state));
    let initial = !joined_before || grew;
    let timeline = match sent {
        _ if initial => Some((0, until)),
        Some(sent) if info.last_event.is_some_and(|e| e > sent.events_until) && until > sent.events_until => {
            Some((sent.events_until, until))
        }
        // A room left and already sent as left has nothing more.
        _ if room.membership != ListMembership::Join => return None,
        _ => None,
    };
    let members_sent = match sent {
        Some(sent) if !initial => sent.members_sent.clone(),
        _ => Arc::default(),
    };
    let timeline_limit = match sent {
        // The client keeps the bigger config's data.
        Some(sent) if !initial => sent.timeline_limit.max(config.timeline_limit),
        _ => config.timeline_limit,
    };
    let mut required = config.required_state;
    if let Some(sent) = sent.filter(|_| !initial) {
        required.merge(&sent.required_state);
    }
    Some(RoomView {
        room_id: room.room_id.clone(),
        membership,
        initial,
        timeline,
        timeline_limit,
        state: StateWanted::Required { config: Arc::new(required), members_sent },
    })
}

/// Places a joined or left room's part of the response, when it has news
/// (and its receipts and typing in their extensions), and records what the
/// connection now has of it.
async fn place_room(
    scope: &Scope<'_>,
    plan: RoomPlan,
    prev: &ConnectionState,
    state: &mut ConnectionState,
    response: &mut Response,
) -> Result<(), SyncError> {
    let RoomPlan { view, timeline, ephemeral, account_data: _ } = plan;
    let room_id = view.room_id.clone();
    place_ephemeral(&room_id, ephemeral.events, &mut response.extensions);
    let sent = if view.initial { None } else { prev.rooms.get(&room_id) };
    let is_dm = state.dm_rooms.contains(&room_id);
    let bump_stamp = match view.membership {
        Membership::Join => state.room_info.get(&room_id).and_then(|i| i.bump_stamp),
        Membership::Leave(_) => view.timeline.map(|(_, until)| until),
    };
    let has_timeline = view.timeline.is_some();
    if !view.initial && !has_timeline && sent.is_none_or(|s| s.is_dm == is_dm) {
        return Ok(());
    }
    let mut out = response::Room::new();
    if view.initial {
        out.initial = Some(true);
    }
    let state_events = rooms::state_events(scope, &timeline).await?;
    out.required_state = rooms::client_events(scope, &state_events).await?;
    let section = rooms::timeline(scope, &timeline).await?;
    let since_events = scope.window.since.map(|s| s.events);
    let live =
        timeline.slice.events.iter().filter(|e| since_events.is_some_and(|s| e.stream_ordering > Some(s))).count();
    out.num_live = has_timeline.then(|| UInt::try_from(live as u64).unwrap_or_default());
    out.timeline = section.events;
    out.limited = section.limited;
    out.prev_batch = section.prev_batch.filter(|_| has_timeline);

    let profile = room_profile(scope, &timeline).await?;
    if sent.is_none_or(|s| s.name != profile.name) {
        out.name = profile.name.clone();
    }
    out.avatar = match (&profile.avatar, sent.and_then(|s| s.avatar.as_ref())) {
        (Some(now), before) if before != Some(now) => JsOption::Some(OwnedMxcUri::from(now.as_str())),
        (None, Some(_)) => JsOption::Null,
        _ => JsOption::Undefined,
    };
    if profile.name.is_none() {
        out.heroes = profile.heroes.clone();
    }
    if let Some(summary) = rooms::summary(scope, &timeline) {
        out.joined_count = summary.joined_member_count;
        out.invited_count = summary.invited_member_count;
    }
    if view.membership == Membership::Join && has_timeline {
        out.unread_notifications = rooms::unread(scope, &timeline).0;
    }
    if sent.is_none_or(|s| s.is_dm != is_dm) {
        // Absent in an initial room means not a DM.
        out.is_dm = (is_dm || sent.is_some()).then_some(is_dm);
    }
    if sent.is_none_or(|s| s.bump_stamp != bump_stamp) {
        out.bump_stamp = bump_stamp.and_then(|b| UInt::try_from(b.max(0) as u64).ok());
    }
    let sent_now = sent_room(&view, &timeline, prev.rooms.get(&room_id), profile, is_dm, bump_stamp);
    state.rooms.insert(room_id.clone(), sent_now);
    response.rooms.insert(room_id, out);
    Ok(())
}

/// A room's typing notice and receipts, in their extensions.
fn place_ephemeral(room_id: &OwnedRoomId, events: Vec<Value>, out: &mut response::Extensions) {
    for event in events {
        match event["type"].as_str() {
            Some("m.typing") => {
                out.typing.rooms.insert(room_id.clone(), raw(event));
            }
            Some("m.receipt") => {
                out.receipts.rooms.insert(room_id.clone(), raw(event));
            }
            _ => {}
        }
    }
}

/// What the connection has of a room once this response is sent.
fn sent_room(
    view: &RoomView,
    timeline: &rooms::RoomTimeline,
    previous: Option<&SentRoom>,
    profile: RoomProfile,
    is_dm: bool,
    bump_stamp: Option<i64>,
) -> SentRoom {
    let (required_state, members_sent) = match &view.state {
        StateWanted::Required { config, members_sent } => (config.clone(), members_sent.clone()),
        StateWanted::BeforeTimeline => (Arc::default(), Arc::default()),
    };
    let mut members = (*members_sent).clone();
    members.extend(
        timeline.state.keys().filter(|(kind, _)| *kind == StateEventType::RoomMember).map(|(_, key)| key.clone()),
    );
    SentRoom {
        events_until: view.timeline.map(|(_, until)| until).or(previous.map(|p| p.events_until)).unwrap_or(0),
        membership: match &view.membership {
            Membership::Join => "join".to_owned(),
            Membership::Leave(m) => m.clone(),
        },
        timeline_limit: view.timeline_limit,
        required_state,
        members_sent: Arc::new(members),
        name: profile.name,
        avatar: profile.avatar,
        is_dm,
        bump_stamp,
    }
}

/// What a client shows a room as: its name and avatar, and heroes when it
/// has no name.
struct RoomProfile {
    name: Option<String>,
    avatar: Option<String>,
    heroes: Option<Vec<response::Hero>>,
}

/// Reads the room's profile from its state at the timeline's end (its
/// heroes only when the member summary was read).
async fn room_profile(scope: &Scope<'_>, room: &rooms::RoomTimeline) -> Result<RoomProfile, SyncError> {
    let mut profile = RoomProfile { name: None, avatar: None, heroes: None };
    let Some(end_state) = &room.end_state else { return Ok(profile) };
    let content = |pdu: Option<&Arc<crate::rooms::pdu::Pdu>>, field: &str| {
        pdu.and_then(|p| p.content_value().get(field).and_then(Value::as_str).map(str::to_owned))
            .filter(|s| !s.is_empty())
    };
    let name_id = end_state.get(&(StateEventType::RoomName, String::new()));
    let avatar_id = end_state.get(&(StateEventType::RoomAvatar, String::new()));
    let heroes: Vec<OwnedUserId> = rooms::summary(scope, room).map(|s| s.heroes).unwrap_or_default();
    let hero_ids: Vec<_> =
        heroes.iter().filter_map(|u| end_state.get(&(StateEventType::RoomMember, u.to_string()))).collect();
    let pdus = scope.syncer.rooms.get_pdus(name_id.into_iter().chain(avatar_id).chain(hero_ids)).await?;
    profile.name = content(name_id.and_then(|id| pdus.get(id)), "name");
    profile.avatar = content(avatar_id.and_then(|id| pdus.get(id)), "url");
    if !heroes.is_empty() {
        profile.heroes = Some(
            heroes
                .into_iter()
                .map(|user| {
                    let member =
                        end_state.get(&(StateEventType::RoomMember, user.to_string())).and_then(|id| pdus.get(id));
                    let mut hero = response::Hero::new(user);
                    hero.name = content(member, "displayname");
                    hero.avatar = content(member, "avatar_url").map(|u| OwnedMxcUri::from(u.as_str()));
                    hero
                })
                .collect(),
        );
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn direct_rooms_are_every_room_of_m_direct() {
        let direct = json!({"@a:x": ["!1:x", "!2:x"], "@b:x": ["!2:x", "not a room"], "@c:x": "junk"});
        let rooms = dm_rooms(&direct);
        assert_eq!(rooms.len(), 2);
        assert!(rooms.contains(&OwnedRoomId::try_from("!1:x").unwrap()));
        assert!(dm_rooms(&json!([])).is_empty());
    }
}
