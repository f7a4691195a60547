//! Pushers and push delivery, as a phone app and its push gateway see
//! them: the pusher a device sets, the notification the gateway gets for a
//! message, `event_id_only`, pushkeys the gateway rejects, a failing
//! gateway, a restart, logout, devices syncing now, and bodies the server
//! refuses. The gateway is a stub on loopback that records what it gets.

mod common;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use common::{TestServer, TestUser, assert_error, wait_until};
use serde_json::{Value, json};

const APP_ID: &str = "org.example.phone";

/// A push gateway on loopback: records every notification, answers with
/// the scripted answers first, then 200 `{"rejected": []}`.
#[derive(Clone, Default)]
struct Gateway {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
    /// When set, every answer is 500 (a gateway that is down).
    failing: Arc<Mutex<bool>>,
}

impl Gateway {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().unwrap());
        let gateway = Gateway { url, ..Gateway::default() };
        let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(gateway.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        gateway
    }

    fn answer_next(&self, status: u16, body: Value) {
        self.answers.lock().unwrap().push_back((status, body));
    }

    fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap() = failing;
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` notifications arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} notifications at the gateway"), || async { self.received().len() >= n }).await;
        self.received()
    }
}

async fn notify(State(gateway): State<Gateway>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    gateway.received.lock().unwrap().push(body["notification"].clone());
    let failing = *gateway.failing.lock().unwrap();
    let (status, answer) = match gateway.answers.lock().unwrap().pop_front() {
        _ if failing => (500, json!({})),
        Some(answer) => answer,
        None => (200, json!({"rejected": []})),
    };
    (StatusCode::from_u16(status).unwrap(), Json(answer))
}

/// A server whose pushes may reach the loopback gateway.
async fn server() -> TestServer {
    TestServer::start_with(|c| c.push.gateway_allowed_ranges = vec!["127.0.0.1/32".into()]).await
}

/// A room of three (alice, bob, carol): the group-room rules notify.
async fn group_room(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    assert_eq!(server.join(&carol.access_token, &room).await.0, 200);
    (alice, bob, room)
}

fn http_pusher(pushkey: &str, data: Value) -> Value {
    json!({
        "kind": "http", "app_id": APP_ID, "pushkey": pushkey, "data": data,
        "app_display_name": "Phone app", "device_display_name": "Bob's phone", "lang": "en",
    })
}

async fn set_pusher(server: &TestServer, user: &TestUser, body: Value) -> (u16, Value) {
    server.post("/_matrix/client/v3/pushers/set", Some(&user.access_token), body).await
}

async fn pushers(server: &TestServer, user: &TestUser) -> Vec<Value> {
    let (status, body) = server.get("/_matrix/client/v3/pushers", Some(&user.access_token)).await;
    assert_eq!(status, 200, "{body}");
    body["pushers"].as_array().expect("a list of pushers").clone()
}

async fn send(server: &TestServer, user: &TestUser, room: &str, text: &str) -> String {
    let (status, body) = server.send_text(&user.access_token, room, text).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().expect("an event id").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_reaches_the_gateway_of_each_pusher_but_the_senders() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    let data = json!({"url": gateway.url, "default_payload": {"aps": {"mutable-content": 1}}});
    assert_eq!(set_pusher(&server, &bob, http_pusher("bob-phone", data.clone())).await.0, 200);
    let listed = pushers(&server, &bob).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["pushkey"], "bob-phone");
    assert_eq!(listed[0]["kind"], "http");
    assert_eq!(listed[0]["data"], data);
    assert_eq!(listed[0]["device_display_name"], "Bob's phone");
    assert!(pushers(&server, &alice).await.is_empty(), "a pusher is its user's own");

    let hello = send(&server, &alice, &room, "hello bob").await;
    let n = &gateway.wait_for(1).await[0];
    assert_eq!(n["event_id"], hello);
    assert_eq!(n["room_id"], room);
    assert_eq!(n["type"], "m.room.message");
    assert_eq!(n["sender"], alice.user_id);
    assert_eq!(n["sender_display_name"], "alice");
    assert_eq!(n["content"], json!({"msgtype": "m.text", "body": "hello bob"}));
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["prio"], "low", "a plain message in a group room neither highlights nor rings");
    let devices = n["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["app_id"], APP_ID);
    assert_eq!(devices[0]["pushkey"], "bob-phone");
    assert!(devices[0]["pushkey_ts"].as_u64().is_some());
    assert_eq!(devices[0]["data"], json!({"default_payload": {"aps": {"mutable-content": 1}}}), "data without url");

    // Bob's own message is not pushed to him; alice's next one is, and
    // pushes to one pusher arrive in order, so it shows nothing came between.
    send(&server, &bob, &room, "I'm here").await;
    let again = send(&server, &alice, &room, "good").await;
    let all = gateway.wait_for(2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[1]["event_id"], again);
    assert_eq!(all[1]["counts"]["unread"], 2, "bob has read nothing yet");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_id_only_pusher_gets_no_content() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    let data = json!({"url": gateway.url, "format": "event_id_only"});
    assert_eq!(set_pusher(&server, &bob, http_pusher("bob-phone", data)).await.0, 200);

    let secret = send(&server, &alice, &room, "a secret").await;
    let n = &gateway.wait_for(1).await[0];
    assert_eq!(n["event_id"], secret);
    assert_eq!(n["room_id"], room);
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["devices"][0]["data"], json!({"format": "event_id_only"}));
    for absent in ["content", "type", "sender", "sender_display_name", "room_name"] {
        assert!(n.get(absent).is_none(), "{absent} in {n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushkey_the_gateway_rejects_removes_its_pusher() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    assert_eq!(set_pusher(&server, &bob, http_pusher("stale-key", json!({"url": gateway.url}))).await.0, 200);
    gateway.answer_next(200, json!({"rejected": ["stale-key"]}));

    send(&server, &alice, &room, "anyone there?").await;
    gateway.wait_for(1).await;
    wait_until("the rejected pusher to be removed", || async { pushers(&server, &bob).await.is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_gateway_gets_the_push_again_after_a_back_off() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    assert_eq!(set_pusher(&server, &bob, http_pusher("bob-phone", json!({"url": gateway.url}))).await.0, 200);
    gateway.answer_next(500, json!({"errcode": "M_UNKNOWN", "error": "down for a moment"}));

    let hello = send(&server, &alice, &room, "hello?").await;
    let both = gateway.wait_for(2).await;
    assert_eq!(both[0]["event_id"], hello);
    assert_eq!(both[1]["event_id"], hello, "the same push, tried again");
    assert_eq!(both[1]["content"]["body"], "hello?");
    assert_eq!(pushers(&server, &bob).await.len(), 1, "a failing gateway keeps its pusher");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_not_delivered_before_a_restart_is_delivered_after_it() {
    let mut server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    assert_eq!(set_pusher(&server, &bob, http_pusher("bob-phone", json!({"url": gateway.url}))).await.0, 200);
    gateway.set_failing(true);

    let hello = send(&server, &alice, &room, "are you up?").await;
    gateway.wait_for(1).await;
    server.stop().await;
    gateway.set_failing(false);
    let tried = gateway.received().len();
    server.start_again().await;

    let all = gateway.wait_for(tried + 1).await;
    assert_eq!(all[tried]["event_id"], hello);
    assert_eq!(all[tried]["content"]["body"], "are you up?");
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_out_removes_the_devices_pushers() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let bob = server.register("bob").await;
    let (status, login) = server.login("bob", common::PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let tablet = TestUser {
        device_id: login["device_id"].as_str().unwrap().to_owned(),
        access_token: login["access_token"].as_str().unwrap().to_owned(),
        ..bob.clone()
    };
    assert_eq!(set_pusher(&server, &bob, http_pusher("phone", json!({"url": gateway.url}))).await.0, 200);
    assert_eq!(set_pusher(&server, &tablet, http_pusher("tablet", json!({"url": gateway.url}))).await.0, 200);
    assert_eq!(pushers(&server, &bob).await.len(), 2, "the user's pushers, from every device");

    let (status, body) = server.post("/_matrix/client/v3/logout", Some(&tablet.access_token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let left: Vec<Value> = pushers(&server, &bob).await.iter().map(|p| p["pushkey"].clone()).collect();
    assert_eq!(left, [json!("phone")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_in_a_sync_now_gets_no_push() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let (alice, bob, room) = group_room(&server).await;
    assert_eq!(set_pusher(&server, &bob, http_pusher("bob-phone", json!({"url": gateway.url}))).await.0, 200);
    let (status, first) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{first}");

    // Bob's phone holds a sync open: the message reaches it there.
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let held = {
        let url = server.url(&format!("/_matrix/client/v3/sync?timeout=30000&since={since}"));
        let request = server.http.get(url).bearer_auth(&bob.access_token);
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    let syncs = server.services().push.active_syncs().clone();
    let user = <&plexus::ruma::UserId>::try_from(bob.user_id.as_str()).unwrap();
    let device = <&plexus::ruma::DeviceId>::from(bob.device_id.as_str());
    wait_until("bob's sync to be held", || async { syncs.is_syncing(user, device) }).await;
    let while_syncing = send(&server, &alice, &room, "seen in sync").await;
    let synced = tokio::time::timeout(Duration::from_secs(30), held).await.unwrap().unwrap();
    let timeline = &synced["rooms"]["join"][&room]["timeline"]["events"];
    assert!(timeline.as_array().unwrap().iter().any(|e| e["event_id"] == while_syncing), "{synced}");

    // Not syncing now: the next message is pushed, and it is the first.
    let after = send(&server, &alice, &room, "pushed").await;
    let all = gateway.wait_for(1).await;
    assert_eq!(all[0]["event_id"], after, "nothing was pushed while the phone synced: {all:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pushers_are_replaced_and_deleted() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut pusher = http_pusher("shared-key", json!({"url": gateway.url}));
    assert_eq!(set_pusher(&server, &bob, pusher.clone()).await.0, 200);
    pusher["lang"] = json!("fr");
    assert_eq!(set_pusher(&server, &bob, pusher.clone()).await.0, 200);
    let listed = pushers(&server, &bob).await;
    assert_eq!((listed.len(), &listed[0]["lang"]), (1, &json!("fr")), "set again: updated, not added");

    // Carol appending the same pushkey leaves bob's; without append it moves to her.
    pusher["append"] = json!(true);
    assert_eq!(set_pusher(&server, &carol, pusher.clone()).await.0, 200);
    assert_eq!(pushers(&server, &bob).await.len(), 1);
    pusher["append"] = json!(false);
    assert_eq!(set_pusher(&server, &carol, pusher).await.0, 200);
    assert!(pushers(&server, &bob).await.is_empty());

    let delete = json!({"kind": null, "app_id": APP_ID, "pushkey": "shared-key"});
    assert_eq!(set_pusher(&server, &carol, delete.clone()).await.0, 200);
    assert!(pushers(&server, &carol).await.is_empty());
    assert_eq!(set_pusher(&server, &carol, delete).await.0, 200, "deleting what is not there is no error");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_pushers_are_refused_and_change_nothing() {
    let server = server().await;
    let gateway = Gateway::start().await;
    let bob = server.register("bob").await;
    let good = http_pusher("bob-phone", json!({"url": gateway.url}));
    assert_eq!(set_pusher(&server, &bob, good).await.0, 200);
    let before = pushers(&server, &bob).await;

    let invalid = [
        http_pusher("bob-phone", json!({"url": "https://push.example.org/notify"})),
        http_pusher("bob-phone", json!({"url": "/_matrix/push/v1/notify"})),
        http_pusher("bob-phone", json!({"url": "ftp://push.example.org/_matrix/push/v1/notify"})),
        http_pusher(&"k".repeat(513), json!({"url": gateway.url})),
        json!({"kind": "email", "app_id": "m.email", "pushkey": "bob@example.org", "data": {},
               "app_display_name": "Email", "device_display_name": "bob@example.org", "lang": "en"}),
    ];
    for body in invalid {
        assert_error(&set_pusher(&server, &bob, body.clone()).await, 400, "M_INVALID_PARAM");
    }
    let mut missing_url = http_pusher("bob-phone", json!({"format": "event_id_only"}));
    assert_error(&set_pusher(&server, &bob, missing_url.clone()).await, 400, "M_BAD_JSON");
    missing_url["data"] = json!({"url": gateway.url});
    missing_url.as_object_mut().unwrap().remove("lang");
    assert_error(&set_pusher(&server, &bob, missing_url).await, 400, "M_BAD_JSON");

    assert_eq!(pushers(&server, &bob).await, before, "the pusher set first is untouched");

    // A format the spec does not define is kept as given (and sent the
    // full format), as Synapse does.
    let custom = http_pusher("bob-phone", json!({"url": gateway.url, "format": "id_event_only"}));
    assert_eq!(set_pusher(&server, &bob, custom).await.0, 200);
    let listed = pushers(&server, &bob).await;
    assert_eq!(listed[0]["data"]["format"], "id_event_only", "{listed:?}");
}
