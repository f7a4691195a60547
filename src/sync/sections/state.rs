//! The state sent with a room's timeline (client-server API, "Syncing":
//! `state`; "Lazy-loading room members"): the state before the timeline
//! for a room new to the client, what changed since the token for a gappy
//! timeline, and, when members are lazy-loaded, only the members the
//! timeline needs.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedEventId, RoomId, events::StateEventType};

use super::{
    super::scope::{RoomView, Scope},
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
