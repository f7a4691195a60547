//! Events fetched from other servers that only matter for their content:
//! the joining side of a join over federation (server-server API,
//! "Joining Rooms": the state and auth chain `send_join` returned, stored
//! under the join, which becomes the room's head), and auth chains and
//! state fetched for an incoming event. Each is checked against its own
//! auth events before it is stored as an outlier.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{OwnedEventId, RoomVersionId, events::StateEventType, room_version_rules::RoomVersionRules};

use super::{
    Rooms, RoomsError, StateMap,
    pdu::Pdu,
    remote::{VerifiedPdu, auth_with_events},
};
use crate::storage::rooms::{CurrentStateWrite, NewEvent, Outlier, StateWrite, StoredState};

impl Rooms {
    /// Joins a room over federation: stores its state and auth chain
    /// (signatures and hashes checked by the caller; the auth rules checked
    /// here) and the join event, which becomes the room's only forward
    /// extremity.
    pub async fn import_joined_room(
        &self,
        version: &RoomVersionId,
        state: Vec<VerifiedPdu>,
        auth_chain: Vec<VerifiedPdu>,
        join: VerifiedPdu,
    ) -> Result<Arc<Pdu>, RoomsError> {
        let room_id = join.pdu.room.clone();
        let rules = version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(version.to_string()))?;
        // Every event of the state and the auth chain must pass the auth
        // rules against its own auth events; those that do not are dropped,
        // and so are those that depend on them.
        let accepted = authorise_each(&rules, state.iter().chain(&auth_chain), HashMap::new());
        if let Some(missing) = join.pdu.fields.auth_events.iter().find(|id| !accepted.contains(*id)) {
            return Err(RoomsError::Forbidden(format!(
                "cannot join: the join's auth event {missing} is missing from the room state the resident \
                 server sent, or fails the auth rules"
            )));
        }
        let state: Vec<VerifiedPdu> = state.into_iter().filter(|e| accepted.contains(&e.pdu.event_id)).collect();
        let slot = self.head_slot(&room_id);
        let mut guard = slot.lock().await;
        let mut seen = HashSet::new();
        let outliers: Vec<Outlier> = auth_chain
            .iter()
            .chain(&state)
            .filter(|e| accepted.contains(&e.pdu.event_id) && seen.insert(e.pdu.event_id.clone()))
            .map(|e| e.outlier(false))
            .collect();
        self.db.store_outliers(outliers).await?;

        let mut map = StateMap::new();
        for event in &state {
            if let Some(key) = event.pdu.state_map_key() {
                map.insert(key, event.pdu.event_id.clone());
            }
        }
        let create = map
            .get(&(StateEventType::RoomCreate, String::new()))
            .and_then(|id| state.iter().find(|e| &e.pdu.event_id == id))
            .ok_or_else(|| RoomsError::BadJson("the room state has no create event".into()))?;
        let creator = create.pdu.sender().to_string();
        // The join must pass the auth rules against the state it joins.
        let mut auth = self.get_pdus(join.pdu.fields.auth_events.iter()).await?;
        auth.insert(create.pdu.event_id.clone(), Arc::new(create.pdu.clone()));
        auth_with_events(&join.pdu, &rules, &auth).map_err(RoomsError::Forbidden)?;
        self.auth_with_state(&join.pdu, &rules, &map).await.map_err(RoomsError::Forbidden)?;
        map.insert(join.pdu.state_map_key().expect("a join is a state event"), join.pdu.event_id.clone());
        let full: StoredState = map.iter().map(|((t, k), id)| ((t.to_string(), k.clone()), id.to_string())).collect();
        let pdu = &join.pdu;
        let appended = self
            .db
            .append_event(NewEvent {
                forward_extremities: vec![pdu.event_id.to_string()],
                new_room: Some((version.to_string(), creator)),
                ..join.new_event(StateWrite::Full { state: full.clone() }, CurrentStateWrite::Replace(full))
            })
            .await?;
        *guard = self.load_head(&room_id).await?;
        let mut stored = pdu.clone();
        stored.stream_ordering = Some(appended.stream_ordering);
        stored.state_group = Some(appended.state_group);
        let stored = Arc::new(stored);
        self.events.insert(stored.event_id.clone(), stored.clone());
        self.event_committed(appended.stream_ordering, &stored, &[pdu.sender()], &[]).await;
        Ok(stored)
    }
}

impl Rooms {
    /// Stores events fetched from another server (auth chains, state) as
    /// outliers, each only if it passes the auth rules against its own auth
    /// events, stored already or among `events`; returns the ids stored.
    pub async fn store_outliers(
        &self,
        version: &RoomVersionId,
        events: &[VerifiedPdu],
    ) -> Result<HashSet<OwnedEventId>, RoomsError> {
        let Some(first) = events.first() else { return Ok(HashSet::new()) };
        let rules = version.rules().ok_or_else(|| RoomsError::UnsupportedRoomVersion(version.to_string()))?;
        let fetched: HashSet<&OwnedEventId> = events.iter().map(|e| &e.pdu.event_id).collect();
        let mut wanted: Vec<OwnedEventId> = events
            .iter()
            .flat_map(|e| e.pdu.fields.auth_events.iter())
            .filter(|id| !fetched.contains(id))
            .cloned()
            .collect();
        if self.knows_room(&first.pdu.room).await?
            && let Some(create) =
                self.current_state(&first.pdu.room).await?.get(&(StateEventType::RoomCreate, String::new()))
        {
            wanted.push(create.clone());
        }
        let known = self.get_pdus(wanted.iter()).await?;
        let passed = authorise_each(&rules, events.iter(), known);
        let outliers = events.iter().filter(|e| passed.contains(&e.pdu.event_id)).map(|e| e.outlier(false)).collect();
        self.db.store_outliers(outliers).await?;
        Ok(passed)
    }
}

/// The ids of the events that pass the auth rules against their own
/// auth events (each of which must be among `known`, stored events, or
/// among `events` and pass too).
/// Events are taken in depth order, with further passes for any whose
/// auth events came later.
fn authorise_each<'a>(
    rules: &RoomVersionRules,
    events: impl Iterator<Item = &'a VerifiedPdu>,
    known: HashMap<OwnedEventId, Arc<Pdu>>,
) -> HashSet<OwnedEventId> {
    let mut pending: Vec<&VerifiedPdu> = Vec::new();
    let mut ids = HashSet::new();
    for event in events {
        if ids.insert(event.pdu.event_id.clone()) {
            pending.push(event);
        }
    }
    pending.sort_by(|a, b| {
        u64::from(a.pdu.fields.depth).cmp(&u64::from(b.pdu.fields.depth)).then(a.pdu.event_id.cmp(&b.pdu.event_id))
    });
    // Room version 12 leaves the create event out of auth events.
    let mut create: Option<Arc<Pdu>> =
        known.values().find(|e| *e.kind() == ruma::events::TimelineEventType::RoomCreate).cloned();
    let mut accepted: HashMap<OwnedEventId, Arc<Pdu>> = known.into_iter().filter(|(_, e)| !e.rejected).collect();
    let mut passed = HashSet::new();
    loop {
        let before = pending.len();
        let mut waiting = Vec::new();
        for event in pending {
            let pdu = &event.pdu;
            if !pdu.fields.auth_events.iter().all(|id| accepted.contains_key(id)) {
                waiting.push(event);
                continue;
            }
            let mut auth: HashMap<OwnedEventId, Arc<Pdu>> =
                pdu.fields.auth_events.iter().map(|id| (id.clone(), accepted[id].clone())).collect();
            if let Some(create) = &create {
                auth.insert(create.event_id.clone(), create.clone());
            }
            match auth_with_events(pdu, rules, &auth) {
                Ok(()) => {
                    let parsed = Arc::new(pdu.clone());
                    if *pdu.kind() == ruma::events::TimelineEventType::RoomCreate && create.is_none() {
                        create = Some(parsed.clone());
                    }
                    accepted.insert(pdu.event_id.clone(), parsed);
                    passed.insert(pdu.event_id.clone());
                }
                Err(reason) => {
                    tracing::info!(event_id = %pdu.event_id, %reason, "dropped a joined room's event that fails auth")
                }
            }
        }
        pending = waiting;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for event in pending {
        tracing::info!(event_id = %event.pdu.event_id, "dropped a joined room's event whose auth events are missing");
    }
    passed
}

#[cfg(test)]
mod tests {
    use ruma::{CanonicalJsonObject, OwnedRoomId};
    use serde_json::json;

    use super::*;

    fn event(
        id: &str,
        kind: &str,
        key: &str,
        sender: &str,
        depth: u64,
        auth: &[&str],
        content: serde_json::Value,
    ) -> VerifiedPdu {
        let value = json!({
            "type": kind, "state_key": key, "sender": sender, "content": content, "depth": depth,
            "origin_server_ts": 1, "room_id": "!r:a.test", "auth_events": auth,
            // The creator's join must follow the create event alone.
            "prev_events": if depth == 2 { vec!["$create"] } else { vec![] },
        });
        let obj: CanonicalJsonObject = serde_json::from_value(value).unwrap();
        let room = OwnedRoomId::try_from("!r:a.test").unwrap();
        VerifiedPdu::new(id.try_into().unwrap(), &room, &obj).unwrap()
    }

    #[test]
    fn events_failing_auth_and_their_dependants_are_dropped() {
        let rules = RoomVersionId::V10.rules().unwrap();
        let alice = "@alice:a.test";
        let mallory = "@mallory:b.test";
        let events = [
            event("$create", "m.room.create", "", alice, 1, &[], json!({"creator": alice})),
            event("$join", "m.room.member", alice, alice, 2, &["$create"], json!({"membership": "join"})),
            event("$pl", "m.room.power_levels", "", alice, 3, &["$create", "$join"], json!({"users": {alice: 100}})),
            event(
                "$rules",
                "m.room.join_rules",
                "",
                alice,
                4,
                &["$create", "$join", "$pl"],
                json!({"join_rule": "invite"}),
            ),
            // Not invited to an invite-only room: fails its own auth events.
            event(
                "$sneak",
                "m.room.member",
                mallory,
                mallory,
                5,
                &["$create", "$pl", "$rules"],
                json!({"membership": "join"}),
            ),
            // Authorised only by the dropped join.
            event("$topic", "m.room.topic", "", mallory, 6, &["$create", "$pl", "$sneak"], json!({"topic": "mine"})),
            // Names an auth event nobody sent.
            event("$orphan", "m.room.name", "", alice, 7, &["$create", "$pl", "$nowhere"], json!({"name": "x"})),
        ];
        // Order does not matter: auth events may come after what they authorise.
        let accepted = authorise_each(&rules, events.iter().rev(), HashMap::new());
        let mut accepted: Vec<&str> = accepted.iter().map(|id| id.as_str()).collect();
        accepted.sort();
        assert_eq!(accepted, vec!["$create", "$join", "$pl", "$rules"]);

        // Auth events stored already count, and are not returned.
        let known: HashMap<OwnedEventId, Arc<Pdu>> =
            events[..3].iter().map(|e| (e.pdu.event_id.clone(), Arc::new(e.pdu.clone()))).collect();
        let accepted = authorise_each(&rules, events[3..5].iter(), known);
        assert_eq!(accepted, HashSet::from([OwnedEventId::try_from("$rules").unwrap()]));
    }
}
