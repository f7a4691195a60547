//! Guest access (client-server API, "Guest Access") and the legacy
//! endpoints clients preview rooms with: a room's `initialSync`, the
//! global `initialSync`, the `/events` stream (peeking into world-readable
//! rooms) and `/events/{eventId}`.

mod common;

use common::{PASSWORD, TestServer, TestUser, assert_error, enc, wait_until};
use serde_json::{Value, json};

async fn guest_server() -> TestServer {
    TestServer::start_with(|c| c.registration.allow_guest_access = true).await
}

/// Registers a guest; returns (user id, access token).
async fn register_guest(server: &TestServer) -> (String, String) {
    let (status, body) = server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["device_id"].is_string(), "{body}");
    (body["user_id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
}

/// A room anyone can read, named, with one message from its creator.
async fn world_readable_room(server: &TestServer, owner: &TestUser, name: &str, text: &str) -> String {
    let room = server
        .create_room(
            &owner.access_token,
            json!({
                "preset": "public_chat",
                "name": name,
                "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                                   "content": {"history_visibility": "world_readable"}}],
            }),
        )
        .await;
    let (status, body) = server.send_text(&owner.access_token, &room, text).await;
    assert_eq!(status, 200, "{body}");
    room
}

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("an array of events")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn state_of<'a>(state: &'a Value, kind: &str) -> Option<&'a Value> {
    state.as_array()?.iter().find(|e| e["type"] == kind)
}

#[tokio::test]
async fn guests_register_numbered_and_only_use_the_guest_endpoints() {
    let server = guest_server().await;
    let (first, token) = register_guest(&server).await;
    let (second, _) = register_guest(&server).await;
    let number = |id: &str| -> u64 {
        let local = id.strip_prefix('@').and_then(|s| s.strip_suffix(":plexus.test")).expect("a local user id");
        local.parse().expect("a numeric localpart")
    };
    assert_eq!(number(&second), number(&first) + 1);

    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(whoami["user_id"], first.as_str());
    assert_eq!(whoami["is_guest"], true);

    // What the spec lists works, and what anyone may call without a token.
    let (status, versions) = server.get("/_matrix/client/versions", Some(&token)).await;
    assert_eq!(status, 200, "{versions}");
    let (status, sync) = server.get("/_matrix/client/v3/sync", Some(&token)).await;
    assert_eq!(status, 200, "{sync}");
    assert!(sync["next_batch"].is_string());
    let (status, devices) = server.get("/_matrix/client/v3/devices", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1));
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&first)),
            Some(&token),
            json!({"displayname": "Visitor"}),
        )
        .await;
    assert_eq!(status, 200);

    // Everything else is refused as the spec says.
    let create = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await;
    assert_error(&create, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let search =
        server.post("/_matrix/client/v3/user_directory/search", Some(&token), json!({"search_term": "a"})).await;
    assert_error(&search, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let pusher = server.get("/_matrix/client/v3/pushers", Some(&token)).await;
    assert_error(&pusher, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let global_sync = server.get("/_matrix/client/v3/initialSync", Some(&token)).await;
    assert_error(&global_sync, 403, "M_GUEST_ACCESS_FORBIDDEN");

    // Media: a guest downloads what others posted, and uploads nothing.
    let alice = server.register("alice").await;
    let uploaded = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .header("content-type", "text/plain")
        .body("a file for everyone")
        .send()
        .await
        .unwrap();
    let uri: Value = uploaded.json().await.unwrap();
    let media = uri["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned();
    let download = server
        .http
        .get(server.url(&format!("/_matrix/client/v1/media/download/{media}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.text().await.unwrap(), "a file for everyone");
    let refused = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("a guest's file")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errcode"], "M_GUEST_ACCESS_FORBIDDEN");

    // Numbered user ids are the guests'.
    let (status, body) =
        server.post("/_matrix/client/v3/register", None, json!({"username": "4242", "password": PASSWORD})).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_USERNAME")), "{body}");
}

#[tokio::test]
async fn guest_registration_is_off_unless_configured() {
    let server = TestServer::start().await;
    let refused = server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_error(&refused, 403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn guests_join_only_rooms_that_let_guests_in() {
    let server = guest_server().await;
    let alice = server.register("alice").await;
    let (guest_id, guest) = register_guest(&server).await;

    // `public_chat` sets `guest_access` to `forbidden`.
    let closed = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let refused = server.join(&guest, &closed).await;
    assert_error(&refused, 403, "M_FORBIDDEN");

    let open = server
        .create_room(
            &alice.access_token,
            json!({
                "preset": "public_chat",
                "initial_state": [{"type": "m.room.guest_access", "state_key": "",
                                   "content": {"guest_access": "can_join"}}],
            }),
        )
        .await;
    let (status, body) = server.join(&guest, &open).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.send_text(&guest, &open, "hello from a guest").await;
    assert_eq!(status, 200, "{body}");
    let (status, page) = server.messages(&alice.access_token, &open, "dir=b&limit=5").await;
    assert_eq!(status, 200);
    assert_eq!(bodies(&page["chunk"]), ["hello from a guest"]);

    // A guest may not change the room's state.
    let state = server.put_state(&guest, &open, "m.room.topic", "", json!({"topic": "guests rule"})).await;
    assert_error(&state, 403, "M_GUEST_ACCESS_FORBIDDEN");

    // Spec: once guests may no longer join, the guests in the room leave.
    let (status, _) = server
        .put_state(&alice.access_token, &open, "m.room.guest_access", "", json!({"guest_access": "forbidden"}))
        .await;
    assert_eq!(status, 200);
    let (status, member) = server.get_state(&alice.access_token, &open, "m.room.member", &guest_id).await;
    assert_eq!(status, 200);
    assert_eq!(member["membership"], "leave");
    let refused = server.send_text(&guest, &open, "still here?").await;
    assert_eq!(refused.0, 403, "{:?}", refused.1);
}

#[tokio::test]
async fn a_guest_upgrades_to_a_full_account_keeping_its_user_id() {
    let server = guest_server().await;
    let (guest_id, guest_token) = register_guest(&server).await;
    let localpart = guest_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    let body = json!({"username": localpart, "password": PASSWORD, "guest_access_token": guest_token});
    let (status, uia) = server.post("/_matrix/client/v3/register", None, body.clone()).await;
    assert_eq!(status, 401, "{uia}");
    let mut body = body;
    body["auth"] = json!({"type": "m.login.dummy", "session": uia["session"]});
    let (status, upgraded) = server.post("/_matrix/client/v3/register", None, body).await;
    assert_eq!(status, 200, "{upgraded}");
    assert_eq!(upgraded["user_id"], guest_id.as_str());

    let new_token = upgraded["access_token"].as_str().unwrap();
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(new_token)).await;
    assert_eq!(whoami["user_id"], guest_id.as_str());
    // `is_guest` is left out when false.
    assert_ne!(whoami["is_guest"], true, "{whoami}");
    // The guest's own token now opens a full session too.
    let room = server.create_room(&guest_token, json!({})).await;
    assert!(room.starts_with('!'));
    let (status, _) = server.login(&guest_id, PASSWORD).await;
    assert_eq!(status, 200);

    // Only a guest's token upgrades.
    let (_, again) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": localpart, "password": PASSWORD, "guest_access_token": guest_token,
                   "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(again["errcode"], "M_FORBIDDEN", "{again}");
}

#[tokio::test]
async fn room_initial_sync_serves_members_and_world_readable_rooms_only() {
    let server = guest_server().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = world_readable_room(&server, &alice, "Reading Room", "hello readers").await;
    let path = format!("/_matrix/client/v3/rooms/{}/initialSync?limit=5", enc(&room));

    let (status, mine) = server.get(&path, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["room_id"], room.as_str());
    assert_eq!(mine["membership"], "join");
    assert_eq!(bodies(&mine["messages"]["chunk"]), ["hello readers"]);
    assert!(mine["messages"]["chunk"].as_array().unwrap().len() <= 5);
    assert_eq!(state_of(&mine["state"], "m.room.name").unwrap()["content"]["name"], "Reading Room");
    assert!(mine["messages"]["start"].is_string() && mine["messages"]["end"].is_string());
    assert_eq!(mine["visibility"], "private");
    let presence = mine["presence"].as_array().unwrap();
    assert!(presence.iter().any(|p| p["content"]["user_id"] == alice.user_id.as_str()), "{presence:?}");

    // Bob is not in the room, and may read it all the same.
    let (status, peek) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{peek}");
    assert!(peek.get("membership").is_none(), "{peek}");
    assert_eq!(bodies(&peek["messages"]["chunk"]), ["hello readers"]);
    assert_eq!(state_of(&peek["state"], "m.room.name").unwrap()["content"]["name"], "Reading Room");
    // So may a guest.
    let (_, guest) = register_guest(&server).await;
    let (status, as_guest) = server.get(&path, Some(&guest)).await;
    assert_eq!(status, 200);
    assert_eq!(bodies(&as_guest["messages"]["chunk"]), ["hello readers"]);

    // A room whose history is for its members: a stranger gets 403.
    let private = server.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Members"})).await;
    server.send_text(&alice.access_token, &private, "members only").await;
    let refused =
        server.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&private)), Some(&bob.access_token)).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn global_initial_sync_lists_the_rooms_with_their_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let first = server.create_room(&alice.access_token, json!({"name": "First"})).await;
    let second = server.create_room(&alice.access_token, json!({"name": "Second"})).await;
    server.send_text(&alice.access_token, &first, "one").await;
    server.send_text(&alice.access_token, &second, "two").await;

    let (status, body) = server.get("/_matrix/client/v3/initialSync?limit=10", Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["end"].as_str().is_some_and(|t| t.starts_with('s')));
    let rooms = body["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2);
    for (room, text, name) in [(&first, "one", "First"), (&second, "two", "Second")] {
        let entry = rooms.iter().find(|r| r["room_id"] == room.as_str()).expect("the room is listed");
        assert_eq!(entry["membership"], "join");
        assert_eq!(bodies(&entry["messages"]["chunk"]), [text]);
        assert_eq!(state_of(&entry["state"], "m.room.name").unwrap()["content"]["name"], name);
    }
    // Only what the client stored, as Synapse's: push rules are /sync's.
    let account_data = body["account_data"].as_array().unwrap();
    assert!(!account_data.iter().any(|e| e["type"] == "m.push_rules"), "{account_data:?}");
    // The user's own presence is there, and legacy events name their
    // sender as `user_id` too.
    let presence = body["presence"].as_array().unwrap();
    assert!(presence.iter().any(|p| p["content"]["user_id"] == alice.user_id.as_str()), "{presence:?}");
    let entry = &rooms[0];
    assert_eq!(entry["messages"]["chunk"][0]["user_id"], alice.user_id.as_str());
    assert!(entry["state"].as_array().unwrap().iter().all(|e| e["user_id"] == e["sender"]));

    // `limit=0`: no messages.
    let (_, none) = server.get("/_matrix/client/v3/initialSync?limit=0", Some(&alice.access_token)).await;
    assert!(none["rooms"].as_array().unwrap().iter().all(|r| r["messages"]["chunk"] == json!([])), "{none}");
}

#[tokio::test]
async fn events_long_polls_for_a_message_sent_after_it_started() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let (_, initial) = server.get("/_matrix/client/v3/initialSync", Some(&bob.access_token)).await;
    let from = initial["end"].as_str().unwrap().to_owned();

    let url = format!("/_matrix/client/v3/events?from={from}&timeout=30000");
    let poll = {
        let (http, url, token) = (server.http.clone(), server.url(&url), bob.access_token.clone());
        tokio::spawn(async move { common::json_request(&http, reqwest::Method::GET, &url, Some(&token), None).await })
    };
    let notifier = server.services().notifier.clone();
    let bob_id = ruma::UserId::parse(&bob.user_id).unwrap();
    wait_until("bob's /events to wait", || {
        let waiting = notifier.is_waiting(&bob_id);
        async move { waiting }
    })
    .await;
    server.send_text(&alice.access_token, &room, "live news").await;
    let (status, page) = tokio::time::timeout(std::time::Duration::from_secs(20), poll).await.unwrap().unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page["chunk"]), ["live news"]);
    assert_eq!(page["chunk"][0]["room_id"], room.as_str());
    assert_eq!(page["start"], from.as_str());

    // From its end there is nothing new.
    let end = page["end"].as_str().unwrap();
    let (status, next) =
        server.get(&format!("/_matrix/client/v3/events?from={end}&timeout=0"), Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(next["chunk"].as_array().map(Vec::len).unwrap_or(0), 0, "{next}");
    assert_eq!(next["end"], end);

    // The event on its own.
    let event_id = page["chunk"][0]["event_id"].as_str().unwrap();
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/events/{}", enc(event_id)), Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "live news");

    // Account data (global and the room's), tags and receipts come down
    // the stream too, after the room events, as Synapse sends them.
    let token = Some(bob.access_token.as_str());
    let data = format!("/_matrix/client/v3/user/{}/account_data/my.test.type", enc(&bob.user_id));
    assert_eq!(server.put(&data, token, json!({"cats_or_rats": "cats"})).await.0, 200);
    let room_data =
        format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/my.test.type", enc(&bob.user_id), enc(&room));
    assert_eq!(server.put(&room_data, token, json!({"cats_or_rats": "rats"})).await.0, 200);
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(event_id));
    assert_eq!(server.post(&receipt, token, json!({})).await.0, 200);
    let (status, other) = server.get(&format!("/_matrix/client/v3/events?from={end}&timeout=0"), token).await;
    assert_eq!(status, 200, "{other}");
    let chunk = other["chunk"].as_array().unwrap();
    let of_type = |kind: &str| chunk.iter().filter(|e| e["type"] == kind).cloned().collect::<Vec<Value>>();
    let data_events = of_type("my.test.type");
    assert!(
        data_events.iter().any(|e| e["content"]["cats_or_rats"] == "cats" && e.get("room_id").is_none()),
        "{other}"
    );
    assert!(
        data_events.iter().any(|e| e["content"]["cats_or_rats"] == "rats" && e["room_id"] == room.as_str()),
        "{other}"
    );
    let receipts = of_type("m.receipt");
    assert!(
        receipts
            .iter()
            .any(|e| e["room_id"] == room.as_str() && e["content"][event_id]["m.read"][&bob.user_id].is_object()),
        "{other}"
    );
    let after = other["end"].as_str().unwrap();
    let (_, quiet) = server.get(&format!("/_matrix/client/v3/events?from={after}&timeout=0"), token).await;
    assert_eq!(quiet["chunk"].as_array().map(Vec::len).unwrap_or(0), 0, "nothing twice: {quiet}");
}

#[tokio::test]
async fn peeking_into_a_world_readable_room_through_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = world_readable_room(&server, &alice, "Open Room", "before").await;
    let (_, snapshot) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)), Some(&bob.access_token)).await;
    let from = snapshot["messages"]["end"].as_str().unwrap().to_owned();

    let url = format!("/_matrix/client/v3/events?room_id={}&from={from}&timeout=30000", enc(&room));
    let poll = {
        let (http, url, token) = (server.http.clone(), server.url(&url), bob.access_token.clone());
        tokio::spawn(async move { common::json_request(&http, reqwest::Method::GET, &url, Some(&token), None).await })
    };
    let notifier = server.services().notifier.clone();
    let room_id = ruma::RoomId::parse(&room).unwrap();
    wait_until("bob's peek to wait", || {
        let waiting = notifier.is_room_waiting(&room_id);
        async move { waiting }
    })
    .await;
    server.send_text(&alice.access_token, &room, "seen by a peeker").await;
    let (status, page) = tokio::time::timeout(std::time::Duration::from_secs(20), poll).await.unwrap().unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page["chunk"]), ["seen by a peeker"]);

    // A room that is not world-readable cannot be peeked into, nor its
    // events read one by one.
    let private = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let (_, sent) = server.send_text(&alice.access_token, &private, "secret").await;
    let refused = server
        .get(&format!("/_matrix/client/v3/events?room_id={}&timeout=0", enc(&private)), Some(&bob.access_token))
        .await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    let event_id = sent["event_id"].as_str().unwrap();
    let hidden = server.get(&format!("/_matrix/client/v3/events/{}", enc(event_id)), Some(&bob.access_token)).await;
    assert_error(&hidden, 404, "M_NOT_FOUND");
}
