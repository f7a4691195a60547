//! What differs between room versions in the PDU format (room versions 1
//! and 2, "Event IDs" and "Event format"; version 3 onwards, "Event IDs"):
//! where an event id comes from — an `event_id` field of the form
//! `$localpart:server`, or the reference hash — and how `prev_events` and
//! `auth_events` name other events (`[event_id, {"sha256": hash}]` pairs,
//! or plain ids).

use std::collections::HashMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, ServerName,
    room_version_rules::{EventIdFormatVersion, RoomVersionRules},
    signatures::reference_hash,
};

use super::{Rooms, RoomsError};

/// Whether events of this room version carry their id in an `event_id`
/// field, and name prev and auth events with `[id, hashes]` pairs.
pub fn ids_in_events(rules: &RoomVersionRules) -> bool {
    rules.event_id_format == EventIdFormatVersion::V1
}

/// The id of a PDU: its `event_id` field in room versions 1 and 2, else
/// `$` and its reference hash.
pub fn event_id_of(obj: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, String> {
    if ids_in_events(rules) {
        return match obj.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => {
                OwnedEventId::try_from(id.as_str()).map_err(|e| format!("invalid event_id: {e}"))
            }
            _ => Err("the PDU has no event_id".to_owned()),
        };
    }
    let hash = reference_hash(obj, rules).map_err(|e| format!("cannot hash the PDU: {e}"))?;
    EventId::new_v2_or_v3(&hash).map_err(|e| e.to_string())
}

/// Gives an event this server creates its `event_id` field when the room
/// version wants one (`$random:server`); must run before hashing and
/// signing, which cover it.
pub fn assign_event_id(obj: &mut CanonicalJsonObject, rules: &RoomVersionRules, server: &ServerName) {
    if ids_in_events(rules) {
        obj.insert("event_id".into(), CanonicalJsonValue::String(EventId::new_v1(server).to_string()));
    }
}

/// `prev_events`/`auth_events` as the room version writes them. `hashes`
/// holds the reference hashes of the events (needed by versions 1 and 2
/// only).
pub fn references(
    ids: &[OwnedEventId],
    rules: &RoomVersionRules,
    hashes: &HashMap<OwnedEventId, String>,
) -> CanonicalJsonValue {
    let items = ids.iter().map(|id| {
        let id_value = CanonicalJsonValue::String(id.to_string());
        if !ids_in_events(rules) {
            return id_value;
        }
        let mut hash = CanonicalJsonObject::new();
        if let Some(sha256) = hashes.get(id) {
            hash.insert("sha256".into(), CanonicalJsonValue::String(sha256.clone()));
        }
        CanonicalJsonValue::Array(vec![id_value, CanonicalJsonValue::Object(hash)])
    });
    CanonicalJsonValue::Array(items.collect())
}

impl Rooms {
    /// `prev_events`/`auth_events` naming `ids` in the room version's
    /// format; for versions 1 and 2 the stored events are read for their
    /// reference hashes.
    pub(super) async fn event_references(
        &self,
        ids: &[OwnedEventId],
        rules: &RoomVersionRules,
    ) -> Result<CanonicalJsonValue, RoomsError> {
        let mut hashes = HashMap::new();
        if ids_in_events(rules) {
            for stored in self.db.get_events(ids.iter().map(|id| id.to_string()).collect()).await? {
                let obj: CanonicalJsonObject =
                    serde_json::from_str(&stored.json).map_err(|e| RoomsError::Internal(e.to_string()))?;
                let hash = reference_hash(&obj, rules).map_err(|e| RoomsError::Internal(e.to_string()))?;
                let id = OwnedEventId::try_from(stored.event_id).map_err(|e| RoomsError::Internal(e.to_string()))?;
                hashes.insert(id, hash);
            }
        }
        Ok(references(ids, rules, &hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::deserialize_references;
    use ruma::{RoomVersionId, server_name};
    use serde::Deserialize;

    #[test]
    fn references_are_read_in_both_formats() {
        #[derive(Deserialize)]
        struct Refs {
            #[serde(deserialize_with = "deserialize_references")]
            prev_events: Vec<OwnedEventId>,
        }
        let v1: Refs = serde_json::from_str(r#"{"prev_events":[["$a:x.org",{"sha256":"abc"}],["$b:y.org",{}]]}"#)
            .expect("pairs parse");
        assert_eq!(v1.prev_events, vec![OwnedEventId::try_from("$a:x.org").unwrap(), "$b:y.org".try_into().unwrap()]);
        let v4: Refs = serde_json::from_str(r#"{"prev_events":["$abc"]}"#).expect("ids parse");
        assert_eq!(v4.prev_events, vec![OwnedEventId::try_from("$abc").unwrap()]);
        assert!(serde_json::from_str::<Refs>(r#"{"prev_events":[[]]}"#).is_err());
        assert!(serde_json::from_str::<Refs>(r#"{"prev_events":[7]}"#).is_err());
    }

    #[test]
    fn version_1_events_carry_their_id_and_reference_pairs() {
        let rules = RoomVersionId::V1.rules().expect("v1 rules");
        let mut obj = CanonicalJsonObject::new();
        assign_event_id(&mut obj, &rules, server_name!("a.test"));
        let id = event_id_of(&obj, &rules).expect("an id");
        assert_eq!(id.server_name().map(|s| s.as_str()), Some("a.test"));
        let hashes = HashMap::from([(id.clone(), "h".to_owned())]);
        let refs = serde_json::to_value(references(std::slice::from_ref(&id), &rules, &hashes)).unwrap();
        assert_eq!(refs, serde_json::json!([[id.as_str(), {"sha256": "h"}]]));

        let rules = RoomVersionId::V10.rules().expect("v10 rules");
        let mut obj = CanonicalJsonObject::new();
        assign_event_id(&mut obj, &rules, server_name!("a.test"));
        assert!(!obj.contains_key("event_id"));
        let refs = serde_json::to_value(references(std::slice::from_ref(&id), &rules, &hashes)).unwrap();
        assert_eq!(refs, serde_json::json!([id.as_str()]));
    }
}
