//! Simplified sliding sync (MSC4186): matrix-sdk-ui's `RoomListService`
//! and `EncryptionSyncService`, as Element X runs them, see rooms in
//! activity order with names and latest events, invites, and decrypt
//! messages whose keys came through the to-device and e2ee extensions;
//! they resume from a stored `pos` and recover from an unknown one. Plain
//! HTTP tests pin the protocol: `M_UNKNOWN_POS`, list ranges and counts,
//! ordering, `required_state` filtering (`*`, `$LAZY`, `$ME`), the
//! extensions, and responses that carry only what changed.

#![recursion_limit = "256"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{TestServer, TestUser, free_port, wait_until};
use futures_util::{StreamExt, pin_mut};
use matrix_sdk::{
    Client, RoomState,
    config::SyncSettings,
    ruma::{
        OwnedRoomId,
        api::{client::room::create_room, error::ErrorKind},
        events::{
            InitialStateEvent, room::encryption::RoomEncryptionEventContent, room::message::RoomMessageEventContent,
        },
    },
    sliding_sync::VersionBuilder,
};
use matrix_sdk_ui::{
    RoomListService,
    encryption_sync_service::{EncryptionSyncPermit, EncryptionSyncService},
    eyeball_im::Vector,
    room_list_service::{self, RoomListItem, filters},
};
use serde_json::{Value, json};

const SLIDING_SYNC: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// One sliding sync request; returns status and body.
async fn sliding(server: &TestServer, user: &TestUser, pos: Option<&str>, body: Value) -> (u16, Value) {
    let mut path = format!("{SLIDING_SYNC}?timeout=0");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={}", common::enc(pos)));
    }
    server.post(&path, Some(&user.access_token), body).await
}

/// One sliding sync request that must succeed; returns the body.
async fn sliding_ok(server: &TestServer, user: &TestUser, pos: Option<&str>, body: Value) -> Value {
    let (status, response) = sliding(server, user, pos, body).await;
    assert_eq!(status, 200, "{response}");
    response
}

fn pos(response: &Value) -> String {
    response["pos"].as_str().expect("a response has a pos").to_owned()
}

/// Message bodies of a room's timeline in a response.
fn bodies(response: &Value, room: &str) -> Vec<String> {
    response["rooms"][room]["timeline"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `(type, state_key)` of a room's `required_state` in a response, sorted.
fn state_keys(response: &Value, room: &str) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = response["rooms"][room]["required_state"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// A list `all` over `range` with the given room config.
fn list_request(range: (u32, u32), timeline_limit: u32, required_state: Value) -> Value {
    json!({
        "conn_id": "test",
        "lists": {"all": {"ranges": [[range.0, range.1]], "timeline_limit": timeline_limit, "required_state": required_state}},
    })
}

/// Sends a message, then waits until the clock has moved past its
/// timestamp, so the next message is later (clients order rooms by their
/// latest event's timestamp, and two sends may fall in one millisecond).
async fn send_in_turn(server: &TestServer, user: &TestUser, room: &str, text: &str) {
    let (status, sent) = server.send_text(&user.access_token, room, text).await;
    assert_eq!(status, 200, "{sent}");
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        common::enc(room),
        common::enc(sent["event_id"].as_str().unwrap())
    );
    let ts = server.get(&path, Some(&user.access_token)).await.1["origin_server_ts"].as_u64().expect("a timestamp");
    wait_until("the clock to move past the message", || async move {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 > ts
    })
    .await;
}

async fn named_room(server: &TestServer, user: &TestUser, name: &str) -> String {
    server.create_room(&user.access_token, json!({"name": name})).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_pos_is_m_unknown_pos() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let body = list_request((0, 9), 1, json!([]));
    let (status, error) = sliding(&server, &alice, Some("not-a-pos"), body.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (400, Some("M_UNKNOWN_POS")), "{error}");

    // The previous pos stays valid (a retry after a lost response); the one
    // before it goes once a newer one is used.
    let first = pos(&sliding_ok(&server, &alice, None, body.clone()).await);
    let second = pos(&sliding_ok(&server, &alice, Some(&first), body.clone()).await);
    sliding_ok(&server, &alice, Some(&first), body.clone()).await;
    let third = pos(&sliding_ok(&server, &alice, Some(&first), body.clone()).await);
    sliding_ok(&server, &alice, Some(&third), body.clone()).await;
    let (status, error) = sliding(&server, &alice, Some(&second), body.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (400, Some("M_UNKNOWN_POS")));
    let (status, _) = sliding(&server, &alice, Some(&first), body).await;
    assert_eq!(status, 400, "a pos older than the one used last is gone");

    // A pos is the connection's own.
    let other = json!({"conn_id": "other"});
    let (status, _) = sliding(&server, &alice, Some(&third), other).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_select_their_range_in_activity_order_and_count_all() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut rooms = Vec::new();
    for name in ["r0", "r1", "r2", "r3", "r4"] {
        rooms.push(named_room(&server, &alice, name).await);
    }
    // Activity, oldest first: r4 r0 r2 (r1 and r3 only have their creation).
    for room in [&rooms[4], &rooms[0], &rooms[2]] {
        server.send_text(&alice.access_token, room, "hello").await;
    }
    let body = list_request((0, 2), 1, json!([["m.room.name", ""]]));
    let first = sliding_ok(&server, &alice, None, body.clone()).await;
    assert_eq!(first["lists"]["all"]["count"], 5);
    let returned: Vec<&str> = first["rooms"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![rooms[2].as_str(), rooms[0].as_str(), rooms[4].as_str()];
    expected.sort();
    let mut returned_sorted = returned.clone();
    returned_sorted.sort();
    assert_eq!(returned_sorted, expected, "the three most recently active rooms");
    let stamp = |room: &str| first["rooms"][room]["bump_stamp"].as_u64().expect("bump_stamp");
    assert!(stamp(&rooms[2]) > stamp(&rooms[0]) && stamp(&rooms[0]) > stamp(&rooms[4]));
    assert_eq!(first["rooms"][&rooms[2]]["name"], "r2");
    assert_eq!(first["rooms"][&rooms[2]]["initial"], true);
    assert_eq!(bodies(&first, &rooms[2]), ["hello"]);

    // A message in r1 moves it into the range: it comes afresh.
    server.send_text(&alice.access_token, &rooms[1], "bump").await;
    let second = sliding_ok(&server, &alice, Some(&pos(&first)), body.clone()).await;
    assert_eq!(second["lists"]["all"]["count"], 5);
    assert_eq!(second["rooms"].as_object().unwrap().len(), 1, "{second}");
    assert_eq!(second["rooms"][&rooms[1]]["initial"], true);
    assert!(second["rooms"][&rooms[1]]["bump_stamp"].as_u64().unwrap() > stamp(&rooms[2]));

    // A growing range sends just the rooms not sent yet.
    let grown = list_request((0, 4), 1, json!([["m.room.name", ""]]));
    let third = sliding_ok(&server, &alice, Some(&pos(&second)), grown).await;
    let more: Vec<&str> = third["rooms"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(more, [rooms[3].as_str()], "r4 left the range but was sent already, with nothing new since");

    // Filters count what passes them.
    let invites_only =
        json!({"lists": {"invites": {"ranges": [[0, 9]], "timeline_limit": 1, "filters": {"is_invite": true}}}});
    let filtered = sliding_ok(&server, &alice, None, invites_only).await;
    assert_eq!(filtered["lists"]["invites"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kicked_rooms_stay_listed_and_rooms_left_only_where_sent() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let stays = named_room(&server, &alice, "stays").await;
    let left = named_room(&server, &alice, "left").await;
    let kicked = server.create_room(&bob.access_token, json!({"name": "kicked", "invite": [alice.user_id]})).await;
    server.join(&alice.access_token, &kicked).await;
    let body = list_request((0, 9), 1, json!([["m.room.member", "$ME"]]));
    let first = sliding_ok(&server, &alice, None, body.clone()).await;
    assert_eq!(first["lists"]["all"]["count"], 3);

    server.room_post(&alice.access_token, &left, "leave", json!({})).await;
    server.room_post(&bob.access_token, &kicked, "kick", json!({"user_id": alice.user_id})).await;
    // This connection had both rooms: it gets the leave and the kick.
    let second = sliding_ok(&server, &alice, Some(&pos(&first)), body.clone()).await;
    assert_eq!(second["lists"]["all"]["count"], 3);
    for room in [&left, &kicked] {
        let me = &second["rooms"][room]["required_state"][0];
        assert_eq!(
            (me["state_key"].as_str(), me["content"]["membership"].as_str()),
            (Some(alice.user_id.as_str()), Some("leave")),
            "{second}"
        );
    }
    // A new connection lists the kick, not the room alice left herself.
    let fresh = sliding_ok(&server, &alice, None, body).await;
    assert_eq!(fresh["lists"]["all"]["count"], 2);
    let mut rooms: Vec<&str> = fresh["rooms"].as_object().unwrap().keys().map(String::as_str).collect();
    rooms.sort();
    let mut expected = vec![stays.as_str(), kicked.as_str()];
    expected.sort();
    assert_eq!(rooms, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_response_carries_only_what_changed() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let quiet = named_room(&server, &alice, "quiet").await;
    let busy = named_room(&server, &alice, "busy").await;
    server.send_text(&alice.access_token, &busy, "one").await;
    let body = list_request((0, 9), 5, json!([["m.room.name", ""], ["m.room.topic", ""]]));
    let first = sliding_ok(&server, &alice, None, body.clone()).await;
    assert_eq!(first["rooms"].as_object().unwrap().len(), 2);
    assert_eq!(state_keys(&first, &busy), [("m.room.name".to_owned(), String::new())]);

    server.send_text(&alice.access_token, &busy, "two").await;
    let second = sliding_ok(&server, &alice, Some(&pos(&first)), body.clone()).await;
    let rooms: Vec<&String> = second["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(rooms, [&busy], "the quiet room is not sent again");
    let room = &second["rooms"][&busy];
    assert_eq!(bodies(&second, &busy), ["two"]);
    assert!(room.get("initial").is_none() && room.get("name").is_none(), "{room}");
    assert!(room.get("required_state").is_none(), "no state changed: {room}");
    assert_eq!(room["num_live"], 1);

    // A state change is sent as state, once.
    server.put_state(&alice.access_token, &busy, "m.room.topic", "", json!({"topic": "news"})).await;
    let third = sliding_ok(&server, &alice, Some(&pos(&second)), body.clone()).await;
    assert_eq!(state_keys(&third, &busy), [("m.room.topic".to_owned(), String::new())]);
    let fourth = sliding_ok(&server, &alice, Some(&pos(&third)), body.clone()).await;
    assert!(fourth.get("rooms").is_none(), "{fourth}");
    assert_eq!(fourth["lists"]["all"]["count"], 2);
    let _ = quiet;
}

#[tokio::test(flavor = "multi_thread")]
async fn required_state_wildcards_me_and_lazy_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room =
        server.create_room(&alice.access_token, json!({"name": "club", "preset": "public_chat", "topic": "t"})).await;
    for (kind, key) in [("m.space.child", "!a:plexus.test"), ("m.space.child", "!b:plexus.test")] {
        server.put_state(&alice.access_token, &room, kind, key, json!({"via": ["plexus.test"]})).await;
    }
    server.join(&bob.access_token, &room).await;
    server.join(&carol.access_token, &room).await;
    server.send_text(&bob.access_token, &room, "bob speaks").await;

    // `*` as the key: every m.space.child; `*` as the type: every type with that key.
    let wildcards = list_request((0, 0), 1, json!([["m.space.child", "*"], ["*", ""]]));
    let response = sliding_ok(&server, &alice, None, wildcards).await;
    let keys = state_keys(&response, &room);
    for (kind, key) in [
        ("m.space.child", "!a:plexus.test"),
        ("m.space.child", "!b:plexus.test"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.create", ""),
    ] {
        assert!(keys.contains(&(kind.to_owned(), key.to_owned())), "{kind} {key} in {keys:?}");
    }
    assert!(!keys.iter().any(|(kind, _)| kind == "m.room.member"), "members have non-empty keys: {keys:?}");

    // `$LAZY`: only the timeline's senders, and `$ME`.
    let lazy = list_request((0, 0), 1, json!([["m.room.member", "$LAZY"], ["m.room.member", "$ME"]]));
    let response = sliding_ok(&server, &alice, None, lazy).await;
    assert_eq!(bodies(&response, &room), ["bob speaks"]);
    let members: Vec<String> = state_keys(&response, &room).into_iter().map(|(_, key)| key).collect();
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    expected.sort();
    assert_eq!(members, expected, "carol sent nothing in the timeline");
    let bob_member = response["rooms"][&room]["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == bob.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(bob_member["content"]["membership"], "join");
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions_carry_to_device_messages_and_receipts() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let (_, sent) = server.send_text(&alice.access_token, &room, "read me").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();

    let body = json!({
        "conn_id": "encryption",
        "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}},
        "extensions": {"to_device": {"enabled": true}, "e2ee": {"enabled": true}, "receipts": {"enabled": true}},
    });
    let first = sliding_ok(&server, &alice, None, body.clone()).await;
    let since = first["extensions"]["to_device"]["next_batch"].as_str().expect("next_batch").to_owned();
    assert!(first["extensions"]["e2ee"]["device_one_time_keys_count"]["signed_curve25519"].is_number());

    let message = json!({"messages": {&alice.user_id: {&alice.device_id: {"hello": "alice"}}}});
    let (status, _) = server.put("/_matrix/client/v3/sendToDevice/m.test/txn1", Some(&bob.access_token), message).await;
    assert_eq!(status, 200);
    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", common::enc(&room), common::enc(&event_id));
    let (status, _) = server.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, 200);

    let mut with_since = body.clone();
    with_since["extensions"]["to_device"]["since"] = json!(since);
    let second = sliding_ok(&server, &alice, Some(&pos(&first)), with_since.clone()).await;
    let to_device = &second["extensions"]["to_device"];
    assert_eq!(to_device["events"][0]["content"]["hello"], "alice", "{second}");
    assert_eq!(to_device["events"][0]["sender"], bob.user_id.as_str());
    let receipt = &second["extensions"]["receipts"]["rooms"][&room];
    assert_eq!(receipt["type"], "m.receipt");
    assert!(receipt["content"][&event_id]["m.read"][&bob.user_id]["ts"].is_number(), "{receipt}");

    // Acknowledged by the next `since`: not sent again.
    let mut next = with_since;
    next["extensions"]["to_device"]["since"] = to_device["next_batch"].clone();
    let third = sliding_ok(&server, &alice, Some(&pos(&second)), next).await;
    assert!(third["extensions"]["to_device"].get("events").is_none(), "{third}");
    assert!(third["extensions"].get("receipts").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_request_wakes_for_a_new_message() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = named_room(&server, &alice, "r").await;
    let body = list_request((0, 9), 1, json!([]));
    let first = sliding_ok(&server, &alice, None, body.clone()).await;
    let http = server.http.clone();
    let url = server.url(&format!("{SLIDING_SYNC}?timeout=30000&pos={}", common::enc(&pos(&first))));
    let token = alice.access_token.clone();
    let waiting = tokio::spawn(async move {
        http.post(url).bearer_auth(token).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
    });
    let alice_id: OwnedRoomId = room.as_str().try_into().unwrap();
    let user: matrix_sdk::ruma::OwnedUserId = alice.user_id.as_str().try_into().unwrap();
    let notifier = server.services().notifier.clone();
    wait_until("the request to wait", || {
        let waiting = notifier.is_waiting(&user);
        async move { waiting }
    })
    .await;
    server.send_text(&alice.access_token, &room, "wake up").await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("returns promptly").unwrap();
    assert_eq!(bodies(&woken, alice_id.as_str()), ["wake up"]);
}

/// Element X's sync: matrix-sdk-ui's room list and encryption sync loops,
/// restarted after an error as its `SyncService` does, and the room list
/// as the app shows it (non-left rooms, sorted).
struct App {
    room_list: Arc<RoomListService>,
    rooms: Arc<Mutex<Vector<RoomListItem>>>,
    unknown_pos_seen: Arc<Mutex<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    async fn start(client: &Client) -> Self {
        let room_list = Arc::new(RoomListService::new(client.clone()).await.expect("room list service"));
        let encryption = Arc::new(EncryptionSyncService::new(client.clone(), None).await.expect("encryption sync"));
        let unknown_pos_seen = Arc::new(Mutex::new(false));
        let rooms = Arc::new(Mutex::new(Vector::new()));
        let mut tasks = Vec::new();
        {
            let (room_list, seen) = (room_list.clone(), unknown_pos_seen.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let sync = room_list.sync();
                    pin_mut!(sync);
                    while let Some(result) = sync.next().await {
                        if let Err(room_list_service::Error::SlidingSync(error)) = &result
                            && error.client_api_error_kind() == Some(&ErrorKind::UnknownPos)
                        {
                            *seen.lock().unwrap() = true;
                        }
                        if result.is_err() {
                            break;
                        }
                    }
                    // Back off before the next attempt, as an app does.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        {
            let permit = Arc::new(tokio::sync::Mutex::new(EncryptionSyncPermit::new_for_testing()));
            tasks.push(tokio::spawn(async move {
                loop {
                    let sync = encryption.sync(permit.clone().lock_owned().await);
                    pin_mut!(sync);
                    while let Some(result) = sync.next().await {
                        if result.is_err() {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        {
            let (room_list, rooms) = (room_list.clone(), rooms.clone());
            tasks.push(tokio::spawn(async move {
                let all_rooms = room_list.all_rooms().await.expect("the all_rooms list");
                let (entries, controller) = all_rooms.entries_with_dynamic_adapters(100);
                controller.set_filter(Box::new(filters::new_filter_non_left()));
                pin_mut!(entries);
                while let Some(diffs) = entries.next().await {
                    let mut rooms = rooms.lock().unwrap();
                    for diff in diffs {
                        diff.apply(&mut rooms);
                    }
                }
                drop(controller);
            }));
        }
        Self { room_list, rooms, unknown_pos_seen, tasks }
    }

    /// The room list's rooms, top first.
    fn room_ids(&self) -> Vec<OwnedRoomId> {
        self.rooms.lock().unwrap().iter().map(|r| r.room_id().to_owned()).collect()
    }

    /// The room list's names, top first.
    fn names(&self) -> Vec<String> {
        self.rooms
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.cached_display_name().map(|n| n.to_string()).unwrap_or_default())
            .collect()
    }

    async fn wait_for_names(&self, what: &str, expected: &[&str]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.names() != expected {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {:?}", self.names());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// A client that, like Element X, requires the server to advertise
/// simplified sliding sync in `/versions`.
async fn element_x_client(server: &TestServer, name: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(&server.base_url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .request_config(matrix_sdk::config::RequestConfig::new().timeout(Duration::from_secs(30)).disable_retry())
        .build()
        .await
        .expect("the server advertises simplified sliding sync");
    client.matrix_auth().login_username(name, common::PASSWORD).await.expect("login");
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn element_x_room_list_and_encryption_sync() {
    let port = free_port();
    let mut server =
        TestServer::start_with(|c| c.server.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()]).await;
    let alice_http = server.register("alice").await;
    server.register("bob").await;
    let first = named_room(&server, &alice_http, "First").await;
    let second = named_room(&server, &alice_http, "Second").await;
    let third = named_room(&server, &alice_http, "Third").await;
    for (room, text) in [(&first, "1"), (&second, "2"), (&third, "3"), (&first, "1 again")] {
        send_in_turn(&server, &alice_http, room, text).await;
    }

    let alice = element_x_client(&server, "alice").await;
    let app = App::start(&alice).await;
    app.wait_for_names("the room list in activity order", &["First", "Third", "Second"]).await;

    // The latest event of a room the app looks at.
    let first_id: OwnedRoomId = first.as_str().try_into().unwrap();
    app.room_list.subscribe_to_rooms(&[&first_id]).await;
    wait_until("First's latest event", || {
        let room = alice.get_room(&first_id);
        async move {
            match room.map(|r| r.latest_event()) {
                Some(matrix_sdk::latest_events::LatestEventValue::Remote(event)) => {
                    event.raw().get_field::<Value>("content").ok().flatten().is_some_and(|c| c["body"] == "1 again")
                }
                _ => false,
            }
        }
    })
    .await;

    // A new message moves its room to the top.
    server.send_text(&alice_http.access_token, &second, "2 again").await;
    app.wait_for_names("Second at the top", &["Second", "First", "Third"]).await;

    // An invite appears.
    let bob = server.sdk_logged_in("bob").await;
    let request = matrix_sdk::ruma::assign!(create_room::v3::Request::new(), {
        invite: vec![alice.user_id().unwrap().to_owned()],
        name: Some("Secrets".to_owned()),
        initial_state: vec![InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any()],
    });
    let secrets = bob.create_room(request).await.expect("bob creates an encrypted room");
    let secrets_id = secrets.room_id().to_owned();
    wait_until("the invite in alice's room list", || {
        let invited =
            app.rooms.lock().unwrap().iter().any(|r| r.room_id() == secrets_id && r.state() == RoomState::Invited);
        async move { invited }
    })
    .await;

    // An encrypted message decrypts with keys from the to-device and e2ee extensions.
    alice.join_room_by_id(&secrets_id).await.expect("alice joins");
    wait_until("bob to see alice joined", || {
        let (bob, secrets) = (bob.clone(), secrets.clone());
        async move {
            bob.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await.ok();
            secrets.sync_members().await.ok();
            secrets.joined_members_count() == 2
        }
    })
    .await;
    let sent = secrets.send(RoomMessageEventContent::text_plain("the secret")).await.expect("bob sends");
    wait_until("alice to decrypt bob's message", || {
        let (room, event_id) = (alice.get_room(&secrets_id), sent.response.event_id.clone());
        async move {
            let Some(room) = room else { return false };
            match room.event(&event_id, None).await {
                Ok(event) => {
                    event.encryption_info().is_some()
                        && event
                            .raw()
                            .get_field::<Value>("content")
                            .ok()
                            .flatten()
                            .is_some_and(|c| c["body"] == "the secret")
                }
                Err(_) => false,
            }
        }
    })
    .await;
    let ciphertext = server.messages(&alice_http.access_token, secrets_id.as_str(), "dir=b&limit=5").await.1;
    assert!(!ciphertext.to_string().contains("the secret"), "the server saw ciphertext only");

    // Restarted with its stored pos, the app resumes.
    app.stop();
    let app = App::start(&alice).await;
    server.send_text(&alice_http.access_token, &third, "3 again").await;
    wait_until("Third at the top after a restart", || {
        let top = app.names().first().cloned();
        async move { top.as_deref() == Some("Third") }
    })
    .await;

    // A server restart forgets every connection: the app gets M_UNKNOWN_POS
    // and starts a fresh connection.
    server.restart().await;
    server.send_text(&alice_http.access_token, &first, "after the restart").await;
    wait_until("First at the top after M_UNKNOWN_POS", || {
        let (top, seen) = (app.names().first().cloned(), *app.unknown_pos_seen.lock().unwrap());
        async move { seen && top.as_deref() == Some("First") }
    })
    .await;
    assert!(app.room_ids().contains(&secrets_id));
    app.stop();
}
