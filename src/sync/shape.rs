//! The `/sync` response as JSON (client-server API, `GET /sync`): every
//! key a client may look for is there when empty or false, as Synapse
//! sends them (per room: `timeline` with `events`, `limited` and
//! `prev_batch`, `state`, `account_data`, and for joined rooms
//! `ephemeral`, `unread_notifications` and `summary`; at the top:
//! `rooms` with its four sections, `presence`, `account_data`,
//! `to_device`, `device_lists` and the key counts). Ruma's types leave
//! out whatever is empty, so the response is written from them here,
//! directly, with no JSON tree between: this runs for every sync.

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId,
    api::client::sync::sync_events::v3::{
        InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, Response, Rooms, State, Timeline,
    },
};
use serde::{Serialize, Serializer, ser::SerializeMap};

/// The response as `GET /sync` sends it.
pub fn response_json(response: &Response) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Body(response))
}

struct Body<'a>(&'a Response);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("next_batch", &r.next_batch)?;
        map.serialize_entry("rooms", &RoomsBody(&r.rooms))?;
        map.serialize_entry("presence", &Events(&r.presence.events))?;
        map.serialize_entry("account_data", &Events(&r.account_data.events))?;
        map.serialize_entry("to_device", &Events(&r.to_device.events))?;
        map.serialize_entry("device_lists", &DeviceLists(&r.device_lists))?;
        map.serialize_entry("device_one_time_keys_count", &r.device_one_time_keys_count)?;
        if let Some(types) = &r.device_unused_fallback_key_types {
            map.serialize_entry("device_unused_fallback_key_types", types)?;
        }
        map.end()
    }
}

/// `{"events": [...]}`, also when there are none.
struct Events<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Events<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("events", self.0)?;
        map.end()
    }
}

struct DeviceLists<'a>(&'a ruma::api::client::sync::sync_events::DeviceLists);

impl Serialize for DeviceLists<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("changed", &self.0.changed)?;
        map.serialize_entry("left", &self.0.left)?;
        map.end()
    }
}

struct RoomsBody<'a>(&'a Rooms);

impl Serialize for RoomsBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rooms = self.0;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("join", &Section(&rooms.join, Joined))?;
        map.serialize_entry("invite", &Section(&rooms.invite, Invited))?;
        map.serialize_entry("leave", &Section(&rooms.leave, Left))?;
        map.serialize_entry("knock", &Section(&rooms.knock, Knocked))?;
        map.end()
    }
}

/// One of `rooms`' sections: room id to the room as `F` writes it.
struct Section<'a, R, F>(&'a BTreeMap<OwnedRoomId, R>, F);

/// How a room of one section is written.
trait RoomShape<R> {
    fn write<M: SerializeMap>(&self, room: &R, map: &mut M) -> Result<(), M::Error>;
}

/// A room through its section's `RoomShape`.
struct Room<'a, R, F>(&'a R, &'a F);

impl<R, F: RoomShape<R>> Serialize for Room<'_, R, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.1.write(self.0, &mut map)?;
        map.end()
    }
}

impl<R, F: RoomShape<R>> Serialize for Section<'_, R, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(id, room)| (id, Room(room, &self.1))))
    }
}

struct Joined;
struct Left;
struct Invited;
struct Knocked;

impl RoomShape<JoinedRoom> for Joined {
    fn write<M: SerializeMap>(&self, room: &JoinedRoom, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("timeline", &TimelineBody(&room.timeline))?;
        write_state(&room.state, map)?;
        map.serialize_entry("account_data", &Events(&room.account_data.events))?;
        map.serialize_entry("ephemeral", &Events(&room.ephemeral.events))?;
        map.serialize_entry("unread_notifications", &room.unread_notifications)?;
        if !room.unread_thread_notifications.is_empty() {
            map.serialize_entry("unread_thread_notifications", &room.unread_thread_notifications)?;
        }
        map.serialize_entry("summary", &room.summary)
    }
}

impl RoomShape<LeftRoom> for Left {
    fn write<M: SerializeMap>(&self, room: &LeftRoom, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("timeline", &TimelineBody(&room.timeline))?;
        write_state(&room.state, map)?;
        map.serialize_entry("account_data", &Events(&room.account_data.events))
    }
}

impl RoomShape<InvitedRoom> for Invited {
    fn write<M: SerializeMap>(&self, room: &InvitedRoom, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("invite_state", &Events(&room.invite_state.events))
    }
}

impl RoomShape<KnockedRoom> for Knocked {
    fn write<M: SerializeMap>(&self, room: &KnockedRoom, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("knock_state", &Events(&room.knock_state.events))
    }
}

/// `state` (or MSC4222's `state_after`), with its `events` even when none.
fn write_state<M: SerializeMap>(state: &State, map: &mut M) -> Result<(), M::Error> {
    match state {
        State::After(after) => map.serialize_entry("state_after", &Events(&after.events)),
        State::Before(before) => map.serialize_entry("state", &Events(&before.events)),
        // A form ruma may add later, which Plexus does not make.
        _ => Ok(()),
    }
}

/// `timeline` with `events` and `limited` always, and `prev_batch`
/// whenever there is one (a timeline's start is always known here).
struct TimelineBody<'a>(&'a Timeline);

impl Serialize for TimelineBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("events", &t.events)?;
        map.serialize_entry("limited", &t.limited)?;
        if let Some(prev_batch) = &t.prev_batch {
            map.serialize_entry("prev_batch", prev_batch)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        api::client::sync::sync_events::v3::{InvitedRoom, JoinedRoom, LeftRoom, Response},
        owned_room_id,
    };
    use serde_json::{Value, json};

    use super::response_json;

    fn json_of(response: &Response) -> Value {
        serde_json::from_slice(&response_json(response).expect("serialises")).expect("is JSON")
    }

    #[test]
    fn an_empty_response_has_every_top_level_key() {
        let body = json_of(&Response::new("s1_2_3".into()));
        assert_eq!(
            body,
            json!({
                "next_batch": "s1_2_3",
                "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
                "presence": {"events": []},
                "account_data": {"events": []},
                "to_device": {"events": []},
                "device_lists": {"changed": [], "left": []},
                "device_one_time_keys_count": {},
            })
        );
    }

    #[test]
    fn empty_rooms_keep_their_sections() {
        let mut response = Response::new("s1_2_3".into());
        let mut joined = JoinedRoom::new();
        joined.timeline.prev_batch = Some("t5".into());
        response.rooms.join.insert(owned_room_id!("!a:x.test"), joined);
        let mut left = LeftRoom::new();
        left.timeline.prev_batch = Some("t4".into());
        response.rooms.leave.insert(owned_room_id!("!b:x.test"), left);
        response.rooms.invite.insert(owned_room_id!("!c:x.test"), InvitedRoom::new());
        response.device_unused_fallback_key_types = Some(vec![]);
        let body = json_of(&response);
        assert_eq!(
            body["rooms"]["join"]["!a:x.test"],
            json!({
                "timeline": {"events": [], "limited": false, "prev_batch": "t5"},
                "state": {"events": []},
                "account_data": {"events": []},
                "ephemeral": {"events": []},
                "unread_notifications": {},
                "summary": {},
            })
        );
        assert_eq!(
            body["rooms"]["leave"]["!b:x.test"],
            json!({
                "timeline": {"events": [], "limited": false, "prev_batch": "t4"},
                "state": {"events": []},
                "account_data": {"events": []},
            })
        );
        assert_eq!(body["rooms"]["invite"]["!c:x.test"], json!({"invite_state": {"events": []}}));
        assert_eq!(body["device_unused_fallback_key_types"], json!([]));
    }
}
