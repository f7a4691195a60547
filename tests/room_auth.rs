//! The auth rules and visibility rules, seen from clients: what a user may
//! not do is refused with 403 and changes nothing.

mod common;

use common::{TestServer, assert_error, enc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn non_members_cannot_send_or_read() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let eve = server.register("eve").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    server.send_text(&alice.access_token, &room, "private words").await;
    assert_error(&server.send_text(&eve.access_token, &room, "let me in").await, 403, "M_FORBIDDEN");
    assert_error(&server.messages(&eve.access_token, &room, "dir=b").await, 403, "M_FORBIDDEN");
    assert_error(&server.get_state(&eve.access_token, &room, "m.room.name", "").await, 403, "M_FORBIDDEN");
    let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=50").await;
    assert!(!page.to_string().contains("let me in"), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn members_without_power_cannot_change_the_name() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"name": "Alice's room", "preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let attempt = server.put_state(&bob.access_token, &room, "m.room.name", "", json!({"name": "Bob's room"})).await;
    assert_error(&attempt, 403, "M_FORBIDDEN");
    let (_, name) = server.get_state(&bob.access_token, &room, "m.room.name", "").await;
    assert_eq!(name["name"], "Alice's room");
    // Alice grants Bob power; now he may.
    let (_, mut levels) = server.get_state(&alice.access_token, &room, "m.room.power_levels", "").await;
    levels["users"][bob.user_id.as_str()] = json!(50);
    assert_eq!(server.put_state(&alice.access_token, &room, "m.room.power_levels", "", levels).await.0, 200);
    assert_eq!(
        server.put_state(&bob.access_token, &room, "m.room.name", "", json!({"name": "Bob's room"})).await.0,
        200
    );
    let (_, name) = server.get_state(&alice.access_token, &room, "m.room.name", "").await;
    assert_eq!(name["name"], "Bob's room");
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_users_cannot_rejoin() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    server.room_post(&alice.access_token, &room, "ban", json!({"user_id": bob.user_id})).await;
    assert_error(&server.join(&bob.access_token, &room).await, 403, "M_FORBIDDEN");
    let invite = server.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await;
    assert_error(&invite, 403, "M_FORBIDDEN");
    let (_, member) = server.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "ban");
}

#[tokio::test(flavor = "multi_thread")]
async fn invite_only_rooms_need_an_invite() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    assert_error(&server.join(&bob.access_token, &room).await, 403, "M_FORBIDDEN");
    let (status, _) = server.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200);
    let (_, member) = server.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "invite");
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    assert_error(
        &server.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_visibility_is_respected() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let a = alice.access_token.as_str();
    let room = server
        .create_room(a, json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]}))
        .await;
    server.send_text(a, &room, "before bob").await;
    server.join(&bob.access_token, &room).await;
    server.send_text(a, &room, "while bob is here").await;
    server.room_post(&bob.access_token, &room, "leave", json!({})).await;
    server.send_text(a, &room, "after bob left").await;

    let (status, page) = server.messages(&bob.access_token, &room, "dir=b&limit=50").await;
    assert_eq!(status, 200);
    let seen: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(seen, vec!["while bob is here"], "joined visibility: only what happened while joined");

    // World-readable rooms can be read by anyone, member or not.
    server.put_state(a, &room, "m.room.history_visibility", "", json!({"history_visibility": "world_readable"})).await;
    server.send_text(a, &room, "for the world").await;
    let (status, page) = server.messages(&carol.access_token, &room, "dir=b&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["chunk"][0]["content"]["body"], "for the world");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_events_are_refused() {
    let server = TestServer::start_with(|c| c.server.max_request_bytes = 1024 * 1024).await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let big = "x".repeat(70_000);
    assert_error(&server.send_text(&alice.access_token, &room, &big).await, 413, "M_TOO_LARGE");
    let not_object = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t9", enc(&room)),
            Some(&alice.access_token),
            json!("a string"),
        )
        .await;
    assert_eq!(not_object.0, 400);
    let bad_room = server.send_text(&alice.access_token, "!nonexistent:plexus.test", "hi").await;
    assert_eq!(bad_room.0, 404);
    let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=50").await;
    assert!(!page.to_string().contains(&big[..100]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn room_actions_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.enabled = true;
        c.rate_limits.registration = plexus::config::RateLimit { per_second: 100.0, burst: 100 };
        c.rate_limits.message = plexus::config::RateLimit { per_second: 0.01, burst: 3 };
    })
    .await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    for i in 0..3 {
        assert_eq!(server.send_text(&alice.access_token, &room, &format!("m{i}")).await.0, 200);
    }
    let limited = server.send_text(&alice.access_token, &room, "one too many").await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_without_a_body_are_accepted() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    // matrix-nio sends no body at all; the spec makes every field optional.
    let resp = server
        .http
        .post(server.url(&format!("/_matrix/client/v3/join/{}", enc(&room))))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, member) = server.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "join");
}
