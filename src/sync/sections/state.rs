//! The state sent with a room's timeline (client-server API, "Syncing":
//! `state`; "Lazy-loading room members"): the state before the timeline
//! for a room new to the client, what changed since the token for a gappy
//! timeline, and, when members are lazy-loaded, only the members the
//! timeline needs. Sliding sync (MSC4186, `required_state`) takes the
//! state at the timeline's end instead, filtered by its room config.

use std::{collections::HashSet, sync::Arc};

use ruma::{
    OwnedEventId, RoomId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
};

use super::{
    super::scope::{LazyMembers, Membership, RoomView, Scope},
    required_state::RequiredState,
    timeline::Slice,
};
use crate::{
    rooms::{StateMap, pdu::Pdu},
    sync::SyncError,
};

/// The state of a new or gappy timeline: everything at its start for a
/// room new to the client, else what changed since `at_since` (spec: the
/// state between `since` and the start of the timeline), with lazy-loaded
/// members as `lazy` says. The state groups it needs are already read.
/// `heroes` are the member summary's heroes, when it is sent.
pub async fn from_groups(
    scope: &Scope<'_>,
    view: &RoomView,
    slice: &Slice,
    at_since: Option<i64>,
    heroes: &[&str],
) -> Result<StateMap, SyncError> {
    let rooms = &scope.syncer.rooms;
    let at_start = match slice.before_group.flatten() {
        Some(group) => rooms.state_at_group(group).await?,
        None => Arc::default(),
    };
    let lazy = scope.timeline.lazy_members;
    let heroes = if is_named(&at_start) { &[][..] } else { heroes };
    let at_since = match (view.initial, at_since) {
        (true, _) => None,
        (false, Some(group)) => Some(rooms.state_at_group(group).await?),
        (false, None) => Some(Arc::default()),
    };
    // A room the user joined and left since the token comes in full, as
    // for a room new to the client (as Synapse does): the client never
    // had its state.
    let initial = match &at_since {
        None => true,
        Some(at_since) if matches!(view.membership, Membership::Leave(_)) => !was_joined(scope, at_since).await?,
        Some(_) => false,
    };
    // Members whose membership changed in the gap: sent even if the client
    // may have them (spec: "When a sync is `limited`, the server MUST
    // return membership events for events in the gap").
    let mut gap_members = HashSet::new();
    let mut state = if initial && lazy.is_on() {
        // The user's own membership, the members the timeline needs and
        // the heroes; no other member.
        let wanted = members_wanted(slice, heroes, Some(scope.user_id.as_str()));
        at_start
            .iter()
            .filter(|((kind, key), _)| *kind != StateEventType::RoomMember || wanted.contains(key.as_str()))
            .map(|(key, id)| (key.clone(), id.clone()))
            .collect()
    } else if initial {
        (*at_start).clone()
    } else {
        let at_since = at_since.unwrap_or_default();
        let mut delta = StateMap::new();
        for (key, id) in at_start.iter().filter(|(k, id)| at_since.get(*k) != Some(*id)) {
            if key.0 == StateEventType::RoomMember {
                gap_members.insert(key.1.clone());
            }
            delta.insert(key.clone(), id.clone());
        }
        if lazy.is_on() {
            // What changed in the gap, all of it, and the members the
            // timeline needs that the client may not have.
            for user in members_wanted(slice, heroes, None) {
                let key = (StateEventType::RoomMember, user.to_owned());
                if let Some(id) = at_start.get(&key) {
                    delta.entry(key).or_insert_with(|| id.clone());
                }
            }
        }
        delta
    };
    let must_send = |member: &str| gap_members.contains(member) || (initial && member == scope.user_id.as_str());
    finish(scope, &view.room_id, slice, &mut state, must_send);
    Ok(state)
}

/// The state of a complete incremental timeline: its changes are in it,
/// so there is none, except with lazy-loaded members: those the timeline
/// needs and the client may not have, as they are at its start (from the
/// room's current state, cached, and the timeline's own membership
/// events: no state group is read).
pub async fn without_groups(
    scope: &Scope<'_>,
    room: &RoomId,
    slice: &Slice,
    heroes: &[&str],
) -> Result<StateMap, SyncError> {
    let mut state = StateMap::new();
    if !scope.timeline.lazy_members.is_on() {
        return Ok(state);
    }
    if !slice.events.is_empty() || !heroes.is_empty() {
        let current = scope.syncer.rooms.current_state(room).await?;
        let heroes = if is_named(&current) { &[][..] } else { heroes };
        for user in members_wanted(slice, heroes, None) {
            let key = (StateEventType::RoomMember, user.to_owned());
            // A membership the timeline changes was, at its start, the one
            // its first change replaced.
            let at_start = match slice.events.iter().find(|p| is_membership_of(p, user)) {
                Some(first_change) => first_change.replaces_state.clone(),
                None => current.get(&key).cloned(),
            };
            if let Some(id) = at_start {
                state.insert(key, id);
            }
        }
    }
    finish(scope, room, slice, &mut state, |_| false);
    Ok(state)
}

/// Whether the user was joined to the room in `state`.
async fn was_joined(scope: &Scope<'_>, state: &StateMap) -> Result<bool, SyncError> {
    let Some(id) = state.get(&(StateEventType::RoomMember, scope.user_id.to_string())) else { return Ok(false) };
    let membership = scope.syncer.rooms.get_pdu(id).await?.and_then(|pdu| pdu.membership());
    Ok(membership == Some(MembershipState::Join))
}

/// Whether the room has a name or canonical alias, so clients need no
/// heroes to name it (Synapse then sends none; so their memberships are
/// not needed). A name or alias event with an empty value counts too: the
/// summary's heroes are then sent without their memberships.
fn is_named(state: &StateMap) -> bool {
    [StateEventType::RoomName, StateEventType::RoomCanonicalAlias]
        .into_iter()
        .any(|kind| state.contains_key(&(kind, String::new())))
}

fn is_membership_of(pdu: &Pdu, user: &str) -> bool {
    *pdu.kind() == TimelineEventType::RoomMember && pdu.state_key() == Some(user)
}

/// The members whose membership events a lazy-loading client needs with
/// this timeline: each sender whose membership is not already in the
/// timeline before their first event (as Synapse reckons them), the
/// heroes whose membership is not in the timeline, and `own` if given.
fn members_wanted<'s>(slice: &'s Slice, heroes: &[&'s str], own: Option<&'s str>) -> HashSet<&'s str> {
    let mut in_timeline: HashSet<&str> = HashSet::new();
    let mut wanted: HashSet<&str> = HashSet::new();
    for pdu in &slice.events {
        let sender = pdu.sender().as_str();
        if !in_timeline.contains(sender) {
            wanted.insert(sender);
        }
        if *pdu.kind() == TimelineEventType::RoomMember
            && let Some(member) = pdu.state_key()
        {
            in_timeline.insert(member);
        }
    }
    wanted.extend(heroes.iter().copied().filter(|h| !in_timeline.contains(h)));
    wanted.extend(own);
    wanted
}

/// The last steps for every `/sync` state: the filter's `room.state`
/// types, no event the timeline carries (spec: `state` is the state up
/// to the start of the timeline), and with lazy-loaded members, none the
/// device was already sent (unless `must_send`), noting what it is sent
/// now, in the state and in the timeline.
fn finish(scope: &Scope<'_>, room: &RoomId, slice: &Slice, state: &mut StateMap, must_send: impl Fn(&str) -> bool) {
    let filter = &scope.timeline.state_filter;
    let in_timeline: HashSet<&OwnedEventId> = slice.events.iter().map(|p| &p.event_id).collect();
    let by_type = filter.types.is_some() || !filter.not_types.is_empty();
    state.retain(|(kind, _), id| !in_timeline.contains(id) && (!by_type || filter.allows_type(&kind.to_string())));
    let LazyMembers::On { sent: Some(sent) } = scope.timeline.lazy_members else {
        return;
    };
    state.retain(|(kind, member), id| {
        *kind != StateEventType::RoomMember || must_send(member) || !sent.was_sent(room, member, id)
    });
    for ((_, member), id) in state.iter().filter(|((kind, _), _)| *kind == StateEventType::RoomMember) {
        sent.record(room, member, id);
    }
    for pdu in slice.events.iter().filter(|p| *p.kind() == TimelineEventType::RoomMember) {
        if let Some(member) = pdu.state_key() {
            sent.record(room, member, &pdu.event_id);
        }
    }
}

/// Sliding sync's state of a room: what `config` asks for of the state at
/// the timeline's end (group `end`), all of it for a room new to the
/// connection, else what changed since group `since`; with lazy members,
/// the members of the timeline's senders and targets that changed or that
/// the connection was not sent yet. Events in the timeline stay in: a
/// sliding sync client reads state only from `required_state`. Also
/// returns the whole state at the end.
pub async fn required(
    scope: &Scope<'_>,
    view: &RoomView,
    slice: &Slice,
    (end, since): (Option<i64>, Option<i64>),
    config: &RequiredState,
    members_sent: &HashSet<String>,
) -> Result<(StateMap, Arc<StateMap>), SyncError> {
    let rooms = &scope.syncer.rooms;
    let at_end = match end {
        Some(group) => rooms.state_at_group(group).await?,
        None => Arc::default(),
    };
    let at_since = match (view.initial, since) {
        (true, _) => None,
        (false, Some(group)) => Some(rooms.state_at_group(group).await?),
        (false, None) => Some(Arc::default()),
    };
    let changed =
        |key: &(StateEventType, String), id: &OwnedEventId| at_since.as_ref().is_none_or(|s| s.get(key) != Some(id));
    let mut state: StateMap = at_end
        .iter()
        .filter(|(k, id)| changed(k, id) && config.matches(&k.0, &k.1, scope.user_id))
        .map(|(k, id)| (k.clone(), id.clone()))
        .collect();
    if config.lazy_members {
        for pdu in &slice.events {
            let target =
                (*pdu.kind() == ruma::events::TimelineEventType::RoomMember).then(|| pdu.state_key()).flatten();
            for user in std::iter::once(pdu.sender().as_str()).chain(target) {
                let key = (StateEventType::RoomMember, user.to_owned());
                if let Some(id) = at_end.get(&key)
                    && (changed(&key, id) || !members_sent.contains(user))
                {
                    state.insert(key, id.clone());
                }
            }
        }
    }
    Ok((state, at_end))
}
