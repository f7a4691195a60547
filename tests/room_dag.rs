//! The event DAG underneath: concurrency keeps one forward extremity, edges
//! and depths are consistent, every event verifies with ruma, state groups
//! are deltas, and pagination is exact.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{TestServer, TestUser, enc};
use plexus::{
    ruma::{
        CanonicalJsonObject, RoomVersionId,
        serde::Base64,
        signatures::{Verified, verify_event},
    },
    storage::rooms::Direction,
};
use serde_json::{Value, json};

/// Every stored event of a room, oldest first, as `(event_id, JSON)`.
async fn all_events(server: &TestServer, room: &str) -> Vec<(String, Value)> {
    let events = server.services().db.room_events(room.to_owned(), 0, None, Direction::Forward, 100_000).await.unwrap();
    events.into_iter().map(|e| (e.event_id, serde_json::from_str(&e.json).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_keep_one_consistent_dag() {
    let server = TestServer::start().await;
    let mut users: Vec<TestUser> = Vec::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        users.push(server.register(name).await);
    }
    let room = server.create_room(&users[0].access_token, json!({"preset": "public_chat", "room_version": "12"})).await;
    for u in &users[1..] {
        assert_eq!(server.join(&u.access_token, &room).await.0, 200);
    }

    // Every message is sent twice under its transaction id (a client
    // retrying), and topic changes are interleaved: a send that is not
    // stored forces the messages queued behind it to be built again.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        for n in 0..40 {
            for _copy in 0..2 {
                let http = server.http.clone();
                let url = server.url(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/c{n}", enc(&room)));
                let token = user.access_token.clone();
                tasks.spawn(async move {
                    let resp = http
                        .put(url)
                        .bearer_auth(token)
                        .json(&json!({"msgtype": "m.text", "body": format!("user {i} message {n}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                    let body: Value = resp.json().await.unwrap();
                    (format!("{i}/{n}"), body["event_id"].as_str().unwrap().to_owned())
                });
            }
        }
    }
    let topics = {
        let http = server.http.clone();
        let url = server.url(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room)));
        let token = users[0].access_token.clone();
        tokio::spawn(async move {
            for t in 0..10 {
                let resp = http.put(&url).bearer_auth(&token).json(&json!({"topic": format!("t{t}")})).send().await;
                assert_eq!(resp.unwrap().status().as_u16(), 200);
            }
        })
    };
    let mut sent: HashMap<String, String> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (key, event_id) = r.unwrap();
        if let Some(first) = sent.insert(key.clone(), event_id.clone()) {
            assert_eq!(first, event_id, "both sends of {key} answer with the same event");
        }
    }
    topics.await.unwrap();
    assert_eq!(sent.len(), 200);

    let head = server.services().db.room_head(room.clone()).await.unwrap().unwrap();
    assert_eq!(head.forward_extremities.len(), 1, "one forward extremity after 200 concurrent sends");

    let events = all_events(&server, &room).await;
    let messages = events.iter().filter(|(_, e)| e["type"] == "m.room.message").count();
    assert_eq!(messages, 200, "each message is stored once");
    let stored: std::collections::HashSet<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    assert!(sent.values().all(|id| stored.contains(id.as_str())), "every answered event id is stored");
    assert_eq!(events.iter().filter(|(_, e)| e["type"] == "m.room.topic").count(), 10);
    let depth: HashMap<&str, u64> = events.iter().map(|(id, e)| (id.as_str(), e["depth"].as_u64().unwrap())).collect();
    for (id, event) in &events {
        for prev in event["prev_events"].as_array().unwrap() {
            let prev = prev.as_str().unwrap();
            let prev_depth = depth.get(prev).unwrap_or_else(|| panic!("prev event {prev} of {id} exists"));
            assert!(*prev_depth < depth[id.as_str()], "depth increases along edges");
        }
        for auth in event["auth_events"].as_array().unwrap() {
            assert!(depth.contains_key(auth.as_str().unwrap()), "auth event exists");
        }
    }
    assert_eq!(head.forward_extremities[0], events.last().unwrap().0, "the newest event is the extremity");

    // Every stored event's content hash and signature verify with ruma.
    let key = &server.services().server_key;
    let keys = BTreeMap::from([(
        "plexus.test".to_owned(),
        BTreeMap::from([(key.key_id(), Base64::parse(key.public_key_base64()).unwrap())]),
    )]);
    let rules = RoomVersionId::V12.rules().unwrap();
    for (id, event) in &events {
        let obj: CanonicalJsonObject = serde_json::from_value(event.clone()).unwrap();
        let verified = verify_event(&keys, &obj, &rules).unwrap_or_else(|e| panic!("{id} verifies: {e}"));
        assert_eq!(verified, Verified::All, "{id}");
        let reference = plexus::ruma::signatures::reference_hash(&obj, &rules).unwrap();
        assert_eq!(format!("${reference}"), *id, "the event id is the reference hash");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_at_an_old_event_is_the_state_then() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let a = alice.access_token.as_str();
    let room = server.create_room(a, json!({"name": "First name"})).await;
    let (_, early) = server.send_text(a, &room, "early").await;
    let early = early["event_id"].as_str().unwrap().to_owned();
    server.put_state(a, &room, "m.room.name", "", json!({"name": "Second name"})).await;
    server.send_text(a, &room, "late").await;

    let (_, ctx) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/context/{}?limit=0", enc(&room), enc(&early)), Some(a)).await;
    let name = ctx["state"].as_array().unwrap().iter().find(|e| e["type"] == "m.room.name").unwrap();
    assert_eq!(name["content"]["name"], "First name", "state at the old event");
    let (_, now) = server.get_state(a, &room, "m.room.name", "").await;
    assert_eq!(now["name"], "Second name", "current state");
    // The name change carries what it replaced.
    let (_, page) = server.messages(a, &room, "dir=b&limit=2").await;
    let change = &page["chunk"][1];
    assert_eq!(change["type"], "m.room.name");
    assert_eq!(change["unsigned"]["prev_content"]["name"], "First name");
    // So does it in sync, while the event is still in the server's cache.
    let (_, sync) = server.get("/_matrix/client/v3/sync?timeout=0", Some(a)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let change = timeline.iter().find(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Second name");
    assert_eq!(change.unwrap()["unsigned"]["prev_content"]["name"], "First name", "{sync}");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_are_stored_as_deltas() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let a = alice.access_token.as_str();
    let room = server.create_room(a, json!({})).await;
    // Give the room some size: 30 distinct state keys.
    for i in 0..30 {
        server.put_state(a, &room, "org.example.setting", &format!("k{i}"), json!({"v": i})).await;
    }
    let (groups_before, entries_before) = server.services().db.state_storage_counts(room.clone()).await.unwrap();
    for i in 0..1000 {
        let (status, _) = server.put_state(a, &room, "m.room.topic", "", json!({"topic": format!("topic {i}")})).await;
        assert_eq!(status, 200);
    }
    let (groups, entries) = server.services().db.state_storage_counts(room.clone()).await.unwrap();
    let state_size = 30 + 8;
    assert_eq!(groups - groups_before, 1000, "one state group per state change");
    let new_entries = entries - entries_before;
    assert!(
        new_entries < 1000 + 20 * state_size,
        "1,000 state changes stored {new_entries} state rows, not 1,000 copies of {state_size}"
    );
    let (_, topic) = server.get_state(a, &room, "m.room.topic", "").await;
    assert_eq!(topic["topic"], "topic 999");
    let (_, setting) = server.get_state(a, &room, "org.example.setting", "k7").await;
    assert_eq!(setting["v"], 7, "older state survives the delta chain");
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_returns_every_event_once_in_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let a = alice.access_token.as_str();
    let room = server.create_room(a, json!({})).await;
    for i in 0..500 {
        assert_eq!(server.send_text(a, &room, &format!("{i}")).await.0, 200);
    }
    let filter = enc(r#"{"types":["m.room.message"]}"#);

    let mut backwards = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(t) => format!("dir=b&limit=37&filter={filter}&from={t}"),
            None => format!("dir=b&limit=37&filter={filter}"),
        };
        let (status, page) = server.messages(a, &room, &query).await;
        assert_eq!(status, 200);
        let chunk = page["chunk"].as_array().unwrap();
        assert!(chunk.len() <= 37);
        backwards.extend(chunk.iter().map(|e| e["content"]["body"].as_str().unwrap().parse::<u32>().unwrap()));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    let expected_back: Vec<u32> = (0..500).rev().collect();
    assert_eq!(backwards, expected_back);

    let mut forwards = Vec::new();
    let mut from = "s0".to_owned();
    loop {
        let (_, page) = server.messages(a, &room, &format!("dir=f&limit=37&filter={filter}&from={from}")).await;
        let chunk = page["chunk"].as_array().unwrap();
        forwards.extend(chunk.iter().map(|e| e["content"]["body"].as_str().unwrap().parse::<u32>().unwrap()));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = end.to_owned(),
            _ => break,
        }
    }
    assert_eq!(forwards, (0..500).collect::<Vec<u32>>());
    let unique: HashSet<u32> = forwards.iter().copied().collect();
    assert_eq!(unique.len(), 500);
}
