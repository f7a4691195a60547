//! State resolution for room version 1 (room version 1, "State
//! resolution"), which ruma does not implement: unconflicted state first,
//! then conflicted power levels, join rules and memberships in order of
//! depth while the auth rules allow them, then the other conflicts by
//! depth. Later versions use ruma's state resolution v2.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma::{OwnedEventId, events::StateEventType, room_version_rules::AuthorizationRules, state_res};
use sha1::{Digest, Sha1};

use super::{StateMap, pdu::Pdu};

type Key = (StateEventType, String);

/// Resolves `states`; `events` holds every event they name (events it
/// lacks are left out of conflicts).
pub fn resolve(rules: &AuthorizationRules, states: &[StateMap], events: &HashMap<OwnedEventId, Arc<Pdu>>) -> StateMap {
    let mut candidates: BTreeMap<Key, Vec<OwnedEventId>> = BTreeMap::new();
    for state in states {
        for (key, id) in state {
            let ids = candidates.entry(key.clone()).or_default();
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    // R starts as the union of the states without the conflicting events.
    let mut resolved = StateMap::new();
    let mut conflicts: BTreeMap<Key, Vec<Arc<Pdu>>> = BTreeMap::new();
    for (key, ids) in candidates {
        if let [only] = ids.as_slice() {
            resolved.insert(key, only.clone());
        } else {
            conflicts.insert(key, ids.iter().filter_map(|id| events.get(id).cloned()).collect());
        }
    }
    let allowed = |pdu: &Pdu, r: &StateMap| {
        let fetch = |kind: &StateEventType, key: &str| {
            r.get(&(kind.clone(), key.to_owned())).and_then(|id| events.get(id).cloned())
        };
        state_res::check_state_dependent_auth_rules(rules, pdu, fetch).is_ok()
    };
    // Power levels, then join rules, then each membership: oldest first,
    // the first unconditionally, the rest while the auth rules allow them.
    let ordered_kinds = [StateEventType::RoomPowerLevels, StateEventType::RoomJoinRules, StateEventType::RoomMember];
    for kind in &ordered_kinds {
        let keys: Vec<Key> = conflicts.keys().filter(|(k, _)| k == kind).cloned().collect();
        for key in keys {
            let mut list = conflicts.remove(&key).unwrap_or_default();
            list.sort_by(|a, b| depth(a).cmp(&depth(b)).then_with(|| sha1_of(b).cmp(&sha1_of(a))));
            let mut list = list.into_iter();
            if let Some(first) = list.next() {
                resolved.insert(key.clone(), first.event_id.clone());
            }
            for pdu in list {
                if !allowed(&pdu, &resolved) {
                    break;
                }
                resolved.insert(key.clone(), pdu.event_id.clone());
            }
        }
    }
    // Everything else: the deepest (then lowest sha1) event the auth rules
    // allow in R.
    for (key, mut list) in conflicts {
        list.sort_by(|a, b| depth(b).cmp(&depth(a)).then_with(|| sha1_of(a).cmp(&sha1_of(b))));
        if let Some(pdu) = list.iter().find(|pdu| allowed(pdu, &resolved)) {
            resolved.insert(key, pdu.event_id.clone());
        }
    }
    resolved
}

fn depth(pdu: &Pdu) -> u64 {
    u64::from(pdu.fields.depth)
}

fn sha1_of(pdu: &Pdu) -> [u8; 20] {
    Sha1::digest(pdu.event_id.as_str().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedRoomId, RoomVersionId};
    use serde_json::json;

    use super::*;

    fn pdu(id: &str, kind: &str, key: &str, sender: &str, depth: u64, content: serde_json::Value) -> Arc<Pdu> {
        let json = json!({
            "type": kind, "state_key": key, "sender": sender, "content": content, "depth": depth,
            "origin_server_ts": 1, "room_id": "!r:a.test", "prev_events": [], "auth_events": [],
        });
        let room = OwnedRoomId::try_from("!r:a.test").unwrap();
        Arc::new(Pdu::from_json(id.try_into().unwrap(), room, &json.to_string()).unwrap())
    }

    fn key(kind: &str, key: &str) -> Key {
        (StateEventType::from(kind), key.to_owned())
    }

    #[test]
    fn resolves_conflicts_by_depth_and_the_auth_rules() {
        let rules = RoomVersionId::V1.rules().unwrap().authorization;
        let events: Vec<Arc<Pdu>> = vec![
            pdu("$create:a.test", "m.room.create", "", "@alice:a.test", 1, json!({"creator": "@alice:a.test"})),
            pdu("$join:a.test", "m.room.member", "@alice:a.test", "@alice:a.test", 2, json!({"membership": "join"})),
            pdu("$pl:a.test", "m.room.power_levels", "", "@alice:a.test", 3, json!({"users": {"@alice:a.test": 100}})),
            pdu("$old:a.test", "m.room.topic", "", "@alice:a.test", 4, json!({"topic": "old"})),
            pdu("$new:a.test", "m.room.topic", "", "@alice:a.test", 5, json!({"topic": "new"})),
            // Sent by someone who is not in the room: never allowed.
            pdu("$bad:b.test", "m.room.name", "", "@eve:b.test", 9, json!({"name": "eve's"})),
            pdu("$name:a.test", "m.room.name", "", "@alice:a.test", 6, json!({"name": "alice's"})),
        ];
        let by_id: HashMap<OwnedEventId, Arc<Pdu>> = events.iter().map(|e| (e.event_id.clone(), e.clone())).collect();
        let base = StateMap::from([
            (key("m.room.create", ""), "$create:a.test".try_into().unwrap()),
            (key("m.room.member", "@alice:a.test"), "$join:a.test".try_into().unwrap()),
            (key("m.room.power_levels", ""), "$pl:a.test".try_into().unwrap()),
        ]);
        let mut one = base.clone();
        one.insert(key("m.room.topic", ""), "$old:a.test".try_into().unwrap());
        one.insert(key("m.room.name", ""), "$bad:b.test".try_into().unwrap());
        let mut two = base.clone();
        two.insert(key("m.room.topic", ""), "$new:a.test".try_into().unwrap());
        two.insert(key("m.room.name", ""), "$name:a.test".try_into().unwrap());

        let resolved = resolve(&rules, &[one, two], &by_id);
        assert_eq!(resolved[&key("m.room.topic", "")].as_str(), "$new:a.test");
        assert_eq!(resolved[&key("m.room.name", "")].as_str(), "$name:a.test");
        assert_eq!(resolved[&key("m.room.power_levels", "")].as_str(), "$pl:a.test");
        assert_eq!(resolved.len(), 5);
    }
}
