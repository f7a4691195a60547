//! The state sent with a room's timeline (client-server API, "Syncing":
//! `state`; "Lazy-loading room members"): the state before the timeline
//! for a room new to the client, what changed since the token for a gappy
//! timeline, and, when members are lazy-loaded, only the members the
//! timeline needs. Sliding sync (MSC4186, `required_state`) takes the
//! state at the timeline's end instead, filtered by its room config.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedEventId, RoomId, events::StateEventType};

use super::{
    super::scope::{RoomView, Scope},
    required_state::RequiredState,
    timeline::Slice,
};
use crate::{rooms::StateMap, sync::SyncError};

/// The state of a new or gappy timeline: everything at its start for a
/// room new to the client, else what changed since `at_since`. The state
/// groups it needs are already read.
pub async fn from_groups(
    scope: &Scope<'_>,
    view: &RoomView,
    slice: &Slice,
    at_since: Option<i64>,
) -> Result<StateMap, SyncError> {
    let rooms = &scope.syncer.rooms;
    let at_start = match slice.before_group.flatten() {
        Some(group) => rooms.state_at_group(group).await?,
        None => Arc::default(),
    };
    let wanted = if view.initial {
        (*at_start).clone()
    } else {
        let at_since = match at_since {
            Some(group) => rooms.state_at_group(group).await?,
            None => Arc::default(),
        };
        at_start.iter().filter(|(k, id)| at_since.get(*k) != Some(*id)).map(|(k, id)| (k.clone(), id.clone())).collect()
    };
    lazy_members(scope, &view.room_id, slice, wanted, false).await
}

/// The state of a complete incremental timeline: its changes are in it,
/// so only members of its senders the client may not know yet, when
/// members are lazy-loaded.
pub async fn without_groups(scope: &Scope<'_>, room: &RoomId, slice: &Slice) -> Result<StateMap, SyncError> {
    lazy_members(scope, room, slice, StateMap::new(), true).await
}

/// Applies lazy loading of members: member events only for the timeline's
/// senders (and the user). With `only_missing`, adds just those members.
async fn lazy_members(
    scope: &Scope<'_>,
    room: &RoomId,
    slice: &Slice,
    mut state: StateMap,
    only_missing: bool,
) -> Result<StateMap, SyncError> {
    let rooms = &scope.syncer.rooms;
    let in_timeline: HashSet<&OwnedEventId> = slice.events.iter().map(|p| &p.event_id).collect();
    if scope.timeline.lazy_members {
        let mut needed: HashSet<String> = slice.events.iter().map(|p| p.sender().to_string()).collect();
        needed.insert(scope.user_id.to_string());
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
