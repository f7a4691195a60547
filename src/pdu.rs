//! PDUs: parsing stored events, the `state_res::Event` view ruma's auth
//! rules and state resolution need, and the client event format
//! (client-server API, "Room Events"; server-server API, "PDUs").

use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    UInt, UserId,
    events::{TimelineEventType, room::member::MembershipState},
};
use serde::{Deserialize, Deserializer, de};
use serde_json::{Value, value::RawValue};

/// An event of a room, parsed from its stored canonical JSON.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// The room, known even for a v12 create event (whose JSON has none).
    pub room: OwnedRoomId,
    pub fields: PduFields,
    pub rejected: bool,
    /// Local stream position, when stored.
    pub stream_ordering: Option<i64>,
    /// State group of the room after this event, when stored.
    pub state_group: Option<i64>,
    pub replaces_state: Option<OwnedEventId>,
    pub redacted_by: Option<OwnedEventId>,
    /// `(device, txn_id)` of the sender's device that sent it, if it came
    /// through the client-server API with a transaction id.
    pub txn: Option<(OwnedDeviceId, String)>,
}

/// The PDU fields Plexus reads. Unknown fields stay in the stored JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct PduFields {
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    #[serde(default, deserialize_with = "deserialize_references")]
    pub prev_events: Vec<OwnedEventId>,
    #[serde(default, deserialize_with = "deserialize_references")]
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: UInt,
    #[serde(default)]
    pub unsigned: Option<Box<RawValue>>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed PDU: {0}")]
pub struct PduError(pub String);

impl Pdu {
    /// The `(type, state key)` a state event sets in a room's state map;
    /// `None` for a message.
    pub fn state_map_key(&self) -> Option<(ruma::events::StateEventType, String)> {
        self.state_key().map(|k| (ruma::events::StateEventType::from(self.kind().to_string()), k.to_owned()))
    }

    /// Parses a PDU whose event id and room are known.
    pub fn from_json(event_id: OwnedEventId, room: OwnedRoomId, json: &str) -> Result<Self, PduError> {
        let fields: PduFields = serde_json::from_str(json).map_err(|e| PduError(e.to_string()))?;
        Ok(Self {
            event_id,
            room,
            fields,
            rejected: false,
            stream_ordering: None,
            state_group: None,
            replaces_state: None,
            redacted_by: None,
            txn: None,
        })
    }

    pub fn from_canonical(
        event_id: OwnedEventId,
        room: OwnedRoomId,
        obj: &CanonicalJsonObject,
    ) -> Result<Self, PduError> {
        let json = serde_json::to_string(obj).map_err(|e| PduError(e.to_string()))?;
        Self::from_json(event_id, room, &json)
    }

    pub fn kind(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    pub fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    pub fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.fields.content.get()).unwrap_or(Value::Null)
    }

    /// Deserialises the content as a ruma content type.
    pub fn content<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        serde_json::from_str(self.fields.content.get()).ok()
    }

    /// The `membership` of an `m.room.member` event (`None` for other
    /// events, or a member event without one). Reads only that field.
    pub fn membership(&self) -> Option<MembershipState> {
        if self.fields.kind != TimelineEventType::RoomMember {
            return None;
        }
        #[derive(Deserialize)]
        struct Membership {
            membership: MembershipState,
        }
        self.content::<Membership>().map(|m| m.membership)
    }

    /// The event a redaction redacts: top-level before v11, in the content since.
    pub fn redacts_target(&self) -> Option<OwnedEventId> {
        if let Some(id) = &self.fields.redacts {
            return Some(id.clone());
        }
        #[derive(Deserialize)]
        struct Redacts {
            redacts: Option<OwnedEventId>,
        }
        self.content::<Redacts>().and_then(|r| r.redacts)
    }

    /// The event in the client-server format, without `unsigned` extras the
    /// caller adds (age, transaction id, prev_content).
    pub fn to_client_event(&self) -> serde_json::Map<String, Value> {
        let mut obj = serde_json::Map::new();
        obj.insert("event_id".into(), Value::String(self.event_id.to_string()));
        obj.insert("room_id".into(), Value::String(self.room.to_string()));
        obj.insert("sender".into(), Value::String(self.fields.sender.to_string()));
        obj.insert("type".into(), Value::String(self.fields.kind.to_string()));
        obj.insert("origin_server_ts".into(), Value::from(u64::from(self.fields.origin_server_ts.0)));
        obj.insert("content".into(), self.content_value());
        if let Some(key) = &self.fields.state_key {
            obj.insert("state_key".into(), Value::String(key.clone()));
        }
        if self.fields.kind == TimelineEventType::RoomRedaction
            && let Some(target) = self.redacts_target()
        {
            // Clients of every room version find the target at the top level.
            obj.insert("redacts".into(), Value::String(target.to_string()));
        }
        let mut unsigned = self
            .fields
            .unsigned
            .as_ref()
            .and_then(|u| serde_json::from_str::<serde_json::Map<String, Value>>(u.get()).ok())
            .unwrap_or_default();
        let now = MilliSecondsSinceUnixEpoch::now().0;
        let age = u64::from(now).saturating_sub(u64::from(self.fields.origin_server_ts.0));
        unsigned.insert("age".into(), Value::from(age));
        obj.insert("unsigned".into(), Value::Object(unsigned));
        obj
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.fields.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.fields.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    fn content(&self) -> &RawValue {
        &self.fields.content
    }

    fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.fields.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}
/// Reads `prev_events`/`auth_events` in either format: plain ids, or
/// `[id, hashes]` pairs (room versions 1 and 2), keeping the ids.
pub fn deserialize_references<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OwnedEventId>, D::Error> {
    struct Reference(OwnedEventId);

    impl<'de> Deserialize<'de> for Reference {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> de::Visitor<'de> for Visitor {
                type Value = Reference;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an event id or an [event id, hashes] pair")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Reference, E> {
                    OwnedEventId::try_from(v).map(Reference).map_err(E::custom)
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Reference, A::Error> {
                    let id: OwnedEventId = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(0, &"an [event id, hashes] pair"))?;
                    // The hashes are not checked by anyone; skip them.
                    while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                    Ok(Reference(id))
                }
            }
            d.deserialize_any(Visitor)
        }
    }

    let refs: Vec<Reference> = Vec::deserialize(d)?;
    Ok(refs.into_iter().map(|r| r.0).collect())
}
