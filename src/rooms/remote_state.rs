//! The state before a remote event: after its one prev event, or the
//! resolution of the states after each (state resolution v2 where branches
//! meet, v1 for room version 1), and the state and auth chain the
//! server-server API serves at an event.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    OwnedEventId, OwnedUserId, RoomId, UserId,
    events::{StateEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    state_res::{self, utils::event_id_set::EventIdSet},
};

use super::{RoomHead, Rooms, RoomsError, StateMap, pdu::Pdu};

impl Rooms {
    /// The room state before an event: after its one prev event, or the
    /// resolution of the states after each. Prev events this server does
    /// not have in its timeline count as the current state.
    pub(super) async fn state_before(&self, pdu: &Pdu, head: &RoomHead) -> Result<StateMap, RoomsError> {
        let prevs = self.get_pdus(pdu.fields.prev_events.iter()).await?;
        let mut groups: Vec<i64> =
            prevs.values().filter(|p| !p.rejected).filter_map(|p| p.state_group).filter(|g| *g > 0).collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            return Ok((*head.state).clone());
        }
        // A prev event's group is the state after it.
        let mut states = Vec::with_capacity(groups.len());
        for group in groups {
            states.push((*self.state_at_group(group).await?).clone());
        }
        if states.len() == 1 {
            return Ok(states.pop().expect("one"));
        }
        self.resolve(&head.rules, &states, None).await
    }

    /// State resolution v2 (ruma) over `states`. `incoming` is an event
    /// not stored yet that the states may name.
    pub(super) async fn resolve(
        &self,
        rules: &RoomVersionRules,
        states: &[StateMap],
        incoming: Option<&Pdu>,
    ) -> Result<StateMap, RoomsError> {
        let Some(v2) = rules.state_res.v2_rules() else {
            // Room version 1.
            let ids: HashSet<OwnedEventId> = states.iter().flat_map(|s| s.values().cloned()).collect();
            let mut events = self.get_pdus(ids.iter()).await?;
            if let Some(pdu) = incoming {
                events.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
            }
            return Ok(super::state_res_v1::resolve(&rules.authorization, states, &events));
        };
        // Auth chains of each state set, and every event involved, loaded.
        let mut chains = Vec::with_capacity(states.len());
        let mut all: HashSet<OwnedEventId> = HashSet::new();
        for state in states {
            let starts: Vec<String> = state.values().map(|id| id.to_string()).collect();
            let chain = self.db.auth_chain(starts).await?;
            let mut chain: HashSet<OwnedEventId> =
                chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect();
            // The incoming event is not stored: add its auth events' chains.
            if let Some(pdu) = incoming.filter(|p| state.values().any(|id| *id == p.event_id)) {
                let extra =
                    self.db.auth_chain(pdu.fields.auth_events.iter().map(|id| id.to_string()).collect()).await?;
                chain.extend(extra.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()));
                chain.extend(pdu.fields.auth_events.iter().cloned());
            }
            all.extend(chain.iter().cloned());
            all.extend(state.values().cloned());
            chains.push(chain.into_iter().collect::<EventIdSet<OwnedEventId>>());
        }
        let mut events = self.get_pdus(all.iter()).await?;
        if let Some(pdu) = incoming {
            events.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
        }
        let fetch_event = |id: &ruma::EventId| events.get(id).map(|p| (**p).clone());
        let subgraph =
            |conflicted: &state_res::StateMap<Vec<OwnedEventId>>| Some(conflicted_subgraph(conflicted, &events));
        let resolved = state_res::resolve(&rules.authorization, v2, states.iter(), chains, fetch_event, subgraph)
            .map_err(|e| RoomsError::Internal(format!("state resolution failed: {e}")))?;
        tracing::debug!(sets = states.len(), keys = resolved.len(), ?resolved, "resolved state");
        Ok(resolved)
    }

    /// The state of the room at an event (before it, as other servers
    /// expect: they add the event themselves), and the auth chain of that
    /// state, for `/state` and `/state_ids`; the current state without an
    /// event.
    pub async fn state_and_auth_chain_at(
        &self,
        room_id: &RoomId,
        event_id: Option<&OwnedEventId>,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>), RoomsError> {
        let state = match event_id {
            Some(id) => {
                let pdu = self.get_pdu(id).await?.ok_or_else(|| RoomsError::NotFound("unknown event".into()))?;
                if pdu.room != room_id {
                    return Err(RoomsError::NotFound("unknown event".into()));
                }
                let group = pdu
                    .state_group
                    .filter(|g| *g > 0)
                    .ok_or_else(|| RoomsError::NotFound("this server does not know the state at that event".into()))?;
                let mut state = (*self.state_at_group(group).await?).clone();
                // The group is the state after the event: undo the event's own entry.
                if let Some(key) = pdu.state_map_key()
                    && state.get(&key) == Some(&pdu.event_id)
                {
                    // Read from storage: cached events may lack `replaces_state`.
                    let stored = self.db.get_event(pdu.event_id.to_string()).await?;
                    match stored.and_then(|e| e.replaces_state).and_then(|id| OwnedEventId::try_from(id).ok()) {
                        Some(previous) => state.insert(key, previous),
                        None => state.remove(&key),
                    };
                }
                state
            }
            None => (*self.current_state(room_id).await?).clone(),
        };
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let chain = self.db.auth_chain(ids.iter().map(|id| id.to_string()).collect()).await?;
        let chain = chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect();
        Ok((ids, chain))
    }

    /// The stored JSON of events (the PDU format other servers need).
    pub async fn pdu_jsons(&self, ids: &[OwnedEventId]) -> Result<Vec<Box<serde_json::value::RawValue>>, RoomsError> {
        let stored = self.db.get_events(ids.iter().map(|id| id.to_string()).collect()).await?;
        stored
            .into_iter()
            .map(|e| serde_json::value::RawValue::from_string(e.json).map_err(|e| RoomsError::Internal(e.to_string())))
            .collect()
    }
}

/// Users whose membership is `join` in a state map.
pub(super) async fn joined_in(rooms: &Rooms, state: &StateMap) -> Result<HashSet<OwnedUserId>, RoomsError> {
    let members: Vec<OwnedEventId> =
        state.iter().filter(|((t, _), _)| *t == StateEventType::RoomMember).map(|(_, id)| id.clone()).collect();
    let events = rooms.get_pdus(members.iter()).await?;
    Ok(events
        .values()
        .filter(|e| e.membership() == Some(MembershipState::Join))
        .filter_map(|e| UserId::parse(e.state_key()?).ok())
        .collect())
}

/// The conflicted state subgraph (state resolution v2.1): events that are
/// auth-descendants of one conflicted event and auth-ancestors of another.
fn conflicted_subgraph(
    conflicted: &state_res::StateMap<Vec<OwnedEventId>>,
    events: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    // Ancestors of the conflicted events through auth_events.
    let mut ancestors: HashSet<OwnedEventId> = HashSet::new();
    let mut stack: Vec<OwnedEventId> = conflicted.iter().map(|id| (*id).clone()).collect();
    while let Some(id) = stack.pop() {
        if let Some(event) = events.get(&id) {
            for parent in &event.fields.auth_events {
                if ancestors.insert(parent.clone()) {
                    stack.push(parent.clone());
                }
            }
        }
    }
    // Of those (and the conflicted events), the ones that reach a
    // conflicted event through their own auth events.
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    fn reaches_conflicted(
        id: &OwnedEventId,
        conflicted: &HashSet<&OwnedEventId>,
        events: &HashMap<OwnedEventId, Arc<Pdu>>,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(known) = memo.get(id) {
            return *known;
        }
        memo.insert(id.clone(), false);
        let result = conflicted.contains(id)
            || events
                .get(id)
                .is_some_and(|e| e.fields.auth_events.iter().any(|p| reaches_conflicted(p, conflicted, events, memo)));
        memo.insert(id.clone(), result);
        result
    }
    let mut out = EventIdSet::new();
    for id in ancestors.iter().chain(conflicted.iter().copied()) {
        if reaches_conflicted(id, &conflicted, events, &mut reaches) {
            out.insert(id.clone());
        }
    }
    out
}
