//! Rooms and events built by hand for the contracts. Storage stores what it
//! is given (the room server builds and checks events), so these carry
//! only what storage reads: ids, edges, state and the JSON.

use std::sync::atomic::{AtomicI64, Ordering};

use plexus::storage::{
    Storage,
    rooms::{Appended, CurrentStateWrite, NewEvent, Outlier, StateWrite, StoredState},
};
use ruma::events::room::member::MembershipState;
use serde_json::{Value, json};

/// Event ids and timestamps are unique across every test of a run.
static NEXT: AtomicI64 = AtomicI64::new(1);

pub fn next_event_id() -> String {
    format!("$ev{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An `origin_server_ts` later than every one handed out before.
pub fn next_ts() -> i64 {
    1_700_000_000_000 + NEXT.fetch_add(1, Ordering::Relaxed) * 1000
}

pub fn event_json(
    event_id: &str,
    room_id: &str,
    kind: &str,
    state_key: Option<&str>,
    sender: &str,
    content: &Value,
) -> String {
    let mut json = json!({
        "event_id": event_id,
        "room_id": room_id,
        "type": kind,
        "sender": sender,
        "content": content,
    });
    if let Some(key) = state_key {
        json["state_key"] = json!(key);
    }
    json.to_string()
}

/// A room as the room server would track it: its head and state.
pub struct Room {
    pub room_id: String,
    pub create_id: String,
    /// Forward extremities.
    pub head: Vec<String>,
    pub depth: i64,
    pub group: i64,
    delta_depth: i64,
    pub state: StoredState,
}

impl Room {
    /// Stores a room: its create event (a full state snapshot), then the
    /// creator's join (a delta).
    pub async fn create(store: &dyn Storage, room_id: &str, creator: &str) -> Room {
        let mut room = Room {
            room_id: room_id.to_owned(),
            create_id: String::new(),
            head: vec![],
            depth: 0,
            group: 0,
            delta_depth: 0,
            state: StoredState::new(),
        };
        let create = room.build("m.room.create", Some(""), creator, json!({"creator": creator, "room_version": "10"}));
        room.create_id = create.event_id.clone();
        room.append(store, create).await;
        room.join(store, creator).await;
        room
    }

    /// The next event on the head, not stored.
    pub fn build(&self, kind: &str, state_key: Option<&str>, sender: &str, content: Value) -> NewEvent {
        let event_id = next_event_id();
        let state = match state_key {
            None => StateWrite::Unchanged { group: self.group },
            Some(key) if self.group == 0 => {
                let mut state = self.state.clone();
                state.insert((kind.to_owned(), key.to_owned()), event_id.clone());
                StateWrite::Full { state }
            }
            Some(key) => StateWrite::Delta {
                prev_group: self.group,
                delta_depth: self.delta_depth + 1,
                key: (kind.to_owned(), key.to_owned()),
                event_id: event_id.clone(),
            },
        };
        let membership = match (kind, state_key) {
            ("m.room.member", Some(user)) => {
                Some((user.to_owned(), MembershipState::from(content["membership"].as_str().unwrap_or_default())))
            }
            _ => None,
        };
        NewEvent {
            json: event_json(&event_id, &self.room_id, kind, state_key, sender, &content),
            room_id: self.room_id.clone(),
            kind: kind.to_owned(),
            state_key: state_key.map(str::to_owned),
            sender: sender.to_owned(),
            origin_server_ts: next_ts(),
            depth: self.depth + 1,
            prev_events: self.head.clone(),
            auth_events: if self.create_id.is_empty() { vec![] } else { vec![self.create_id.clone()] },
            state,
            replaces_state: state_key.and_then(|key| self.state.get(&(kind.to_owned(), key.to_owned())).cloned()),
            forward_extremities: vec![event_id.clone()],
            membership,
            txn: None,
            new_room: (kind == "m.room.create").then(|| ("10".to_owned(), sender.to_owned())),
            redaction: None,
            current_state: CurrentStateWrite::ThisEvent,
            send_to: vec![],
            event_id,
        }
    }

    /// Moves the head on past an event that was stored.
    pub fn stored(&mut self, event: &NewEvent, appended: Appended) {
        self.head = vec![event.event_id.clone()];
        self.depth = event.depth;
        if let Some(key) = &event.state_key {
            self.state.insert((event.kind.clone(), key.clone()), event.event_id.clone());
            self.delta_depth = if matches!(event.state, StateWrite::Full { .. }) { 0 } else { self.delta_depth + 1 };
        }
        self.group = appended.state_group;
    }

    /// Appends an event built on the head; returns its position.
    pub async fn append(&mut self, store: &dyn Storage, event: NewEvent) -> i64 {
        let appended = store.append_event(event.clone()).await.expect("append succeeds");
        self.stored(&event, appended);
        appended.stream_ordering
    }

    /// Appends a message; returns `(event_id, position)`.
    pub async fn send(&mut self, store: &dyn Storage, sender: &str, body: &str) -> (String, i64) {
        let event = self.build("m.room.message", None, sender, json!({"msgtype": "m.text", "body": body}));
        let id = event.event_id.clone();
        (id, self.append(store, event).await)
    }

    /// Appends a state event; returns `(event_id, position)`.
    pub async fn set_state(
        &mut self,
        store: &dyn Storage,
        kind: &str,
        key: &str,
        sender: &str,
        content: Value,
    ) -> (String, i64) {
        let event = self.build(kind, Some(key), sender, content);
        let id = event.event_id.clone();
        (id, self.append(store, event).await)
    }

    /// Appends a member event; returns `(event_id, position)`.
    pub async fn member(&mut self, store: &dyn Storage, user: &str, sender: &str, membership: &str) -> (String, i64) {
        self.set_state(store, "m.room.member", user, sender, json!({"membership": membership})).await
    }

    pub async fn join(&mut self, store: &dyn Storage, user: &str) -> (String, i64) {
        self.member(store, user, user, "join").await
    }

    /// An outlier of this room (not stored), authorised by its create event.
    pub fn outlier(&self, kind: &str, state_key: Option<&str>, sender: &str, content: Value) -> Outlier {
        let mut outlier = outlier(&self.room_id, kind, state_key, sender, content);
        outlier.auth_events = vec![self.create_id.clone()];
        outlier
    }
}

/// An event of any room, to store as an outlier.
pub fn outlier(room_id: &str, kind: &str, state_key: Option<&str>, sender: &str, content: Value) -> Outlier {
    let event_id = next_event_id();
    Outlier {
        json: event_json(&event_id, room_id, kind, state_key, sender, &content),
        room_id: room_id.to_owned(),
        kind: kind.to_owned(),
        state_key: state_key.map(str::to_owned),
        sender: sender.to_owned(),
        origin_server_ts: next_ts(),
        depth: 1,
        auth_events: vec![],
        rejected: false,
        event_id,
    }
}

/// The content of a stored event's JSON.
pub fn content_of(json: &str) -> Value {
    let value: Value = serde_json::from_str(json).expect("stored JSON parses");
    value["content"].clone()
}
