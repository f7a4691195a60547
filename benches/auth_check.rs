//! The auth rules over a realistic room: a public v11 room with 200
//! members, checked with the same ruma calls `rooms::append` makes (the
//! state-independent rules against the auth events, then the
//! state-dependent rules against the current state).

use std::{collections::HashMap, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use plexus::{
    rooms::pdu::Pdu,
    ruma::{EventId, OwnedEventId, OwnedRoomId, RoomVersionId, events::StateEventType, state_res},
};
use serde_json::{Value, json};

const MEMBERS: usize = 200;

/// A room: events by id, and its current state.
struct Room {
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    state: HashMap<(StateEventType, String), OwnedEventId>,
    room_id: OwnedRoomId,
    depth: u64,
}

impl Room {
    fn new() -> Self {
        Self {
            events: HashMap::new(),
            state: HashMap::new(),
            room_id: "!bench:plexus.test".try_into().expect("room id"),
            depth: 0,
        }
    }

    fn id(&self, kind: StateEventType, key: &str) -> Option<OwnedEventId> {
        self.state.get(&(kind, key.to_owned())).cloned()
    }

    /// Builds an event with the given auth events on top of the room.
    fn event(
        &mut self,
        kind: &str,
        sender: &str,
        state_key: Option<&str>,
        content: Value,
        auth: Vec<OwnedEventId>,
    ) -> Pdu {
        self.depth += 1;
        let event_id = OwnedEventId::try_from(format!("$bench{}", self.depth)).expect("event id");
        let mut json = json!({
            "room_id": self.room_id,
            "sender": sender,
            "origin_server_ts": 1_764_000_000_000u64 + self.depth,
            "type": kind,
            "content": content,
            "prev_events": [],
            "auth_events": auth,
            "depth": self.depth,
        });
        if let Some(key) = state_key {
            json["state_key"] = json!(key);
        }
        Pdu::from_json(event_id, self.room_id.clone(), &json.to_string()).expect("a valid PDU")
    }

    fn add(&mut self, pdu: Pdu) {
        if let Some(key) = pdu.state_key() {
            self.state.insert((pdu.kind().to_string().into(), key.to_owned()), pdu.event_id.clone());
        }
        self.events.insert(pdu.event_id.clone(), Arc::new(pdu));
    }

    fn populated() -> Self {
        let mut room = Self::new();
        let alice = "@alice:plexus.test";
        let create = room.event("m.room.create", alice, Some(""), json!({"room_version": "11"}), vec![]);
        let create_id = create.event_id.clone();
        room.add(create);
        let join =
            room.event("m.room.member", alice, Some(alice), json!({"membership": "join"}), vec![create_id.clone()]);
        let alice_member = join.event_id.clone();
        room.add(join);
        let levels = json!({"users": {alice: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
                            "ban": 50, "kick": 50, "redact": 50, "invite": 0});
        let pl =
            room.event("m.room.power_levels", alice, Some(""), levels, vec![create_id.clone(), alice_member.clone()]);
        let pl_id = pl.event_id.clone();
        room.add(pl);
        let rules = room.event(
            "m.room.join_rules",
            alice,
            Some(""),
            json!({"join_rule": "public"}),
            vec![create_id.clone(), pl_id.clone(), alice_member.clone()],
        );
        let rules_id = rules.event_id.clone();
        room.add(rules);
        for i in 0..MEMBERS {
            let user = format!("@u{i}:plexus.test");
            let join = room.event(
                "m.room.member",
                &user,
                Some(&user),
                json!({"membership": "join", "displayname": format!("User {i}")}),
                vec![create_id.clone(), pl_id.clone(), rules_id.clone()],
            );
            room.add(join);
        }
        room
    }

    /// Runs both halves of the auth rules, as the append path does.
    fn check(&self, pdu: &Pdu) {
        let rules = RoomVersionId::V11.rules().expect("v11 is known");
        let fetch_event = |id: &EventId| self.events.get(id).cloned();
        state_res::check_state_independent_auth_rules(&rules.authorization, pdu, fetch_event).expect("allowed");
        let fetch_state = |kind: &StateEventType, key: &str| {
            self.state.get(&(kind.clone(), key.to_owned())).and_then(|id| self.events.get(id).cloned())
        };
        state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch_state).expect("allowed");
    }
}

fn bench(c: &mut Criterion) {
    let mut room = Room::populated();
    let create = room.id(StateEventType::RoomCreate, "").expect("create");
    let pl = room.id(StateEventType::RoomPowerLevels, "").expect("power levels");
    let rules = room.id(StateEventType::RoomJoinRules, "").expect("join rules");
    let sender = "@u50:plexus.test";
    let member = room.id(StateEventType::RoomMember, sender).expect("member");
    let message = room.event(
        "m.room.message",
        sender,
        None,
        json!({"msgtype": "m.text", "body": "hello"}),
        vec![create.clone(), pl.clone(), member],
    );
    let newcomer = "@newcomer:plexus.test";
    let join =
        room.event("m.room.member", newcomer, Some(newcomer), json!({"membership": "join"}), vec![create, pl, rules]);
    c.bench_function("auth check: message in a room of 200", |b| b.iter(|| room.check(std::hint::black_box(&message))));
    c.bench_function("auth check: join of a public room of 200", |b| {
        b.iter(|| room.check(std::hint::black_box(&join)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
