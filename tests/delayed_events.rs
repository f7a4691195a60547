//! Delayed events (MSC4140) over HTTP, as Element Call uses them: a
//! delayed "leave" state event is sent when its delay runs out, `restart`
//! postpones it, `cancel` stops it, `send` sends it at once, and one
//! scheduled before a restart of the server is still sent. Delays are short
//! (hundreds of milliseconds) and every wait is a bounded poll.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, TestUser, assert_error, enc, wait_until};
use serde_json::{Value, json};

const DELAYED: &str = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";
const LEAVE_TYPE: &str = "org.example.call.member";

/// Schedules a state event; returns the response.
async fn delay_state(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    key: &str,
    content: Value,
    delay: &str,
) -> (u16, Value) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/{LEAVE_TYPE}/{}?org.matrix.msc4140.delay={delay}",
        enc(room),
        enc(key)
    );
    server.put(&path, Some(&user.access_token), content).await
}

/// Schedules a state event that must be accepted; its delay id.
async fn delay_state_ok(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    key: &str,
    content: Value,
    ms: u64,
) -> String {
    let resp = delay_state(server, user, room, key, content, &ms.to_string()).await;
    assert_eq!(resp.0, 200, "scheduling failed: {}", resp.1);
    assert!(resp.1.get("event_id").is_none(), "a delayed send has no event yet: {}", resp.1);
    resp.1["delay_id"].as_str().expect("a delay_id").to_owned()
}

/// The content of a state event, or `None` while it is not set.
async fn state_content(server: &TestServer, user: &TestUser, room: &str, key: &str) -> Option<Value> {
    let (status, body) = server.get_state(&user.access_token, room, LEAVE_TYPE, key).await;
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("unexpected state answer {other}: {body}"),
    }
}

async fn wait_for_state(server: &TestServer, user: &TestUser, room: &str, key: &str) -> Value {
    wait_until("the delayed state event", || async { state_content(server, user, room, key).await.is_some() }).await;
    state_content(server, user, room, key).await.expect("set")
}

async fn list(server: &TestServer, user: &TestUser, query: &str) -> Value {
    let (status, body) = server.get(&format!("{DELAYED}{query}"), Some(&user.access_token)).await;
    assert_eq!(status, 200, "listing failed: {body}");
    body
}

async fn act(server: &TestServer, user: Option<&TestUser>, delay_id: &str, action: &str) -> (u16, Value) {
    server.post(&format!("{DELAYED}/{delay_id}/{action}"), user.map(|u| u.access_token.as_str()), json!({})).await
}

/// The state events of the room in an initial `/sync`, by type.
async fn synced_state(server: &TestServer, user: &TestUser, room: &str) -> Vec<Value> {
    let (status, body) = server.get("/_matrix/client/v3/sync", Some(&user.access_token)).await;
    assert_eq!(status, 200, "sync failed: {body}");
    let joined = &body["rooms"]["join"][room];
    let mut events: Vec<Value> = joined["state"]["events"].as_array().cloned().unwrap_or_default();
    events.extend(joined["timeline"]["events"].as_array().cloned().unwrap_or_default());
    events.into_iter().filter(|e| e["type"] == LEAVE_TYPE).collect()
}

#[tokio::test]
async fn a_delayed_state_event_is_sent_as_its_user_when_its_delay_runs_out() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["org.matrix.msc4140"], true, "{versions}");
    let room = server.create_room(&alice.access_token, json!({})).await;
    // Element Call's key: a leading `_`, since a state key starting with
    // `@` must be the sender's own id.
    let key = format!("_{}_{}", alice.user_id, alice.device_id);

    let delay_id = delay_state_ok(&server, &alice, &room, &key, json!({"left": true}), 400).await;
    let listed = list(&server, &alice, "").await;
    let scheduled = listed["scheduled"].as_array().expect("scheduled");
    assert_eq!(scheduled.len(), 1, "{listed}");
    assert_eq!(scheduled[0]["delay_id"], delay_id.as_str());
    assert_eq!(scheduled[0]["room_id"], room.as_str());
    assert_eq!(scheduled[0]["type"], LEAVE_TYPE);
    assert_eq!(scheduled[0]["state_key"], key.as_str());
    assert_eq!(scheduled[0]["delay"], 400);
    assert_eq!(scheduled[0]["content"], json!({"left": true}));
    assert!(scheduled[0]["running_since"].as_i64().is_some_and(|t| t > 0), "{listed}");
    assert_eq!(listed["delayed_events"], listed["scheduled"], "Synapse's shape carries the same");

    assert_eq!(wait_for_state(&server, &alice, &room, &key).await, json!({"left": true}));
    let synced = synced_state(&server, &alice, &room).await;
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert_eq!(synced[0]["sender"], alice.user_id.as_str());
    assert_eq!(synced[0]["state_key"], key.as_str());
    assert_eq!(synced[0]["content"], json!({"left": true}));

    let listed = list(&server, &alice, "").await;
    assert_eq!(listed["scheduled"], json!([]), "{listed}");
    let finalised = &listed["finalised"][0];
    assert_eq!(finalised["outcome"], "send", "{listed}");
    assert_eq!(finalised["reason"], "delay");
    assert_eq!(finalised["event_id"], synced[0]["event_id"]);
    assert_eq!(finalised["delayed_event"]["delay_id"], delay_id.as_str());
    // A sent event can no longer be acted on.
    assert_error(&act(&server, Some(&alice), &delay_id, "restart").await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_delayed_message_is_sent_once_and_a_retried_transaction_gets_its_delay_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/txn1?org.matrix.msc4140.delay=300", enc(&room));
    let content = json!({"msgtype": "m.text", "body": "I am now offline"});
    let first = server.put(&path, Some(&alice.access_token), content.clone()).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let delay_id = first.1["delay_id"].as_str().expect("delay_id").to_owned();
    let again = server.put(&path, Some(&alice.access_token), content).await;
    assert_eq!(again, (200, json!({"delay_id": delay_id})), "the same transaction gets the same delay id");

    let bodies = || async {
        let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=50").await;
        page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|e| e["content"]["body"] == "I am now offline")
            .map(|e| e["sender"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    wait_until("the delayed message", || async { !bodies().await.is_empty() }).await;
    assert_eq!(bodies().await, [alice.user_id.as_str()], "sent once, by alice");
    let listed = list(&server, &alice, "?status=finalised").await;
    assert_eq!(listed["scheduled"], json!([]));
    assert_eq!(listed["finalised"][0]["delayed_event"]["type"], "m.room.message");
    assert!(listed["finalised"][0]["delayed_event"].get("state_key").is_none(), "{listed}");
    // Retried after the event was sent, the transaction still answers the same.
    assert_eq!(server.put(&path, Some(&alice.access_token), json!({"body": "x"})).await.1["delay_id"], delay_id);
}

#[tokio::test]
async fn restart_postpones_cancel_stops_and_send_sends_at_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;

    // Restart: the delay counts again from the restart.
    let scheduled_at = Instant::now();
    let restarted = delay_state_ok(&server, &alice, &room, "restarted", json!({"n": 1}), 1500).await;
    let before = list(&server, &alice, "").await["scheduled"][0]["running_since"].as_i64().expect("running_since");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted_at = Instant::now();
    assert_eq!(act(&server, Some(&alice), &restarted, "restart").await, (200, json!({})));
    let after = list(&server, &alice, "").await["scheduled"][0]["running_since"].as_i64().expect("running_since");
    assert!(after >= before + 500, "running_since moved from {before} to {after}");
    // Past the first send time (with room to spare), it is not there yet,
    // unless this machine was so slow that the new send time passed too.
    tokio::time::sleep((scheduled_at + Duration::from_millis(1800)).saturating_duration_since(Instant::now())).await;
    let early = state_content(&server, &alice, &room, "restarted").await;
    assert!(early.is_none() || restarted_at.elapsed() >= Duration::from_millis(1500), "sent before its new time");
    assert_eq!(wait_for_state(&server, &alice, &room, "restarted").await, json!({"n": 1}));

    // Cancel: a later delayed event arrives; the cancelled one never does.
    let cancelled = delay_state_ok(&server, &alice, &room, "cancelled", json!({"n": 2}), 300).await;
    assert_eq!(act(&server, Some(&alice), &cancelled, "cancel").await, (200, json!({})));
    delay_state_ok(&server, &alice, &room, "sentinel", json!({"n": 3}), 600).await;
    wait_for_state(&server, &alice, &room, "sentinel").await;
    assert_eq!(state_content(&server, &alice, &room, "cancelled").await, None);
    let finalised = list(&server, &alice, "?status=finalised").await;
    let entry = finalised["finalised"]
        .as_array()
        .expect("finalised")
        .iter()
        .find(|f| f["delayed_event"]["delay_id"] == cancelled.as_str())
        .cloned()
        .expect("the cancelled one is listed");
    assert_eq!((entry["outcome"].as_str(), entry["reason"].as_str()), (Some("cancel"), Some("action")));
    assert_error(&act(&server, Some(&alice), &cancelled, "cancel").await, 404, "M_NOT_FOUND");

    // Send: at once, long before its hour is up; also with the action in
    // the body (MSC4140's earlier form) and without an access token.
    let sent = delay_state_ok(&server, &alice, &room, "sent", json!({"n": 4}), 3_600_000).await;
    assert_eq!(act(&server, None, &sent, "send").await, (200, json!({})));
    assert_eq!(state_content(&server, &alice, &room, "sent").await, Some(json!({"n": 4})));
    let body_form = delay_state_ok(&server, &alice, &room, "body", json!({"n": 5}), 3_600_000).await;
    let resp =
        server.post(&format!("{DELAYED}/{body_form}"), Some(&alice.access_token), json!({"action": "send"})).await;
    assert_eq!(resp, (200, json!({})));
    assert_eq!(state_content(&server, &alice, &room, "body").await, Some(json!({"n": 5})));
    assert_eq!(list(&server, &alice, "?status=scheduled").await["scheduled"], json!([]));
}

#[tokio::test]
async fn delayed_events_scheduled_before_a_restart_are_still_sent() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    delay_state_ok(&server, &alice, &room, "overdue", json!({"when": "at start"}), 300).await;
    delay_state_ok(&server, &alice, &room, "later", json!({"when": "after start"}), 2500).await;
    server.stop().await;
    // The first one's time passes while the server is down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.start_again().await;
    assert_eq!(wait_for_state(&server, &alice, &room, "overdue").await, json!({"when": "at start"}));
    assert_eq!(wait_for_state(&server, &alice, &room, "later").await, json!({"when": "after start"}));
    let listed = list(&server, &alice, "").await;
    assert_eq!(listed["scheduled"], json!([]));
    assert_eq!(listed["finalised"].as_array().map(Vec::len), Some(2), "{listed}");
}

#[tokio::test]
async fn an_event_that_cannot_be_sent_is_dropped_and_another_users_state_cancels_a_delayed_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server
        .create_room(
            &alice.access_token,
            json!({"preset": "public_chat", "power_level_content_override": {
                "users": {carol.user_id.clone(): 100}}}),
        )
        .await;
    assert_eq!(server.join(&carol.access_token, &room).await.0, 200);

    // Bob is not in the room: scheduling works (who may send is checked
    // when it is sent), sending does not.
    let doomed = delay_state_ok(&server, &bob, &room, "bob", json!({"x": 1}), 3_600_000).await;
    assert_error(&act(&server, Some(&bob), &doomed, "send").await, 403, "M_FORBIDDEN");
    assert_eq!(list(&server, &bob, "").await["scheduled"][0]["delay_id"], doomed.as_str(), "still scheduled");
    assert_eq!(act(&server, Some(&bob), &doomed, "cancel").await.0, 200);
    delay_state_ok(&server, &bob, &room, "bob", json!({"x": 2}), 200).await;
    wait_until("the failed send is recorded", || async {
        list(&server, &bob, "?status=finalised").await["finalised"].as_array().is_some_and(|f| f.len() == 2)
    })
    .await;
    let failed = list(&server, &bob, "?status=finalised").await["finalised"][0].clone();
    assert_eq!(failed["outcome"], "cancel", "{failed}");
    assert_eq!(failed["reason"], "error");
    assert_eq!(failed["error"]["errcode"], "M_FORBIDDEN");
    assert_eq!(state_content(&server, &alice, &room, "bob").await, None);

    // Carol sets the state alice's delayed event would set: alice's is
    // cancelled. Alice's own state update does not cancel her own.
    let own = delay_state_ok(&server, &alice, &room, "shared", json!({"by": "alice later"}), 3_600_000).await;
    let (status, _) = server.put_state(&alice.access_token, &room, LEAVE_TYPE, "shared", json!({"by": "alice"})).await;
    assert_eq!(status, 200);
    assert_eq!(list(&server, &alice, "?status=scheduled").await["scheduled"][0]["delay_id"], own.as_str());
    let (status, _) = server.put_state(&carol.access_token, &room, LEAVE_TYPE, "shared", json!({"by": "carol"})).await;
    assert_eq!(status, 200);
    let listed = list(&server, &alice, "").await;
    assert_eq!(listed["scheduled"], json!([]), "{listed}");
    let cancelled = &listed["finalised"][0];
    assert_eq!(cancelled["delayed_event"]["delay_id"], own.as_str());
    assert_eq!(cancelled["error"]["org.matrix.msc4140.errcode"], "M_CANCELLED_BY_STATE_UPDATE");
    assert_error(&act(&server, Some(&alice), &own, "restart").await, 404, "M_NOT_FOUND");
    assert_eq!(state_content(&server, &alice, &room, "shared").await, Some(json!({"by": "carol"})));
}

#[tokio::test]
async fn bad_requests_get_the_msc_errors_and_change_nothing() {
    let server = TestServer::start_with(|c| {
        c.rooms.max_event_delay_ms = 60_000;
        c.rooms.max_delayed_events_per_user = 2;
    })
    .await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let state_path = |delay: &str| {
        format!("/_matrix/client/v3/rooms/{}/state/{LEAVE_TYPE}/k?org.matrix.msc4140.delay={delay}", enc(&room))
    };

    // No access token.
    assert_error(&server.put(&state_path("1000"), None, json!({})).await, 401, "M_MISSING_TOKEN");
    assert_error(&server.get(DELAYED, None).await, 401, "M_MISSING_TOKEN");
    // Delays: too long (with the maximum, as matrix-js-sdk reads it), zero, not a number.
    let too_long = delay_state(&server, &alice, &room, "k", json!({}), "60001").await;
    assert_eq!(too_long.0, 400, "{}", too_long.1);
    assert_eq!(too_long.1["errcode"], "M_UNKNOWN");
    assert_eq!(too_long.1["org.matrix.msc4140.errcode"], "M_MAX_DELAY_EXCEEDED");
    assert_eq!(too_long.1["org.matrix.msc4140.max_delay"], 60_000);
    assert_error(&delay_state(&server, &alice, &room, "k", json!({}), "0").await, 400, "M_INVALID_PARAM");
    assert_error(&delay_state(&server, &alice, &room, "k", json!({}), "soon").await, 400, "M_INVALID_PARAM");
    // Unknown room; content that is not an object.
    assert_error(
        &delay_state(&server, &alice, "!nowhere:plexus.test", "k", json!({}), "1000").await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&delay_state(&server, &alice, &room, "k", json!([1]), "1000").await, 400, "M_BAD_JSON");
    assert_eq!(list(&server, &alice, "").await["scheduled"], json!([]), "nothing was scheduled");

    // The per-user cap: the third is refused with a wait until the first is due.
    let first = delay_state_ok(&server, &alice, &room, "a", json!({}), 50_000).await;
    delay_state_ok(&server, &alice, &room, "b", json!({}), 50_000).await;
    let capped = delay_state(&server, &alice, &room, "c", json!({}), "1000").await;
    assert_error(&capped, 429, "M_LIMIT_EXCEEDED");
    assert!(capped.1["retry_after_ms"].as_u64().is_some_and(|ms| ms > 40_000 && ms <= 50_000), "{}", capped.1);
    assert_eq!(list(&server, &alice, "").await["scheduled"].as_array().map(Vec::len), Some(2));

    // Management: unknown ids, bad actions, bad listing parameters.
    assert_error(&act(&server, Some(&alice), "no-such-id", "cancel").await, 404, "M_NOT_FOUND");
    assert_error(&act(&server, None, "no-such-id", "restart").await, 404, "M_NOT_FOUND");
    let body_form = |id: &str, action: Value| {
        let path = format!("{DELAYED}/{id}");
        let token = alice.access_token.clone();
        let server = &server;
        async move { server.post(&path, Some(&token), json!({"action": action})).await }
    };
    assert_error(&body_form("no-such-id", json!("send")).await, 404, "M_NOT_FOUND");
    assert_error(&body_form(&first, json!("explode")).await, 400, "M_INVALID_PARAM");
    assert_error(&act(&server, Some(&alice), &first, "explode").await, 404, "M_UNRECOGNIZED");
    assert_error(
        &server.get(&format!("{DELAYED}?status=later"), Some(&alice.access_token)).await,
        400,
        "M_INVALID_PARAM",
    );
    let only_first = list(&server, &alice, &format!("?delay_id={first}")).await;
    assert_eq!(only_first["scheduled"].as_array().map(Vec::len), Some(1), "{only_first}");
    assert_eq!(only_first["scheduled"][0]["state_key"], "a", "still scheduled after the bad requests");
}

#[tokio::test]
async fn with_delayed_events_off_a_delayed_send_is_refused() {
    let server = TestServer::start_with(|c| c.rooms.max_event_delay_ms = 0).await;
    let alice = server.register("alice").await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert!(versions["unstable_features"].get("org.matrix.msc4140").is_none(), "{versions}");
    let room = server.create_room(&alice.access_token, json!({})).await;
    assert_error(&delay_state(&server, &alice, &room, "k", json!({}), "1000").await, 403, "M_FORBIDDEN");
    assert_eq!(state_content(&server, &alice, &room, "k").await, None);
}

#[tokio::test]
async fn a_delayed_event_is_rate_limited_when_it_is_sent() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.enabled = true;
        c.rate_limits.message = plexus::config::RateLimit { per_second: 0.001, burst: 2 };
        // The listing below is polled.
        c.rate_limits.delayed_event_management = plexus::config::RateLimit { per_second: 1000.0, burst: 1000 };
    })
    .await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    // Scheduling takes one of alice's two tokens, a message the other.
    delay_state_ok(&server, &alice, &room, "limited", json!({}), 300).await;
    assert_eq!(server.send_text(&alice.access_token, &room, "hello").await.0, 200);
    wait_until("the delayed event is finalised", || async {
        list(&server, &alice, "?status=finalised").await["finalised"].as_array().is_some_and(|f| !f.is_empty())
    })
    .await;
    let finalised = list(&server, &alice, "").await["finalised"][0].clone();
    assert_eq!((finalised["outcome"].as_str(), finalised["reason"].as_str()), (Some("cancel"), Some("error")));
    assert_eq!(finalised["error"]["errcode"], "M_LIMIT_EXCEEDED", "{finalised}");
    assert_eq!(state_content(&server, &alice, &room, "limited").await, None);
}
