//! Sync: a waiting sync wakes for new events, tokens resume without loss
//! or duplicates (also across restarts), matrix-sdk sync loops see
//! messages, typing, receipts, presence and account data, filters (stored
//! or inline) shape the response, every section is there when empty, the
//! state is the state before the timeline, lazy loading sends each member
//! once per device, and room-mates see each other's presence.

#![recursion_limit = "256"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{PASSWORD, TestServer, TestUser, enc};
use matrix_sdk::{
    config::SyncSettings,
    ruma::{
        OwnedEventId,
        api::client::receipt::create_receipt::v3::ReceiptType,
        events::{
            presence::PresenceEvent,
            receipt::{ReceiptThread, SyncReceiptEvent},
            room::message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            tag::{TagInfo, TagName},
            typing::SyncTypingEvent,
        },
    },
};
use serde_json::{Value, json};

/// Bodies of the messages in a sync response's room timeline.
fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn sync(server: &TestServer, user: &TestUser, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?{query}"), Some(&user.access_token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until `check` holds.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_sync_returns_the_message_and_tokens_resume_exactly() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let initial = sync(&server, &bob, "timeout=0").await;
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    // Start the sync first; send only once it is waiting.
    let http = server.http.clone();
    let url = server.url(&format!("/_matrix/client/v3/sync?since={since}&timeout=30000"));
    let token = bob.access_token.clone();
    let waiting =
        tokio::spawn(
            async move { http.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() },
        );
    let bob_id: matrix_sdk::ruma::OwnedUserId = bob.user_id.as_str().try_into().unwrap();
    let notifier = server.services().notifier.clone();
    wait_until("bob's sync to wait", || notifier.is_waiting(&bob_id)).await;
    server.send_text(&alice.access_token, &room, "are you there?").await;
    let woken =
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the sync returns promptly").unwrap();
    assert_eq!(timeline_bodies(&woken, &room), vec!["are you there?"]);

    // Resuming from next_batch: nothing twice...
    let next = woken["next_batch"].as_str().unwrap();
    let again = sync(&server, &bob, &format!("since={next}&timeout=0")).await;
    assert!(timeline_bodies(&again, &room).is_empty(), "no duplicates: {again}");
    // ...and nothing lost.
    for i in 0..3 {
        server.send_text(&alice.access_token, &room, &format!("m{i}")).await;
    }
    let next = again["next_batch"].as_str().unwrap();
    let more = sync(&server, &bob, &format!("since={next}&timeout=0")).await;
    assert_eq!(timeline_bodies(&more, &room), vec!["m0", "m1", "m2"]);
    let own = &more["rooms"]["join"][&room]["timeline"]["events"][0];
    assert!(own.get("room_id").is_none(), "sync events omit room_id");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_tokens_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    server.send_text(&alice.access_token, &room, "before").await;
    let first = sync(&server, &alice, "timeout=0").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    server.restart().await;
    server.send_text(&alice.access_token, &room, "after").await;
    let next = sync(&server, &alice, &format!("since={since}&timeout=0")).await;
    assert_eq!(timeline_bodies(&next, &room), vec!["after"]);
    let bad = server.get("/_matrix/client/v3/sync?since=garbage", Some(&alice.access_token)).await;
    assert_eq!(bad.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_sync_loops_see_messages_typing_receipts_presence_and_account_data() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let alice = server.sdk_client().await;
    alice.matrix_auth().login_username("alice", PASSWORD).await.unwrap();
    let bob = server.sdk_client().await;
    bob.matrix_auth().login_username("bob", PASSWORD).await.unwrap();

    let room = alice
        .create_room(matrix_sdk::ruma::assign!(
            matrix_sdk::ruma::api::client::room::create_room::v3::Request::new(),
            { invite: vec![bob.user_id().unwrap().to_owned()] }
        ))
        .await
        .unwrap();
    let bob_room = bob.join_room_by_id(room.room_id()).await.unwrap();

    #[derive(Default)]
    struct Seen {
        messages: Vec<String>,
        typing: Vec<Vec<String>>,
        receipts: Vec<OwnedEventId>,
        presence: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let s = seen.clone();
        bob.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let s = s.clone();
            async move { s.lock().unwrap().messages.push(ev.content.body().to_owned()) }
        });
        let s = seen.clone();
        bob.add_event_handler(move |ev: SyncTypingEvent| {
            let s = s.clone();
            async move { s.lock().unwrap().typing.push(ev.content.user_ids.iter().map(|u| u.to_string()).collect()) }
        });
        let s = seen.clone();
        bob.add_event_handler(move |ev: SyncReceiptEvent| {
            let s = s.clone();
            async move { s.lock().unwrap().receipts.extend(ev.content.0.keys().cloned()) }
        });
        let s = seen.clone();
        bob.add_event_handler(move |ev: PresenceEvent| {
            let s = s.clone();
            async move { s.lock().unwrap().presence.push(format!("{}:{}", ev.sender, ev.content.presence)) }
        });
    }
    let bob_sync = {
        let bob = bob.clone();
        tokio::spawn(async move { bob.sync(SyncSettings::default().timeout(Duration::from_secs(5))).await })
    };

    let sent = room.send(RoomMessageEventContent::text_plain("hello bob")).await.unwrap();
    room.typing_notice(true).await.unwrap();
    room.send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, sent.response.event_id.clone())
        .await
        .unwrap();
    let alice_token = alice.access_token().unwrap();
    let (status, _) = server
        .put(
            "/_matrix/client/v3/presence/@alice:plexus.test/status",
            Some(&alice_token),
            json!({"presence": "unavailable", "status_msg": "out for tea"}),
        )
        .await;
    assert_eq!(status, 200);

    wait_until("bob to see alice's message, typing, receipt and presence", || {
        let s = seen.lock().unwrap();
        s.messages.contains(&"hello bob".to_owned())
            && s.typing.iter().any(|t| t == &vec!["@alice:plexus.test".to_owned()])
            && s.receipts.contains(&sent.response.event_id)
            && s.presence.contains(&"@alice:plexus.test:unavailable".to_owned())
    })
    .await;

    // Room account data (a tag) reaches bob's own sync.
    bob_room.set_tag(TagName::Favorite, TagInfo::new()).await.unwrap();
    let bob_room_id = bob_room.room_id().to_owned();
    let bob2 = bob.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tags = bob2.get_room(&bob_room_id).unwrap().tags().await.unwrap();
        if tags.is_some_and(|t| t.contains_key(&TagName::Favorite)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tag never arrived by sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob_sync.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeline_limit_gives_a_gap_that_messages_fills() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let first = sync(&server, &alice, "timeout=0").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    for i in 0..20 {
        server.send_text(&alice.access_token, &room, &format!("{i}")).await;
    }
    let filter = enc(r#"{"room":{"timeline":{"limit":5}}}"#);
    let limited = sync(&server, &alice, &format!("since={since}&timeout=0&filter={filter}")).await;
    let timeline = &limited["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    assert_eq!(timeline_bodies(&limited, &room), vec!["15", "16", "17", "18", "19"]);
    let prev_batch = timeline["prev_batch"].as_str().unwrap();
    let (status, page) =
        server.messages(&alice.access_token, &room, &format!("dir=b&from={prev_batch}&to={since}&limit=50")).await;
    assert_eq!(status, 200);
    let older: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    let expected: Vec<String> = (0..15).rev().map(|i| i.to_string()).collect();
    assert_eq!(older, expected);

    // A stored filter works the same way.
    let (status, created) = server
        .post(
            "/_matrix/client/v3/user/@alice:plexus.test/filter",
            Some(&alice.access_token),
            json!({"room": {"timeline": {"limit": 2}}}),
        )
        .await;
    assert_eq!(status, 200);
    let id = created["filter_id"].as_str().unwrap();
    let (_, stored) =
        server.get(&format!("/_matrix/client/v3/user/@alice:plexus.test/filter/{id}"), Some(&alice.access_token)).await;
    assert_eq!(stored["room"]["timeline"]["limit"], 2);
    let by_id = sync(&server, &alice, &format!("timeout=0&filter={id}")).await;
    assert_eq!(timeline_bodies(&by_id, &room), vec!["18", "19"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_loading_sends_only_the_members_who_spoke() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // Named: a room without a name has its heroes' members sent too.
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Talk"})).await;
    let mut members = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let u = server.register(name).await;
        server.join(&u.access_token, &room).await;
        members.push(u);
    }
    for _ in 0..3 {
        server.send_text(&members[0].access_token, &room, "bob speaks").await;
        server.send_text(&members[1].access_token, &room, "carol speaks").await;
    }
    let filter = enc(r#"{"room":{"timeline":{"limit":4},"state":{"lazy_load_members":true}}}"#);
    let full = sync(&server, &alice, &format!("timeout=0&filter={filter}")).await;
    let state = full["rooms"]["join"][&room]["state"]["events"].as_array().unwrap();
    let mut member_keys: Vec<&str> =
        state.iter().filter(|e| e["type"] == "m.room.member").map(|e| e["state_key"].as_str().unwrap()).collect();
    member_keys.sort();
    assert_eq!(member_keys, vec!["@alice:plexus.test", "@bob:plexus.test", "@carol:plexus.test"]);
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "other state is still sent");
    let summary = &full["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_member_summary_comes_when_membership_changes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let first = sync(&server, &alice, "timeout=0").await;
    let summary = &first["rooms"]["join"][&room]["summary"];
    assert_eq!(
        (summary["m.joined_member_count"].as_u64(), summary["m.invited_member_count"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(summary["m.heroes"], json!([bob.user_id]));

    // A message changes no member: the summary is left out, the unread
    // count is not.
    server.send_text(&bob.access_token, &room, "hello").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let next = sync(&server, &alice, &format!("since={since}&timeout=0")).await;
    let joined = &next["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&next, &room), vec!["hello"]);
    assert!(joined["summary"].get("m.joined_member_count").is_none(), "{}", joined["summary"]);
    assert_eq!(joined["unread_notifications"]["notification_count"], 1);

    // A join does.
    server.join(&carol.access_token, &room).await;
    let since = next["next_batch"].as_str().unwrap().to_owned();
    let after_join = sync(&server, &alice, &format!("since={since}&timeout=0")).await;
    let summary = &after_join["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 3);
    assert_eq!(summary["m.heroes"], json!([bob.user_id, carol.user_id]));
}

#[tokio::test(flavor = "multi_thread")]
async fn invites_and_leaves_appear_in_their_sections() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let first = sync(&server, &bob, "timeout=0").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let room = server.create_room(&alice.access_token, json!({"name": "Secret garden", "invite": [bob.user_id]})).await;
    let invited = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    let invite_state = invited["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret garden"));
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite"));

    server.join(&bob.access_token, &room).await;
    let since = invited["next_batch"].as_str().unwrap().to_owned();
    let joined = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert!(joined["rooms"]["join"][&room]["timeline"]["events"].is_array(), "a newly joined room comes in full");
    assert!(joined["rooms"]["invite"].get(&room).is_none());

    server.room_post(&alice.access_token, &room, "kick", json!({"user_id": bob.user_id})).await;
    let since = joined["next_batch"].as_str().unwrap().to_owned();
    let left = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    let events = left["rooms"]["leave"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["content"]["membership"], "leave");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invite_shows_who_invited() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id));
    server.put(&path, Some(&alice.access_token), json!({"displayname": "Alice Liddell"})).await;
    // A direct chat has no name: clients name the invite after the inviter.
    let room = server.create_room(&alice.access_token, json!({"is_direct": true, "invite": [bob.user_id]})).await;

    let invited = sync(&server, &bob, "timeout=0").await;
    let invite_state = invited["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    let member = |user: &str| {
        invite_state
            .iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
            .unwrap_or_else(|| panic!("no membership of {user} in {invite_state:?}"))
    };
    let inviter = member(&alice.user_id);
    assert_eq!(inviter["content"]["membership"], "join");
    assert_eq!(inviter["content"]["displayname"], "Alice Liddell");
    let own = member(&bob.user_id);
    assert_eq!((&own["content"]["membership"], &own["sender"]), (&json!("invite"), &json!(alice.user_id)));
    assert_eq!(own["content"]["is_direct"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_receipts_and_read_markers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let (_, sent) = server.send_text(&alice.access_token, &room, "read me").await;
    let event = sent["event_id"].as_str().unwrap();
    let unread = sync(&server, &bob, "timeout=0").await;
    assert_eq!(unread["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1);
    let since = unread["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room)),
            Some(&bob.access_token),
            json!({"m.fully_read": event, "m.read.private": event}),
        )
        .await;
    assert_eq!(status, 200);
    let bob_view = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    let joined = &bob_view["rooms"]["join"][&room];
    assert_eq!(joined["unread_notifications"]["notification_count"], 0);
    assert_eq!(joined["account_data"]["events"][0]["type"], "m.fully_read");
    assert_eq!(joined["account_data"]["events"][0]["content"]["event_id"], event);
    let receipts = joined["ephemeral"]["events"].as_array().unwrap();
    assert!(receipts.iter().any(|e| e["content"][event]["m.read.private"]["@bob:plexus.test"].is_object()));
    let alice_view = sync(&server, &alice, "timeout=0").await;
    let alice_ephemeral = alice_view["rooms"]["join"][&room]["ephemeral"].to_string();
    assert!(!alice_ephemeral.contains("m.read.private"), "private receipts stay private: {alice_ephemeral}");
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_off_answers_but_streams_nothing() {
    let server = TestServer::start_with(|c| c.presence.enabled = false).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let (status, _) = server
        .put(
            "/_matrix/client/v3/presence/@alice:plexus.test/status",
            Some(&alice.access_token),
            json!({"presence": "online"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, presence) =
        server.get("/_matrix/client/v3/presence/@alice:plexus.test/status", Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(presence["presence"], "offline");
    let bob_sync = sync(&server, &bob, "timeout=0&set_presence=online").await;
    assert!(bob_sync["presence"]["events"].as_array().is_none_or(|e| e.is_empty()), "{bob_sync}");
}

#[tokio::test(flavor = "multi_thread")]
async fn account_data_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let path = "/_matrix/client/v3/user/@alice:plexus.test/account_data/org.example.settings";
    let (status, _) = server.put(path, Some(&alice.access_token), json!({"theme": "dark"})).await;
    assert_eq!(status, 200);
    let (_, got) = server.get(path, Some(&alice.access_token)).await;
    assert_eq!(got, json!({"theme": "dark"}));
    let synced = sync(&server, &alice, "timeout=0").await;
    let events = synced["account_data"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "org.example.settings" && e["content"]["theme"] == "dark"));
    let bob = server.register("bob").await;
    let forbidden = server.get(path, Some(&bob.access_token)).await;
    assert_eq!(forbidden.0, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_counts_follow_new_messages_redactions_and_receipts() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let count = |v: &Value| v["rooms"]["join"][&room]["unread_notifications"]["notification_count"].clone();
    server.send_text(&alice.access_token, &room, "one").await;
    let first = sync(&server, &bob, "timeout=0").await;
    assert_eq!(count(&first), 1);
    // Later syncs count on from the earlier count.
    let (_, two) = server.send_text(&alice.access_token, &room, "two").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let second = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(count(&second), 2);
    // A redacted message no longer counts.
    let two = two["event_id"].as_str().unwrap();
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", enc(&room), enc(two)),
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let since = second["next_batch"].as_str().unwrap().to_owned();
    let third = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(count(&third), 1);
    // Bob's own messages never count; a read receipt resets the count.
    let (_, own) = server.send_text(&bob.access_token, &room, "mine").await;
    let since = third["next_batch"].as_str().unwrap().to_owned();
    let fourth = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(count(&fourth), 1);
    let own = own["event_id"].as_str().unwrap();
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(own)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    server.send_text(&alice.access_token, &room, "three").await;
    let since = fourth["next_batch"].as_str().unwrap().to_owned();
    let fifth = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(count(&fifth), 1);
    let fresh = sync(&server, &bob, "timeout=0").await;
    assert_eq!(count(&fresh), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_sync_answers_when_the_server_stops() {
    let mut server = TestServer::start().await;
    let bob = server.register("bob").await;
    let initial = sync(&server, &bob, "timeout=0").await;
    let since = initial["next_batch"].as_str().unwrap().to_owned();
    let http = server.http.clone();
    let url = server.url(&format!("/_matrix/client/v3/sync?since={since}&timeout=300000"));
    let token = bob.access_token.clone();
    let held = tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap().status() });
    let bob_id: matrix_sdk::ruma::OwnedUserId = bob.user_id.as_str().try_into().unwrap();
    let notifier = server.services().notifier.clone();
    wait_until("bob's sync to wait", || notifier.is_waiting(&bob_id)).await;
    // Stopping does not wait out the five-minute long-poll: it answers.
    tokio::time::timeout(Duration::from_secs(60), server.stop()).await.expect("the server stops");
    let status = tokio::time::timeout(Duration::from_secs(10), held).await.expect("the sync answered").unwrap();
    assert_eq!(status, 200);
}

/// The `next_batch` of a sync response.
fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The `(type, state_key)` of each event of a joined room's `state`, sorted.
fn state_keys(sync: &Value, room: &str) -> Vec<(String, String)> {
    let events = sync["rooms"]["join"][room]["state"]["events"].as_array().expect("state.events is a list");
    let mut keys: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned()))
        .collect();
    keys.sort();
    keys
}

/// The state keys of the `m.room.member` events of a joined room's `state`.
fn state_members(sync: &Value, room: &str) -> Vec<String> {
    state_keys(sync, room).into_iter().filter(|(kind, _)| kind == "m.room.member").map(|(_, key)| key).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_section_is_there_when_empty() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    let left = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    server.join(&bob.access_token, &left).await;
    let before_leave = sync(&server, &bob, "timeout=0").await;
    server.room_post(&bob.access_token, &left, "leave", json!({})).await;
    let invited = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;

    let first = sync(&server, &bob, "timeout=0").await;
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], false, "{joined}");
    assert!(joined["timeline"]["events"].is_array() && joined["timeline"]["prev_batch"].is_string());
    for section in ["state", "ephemeral", "account_data"] {
        assert!(joined[section]["events"].is_array(), "{section} in {joined}");
    }
    assert_eq!(joined["unread_notifications"], json!({"notification_count": 0, "highlight_count": 0}));
    assert!(joined["summary"].is_object(), "{joined}");
    assert!(first["rooms"]["invite"][&invited]["invite_state"]["events"].is_array());
    for section in ["presence", "account_data", "to_device"] {
        assert!(first[section]["events"].is_array(), "{section} in {first}");
    }
    assert!(first["device_one_time_keys_count"].is_object(), "{first}");

    // An incremental sync with nothing new: every section, empty.
    let since = next_batch(&first);
    let quiet = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(quiet["rooms"], json!({"join": {}, "invite": {}, "leave": {}, "knock": {}}));
    assert_eq!(quiet["device_lists"], json!({"changed": [], "left": []}));
    assert_eq!(quiet["to_device"], json!({"events": []}));
    assert_eq!(quiet["account_data"], json!({"events": []}));
    assert_eq!(quiet["presence"], json!({"events": []}));
    assert_eq!(quiet["device_one_time_keys_count"], json!({"signed_curve25519": 0}));

    // A message: the room's empty sections are there too.
    server.send_text(&alice.access_token, &room, "hi").await;
    let news = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    let joined = &news["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], false);
    assert!(joined["timeline"]["prev_batch"].is_string());
    assert_eq!(joined["state"], json!({"events": []}));
    assert_eq!(joined["account_data"], json!({"events": []}));
    assert!(joined["ephemeral"]["events"].is_array());
    assert_eq!(joined["unread_notifications"]["notification_count"], 1);
    assert!(joined["summary"].is_object());

    // A room left: its timeline up to the leave, its state and account data.
    let since = next_batch(&before_leave);
    let after_leave = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    let gone = &after_leave["rooms"]["leave"][&left];
    assert_eq!(gone["timeline"]["limited"], false, "{gone}");
    assert!(gone["timeline"]["prev_batch"].is_string());
    assert_eq!(gone["timeline"]["events"].as_array().unwrap().last().unwrap()["content"]["membership"], "leave");
    assert_eq!(gone["state"], json!({"events": []}), "the timeline has the leave: no state before it changed");
    assert_eq!(gone["account_data"], json!({"events": []}));
}

#[tokio::test(flavor = "multi_thread")]
async fn state_is_the_state_before_the_timeline() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    server.put_state(&alice.access_token, &room, "a.madeup.test.state", "", json!({"my_key": 1})).await;

    // The state event is in the timeline, so not in the state (Sytest:
    // "State is included in the timeline in the initial sync").
    let filter =
        enc(r#"{"room":{"timeline":{"types":["a.madeup.test.state"]},"state":{"types":["a.madeup.test.state"]}}}"#);
    let first = sync(&server, &alice, &format!("timeout=0&filter={filter}")).await;
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(joined["state"], json!({"events": []}), "{joined}");
    assert_eq!(joined["timeline"]["events"][0]["content"]["my_key"], 1);

    // Without a filter, no event is in both.
    let full = sync(&server, &alice, "timeout=0&filter={\"room\":{\"timeline\":{\"limit\":3}}}").await;
    let joined = &full["rooms"]["join"][&room];
    let ids = |section: &str| -> Vec<String> {
        joined[section]["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().into()).collect()
    };
    let (state, timeline) = (ids("state"), ids("timeline"));
    assert_eq!(timeline.len(), 3);
    assert!(state.iter().all(|id| !timeline.contains(id)), "state {state:?} repeats the timeline {timeline:?}");
    assert!(state_keys(&full, &room).contains(&("m.room.create".into(), String::new())));
    assert!(!state_keys(&full, &room).contains(&("a.madeup.test.state".into(), String::new())));

    // A gappy sync: the state that changed in the gap, not what the
    // timeline has (Sytest: "Changes to state are included in an gapped
    // incremental sync").
    let filter = enc(
        r#"{"room":{"timeline":{"types":["a.made.up.filler.type"],"limit":1},"state":{"types":["a.madeup.test.state"]}}}"#,
    );
    server.put_state(&alice.access_token, &room, "a.madeup.test.state", "changes", json!({"my_key": 1})).await;
    server.put_state(&alice.access_token, &room, "a.madeup.test.state", "stays", json!({"my_key": 1})).await;
    let before = sync(&server, &alice, &format!("timeout=0&filter={filter}")).await;
    assert_eq!(state_keys(&before, &room).len(), 3, "{}", before["rooms"]["join"][&room]);
    server.put_state(&alice.access_token, &room, "a.madeup.test.state", "changes", json!({"my_key": 2})).await;
    for i in 0..3 {
        let path = format!("/_matrix/client/v3/rooms/{}/send/a.made.up.filler.type/f{i}", enc(&room));
        server.put(&path, Some(&alice.access_token), json!({"filler": i})).await;
    }
    let since = next_batch(&before);
    let gappy = sync(&server, &alice, &format!("since={since}&timeout=0&filter={filter}")).await;
    let joined = &gappy["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(joined["timeline"]["events"][0]["content"]["filler"], 2);
    let state = joined["state"]["events"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!((&state[0]["state_key"], &state[0]["content"]["my_key"]), (&json!("changes"), &json!(2)));

    // `full_state` on an incremental sync: all of it again.
    let full = sync(&server, &alice, &format!("since={since}&timeout=0&filter={filter}&full_state=true")).await;
    let keys: Vec<String> = state_keys(&full, &room).into_iter().map(|(_, key)| key).collect();
    assert_eq!(keys, vec!["", "changes", "stays"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inline_filter_is_applied_as_a_stored_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"name": "Filters"})).await;
    server.send_text(&alice.access_token, &room, "one").await;
    server.send_text(&alice.access_token, &room, "two").await;
    let definition = json!({"room": {"timeline": {"limit": 1}, "state": {"types": ["m.room.member", "m.room.name"]}}});
    let (status, created) = server
        .post("/_matrix/client/v3/user/@alice:plexus.test/filter", Some(&alice.access_token), definition.clone())
        .await;
    assert_eq!(status, 200);
    let id = created["filter_id"].as_str().unwrap();

    let by_id = sync(&server, &alice, &format!("timeout=0&filter={id}")).await;
    // Written as a client may write it: the JSON as it is in the query.
    let inline = sync(&server, &alice, &format!("timeout=0&filter={definition}")).await;
    let encoded = sync(&server, &alice, &format!("timeout=0&filter={}", enc(&definition.to_string()))).await;
    for response in [&by_id, &inline, &encoded] {
        assert_eq!(timeline_bodies(response, &room), vec!["two"], "{response}");
        assert_eq!(response["rooms"]["join"][&room]["timeline"]["limited"], true);
        assert_eq!(
            state_keys(response, &room),
            vec![("m.room.member".into(), alice.user_id.clone()), ("m.room.name".into(), String::new())]
        );
    }
    let without_ages = |v: &Value| {
        let mut room = v["rooms"]["join"][&room].clone();
        for section in ["timeline", "state"] {
            for event in room[section]["events"].as_array_mut().unwrap() {
                event["unsigned"].as_object_mut().map(|u| u.remove("age"));
            }
        }
        room
    };
    assert_eq!(without_ages(&inline), without_ages(&by_id));

    // Sytest: "Can pass a JSON filter as a query parameter": the member
    // events only, and with a limit of 0, no timeline events.
    let filter = enc(r#"{"room":{"state":{"types":["m.room.member"]},"timeline":{"limit":0}}}"#);
    let bare = sync(&server, &alice, &format!("timeout=0&filter={filter}")).await;
    let joined = &bare["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["events"], json!([]), "{joined}");
    assert_eq!(state_keys(&bare, &room), vec![("m.room.member".into(), alice.user_id.clone())]);

    // A filter that is not JSON of a filter is refused as such.
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/sync?timeout=0&filter={}", enc("{\"room\":")), Some(&alice.access_token))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_loading_sends_each_member_once_and_the_gap_in_full() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Lazy"})).await;
    let mut users = std::collections::HashMap::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let user = server.register(name).await;
        if name != "dave" {
            server.join(&user.access_token, &room).await;
        }
        users.insert(name, user);
    }
    let id = |name: &str| users[name].user_id.clone();
    let say = |name: &'static str, times: usize| {
        let (server, token, room) = (&server, users[name].access_token.clone(), room.clone());
        async move {
            for i in 0..times {
                server.send_text(&token, &room, &format!("{name} {i}")).await;
            }
        }
    };
    let lazy = enc(r#"{"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true}}}"#);
    let redundant =
        enc(r#"{"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true,"include_redundant_members":true}}}"#);
    let next = |since: &Value, filter: &str| format!("since={}&timeout=0&filter={filter}", next_batch(since));

    // Initial: the user and the timeline's senders (Sytest: "The only
    // membership state included in an initial sync is for all the
    // senders in the timeline").
    say("bob", 5).await;
    let initial = sync(&server, &alice, &format!("timeout=0&filter={lazy}")).await;
    assert_eq!(state_members(&initial, &room), vec![alice.user_id.clone(), id("bob")]);

    // Incremental: only members the device was not sent yet.
    say("carol", 1).await;
    let lost = sync(&server, &alice, &next(&initial, &lazy)).await;
    assert_eq!(state_members(&lost, &room), vec![id("carol")]);
    // A response the client did not sync on from (lost on the way) does
    // not count as sent.
    let carol_speaks = sync(&server, &alice, &next(&initial, &lazy)).await;
    assert_eq!(state_members(&carol_speaks, &room), vec![id("carol")]);
    let quiet = sync(&server, &alice, &next(&carol_speaks, &lazy)).await;
    assert_eq!(quiet["rooms"]["join"], json!({}), "nothing new, no state: {quiet}");
    say("bob", 1).await;
    say("carol", 1).await;
    let known = sync(&server, &alice, &next(&quiet, &lazy)).await;
    assert_eq!(timeline_bodies(&known, &room), vec!["bob 0", "carol 0"]);
    assert_eq!(state_members(&known, &room), Vec::<String>::new(), "no redundant members");
    // ...unless asked for.
    say("bob", 1).await;
    say("carol", 1).await;
    let again = sync(&server, &alice, &next(&known, &redundant)).await;
    assert_eq!(state_members(&again, &room), vec![id("bob"), id("carol")]);

    // Gappy: every membership that changed in the gap, and the members of
    // new speakers (Sytest: "Members from the gap are included in gappy
    // incr LL sync").
    server.join(&users["dave"].access_token, &room).await;
    say("erin", 6).await;
    let gappy = sync(&server, &alice, &next(&again, &lazy)).await;
    assert_eq!(gappy["rooms"]["join"][&room]["timeline"]["limited"], true);
    assert_eq!(state_members(&gappy, &room), vec![id("dave"), id("erin")]);
    // A leave in the gap comes even though the device has the member
    // (Sytest: "Gapped incremental syncs include all state changes").
    server.room_post(&users["dave"].access_token, &room, "leave", json!({})).await;
    say("erin", 6).await;
    let left = sync(&server, &alice, &next(&gappy, &lazy)).await;
    let state = left["rooms"]["join"][&room]["state"]["events"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!((&state[0]["state_key"], &state[0]["content"]["membership"]), (&json!(id("dave")), &json!("leave")));

    // A new initial sync starts afresh, and so does another device.
    let fresh = sync(&server, &alice, &format!("timeout=0&filter={lazy}")).await;
    assert_eq!(state_members(&fresh, &room), vec![alice.user_id.clone(), id("erin")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lazy_loading_sends_the_heroes_of_a_room_without_a_name() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let unnamed = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let named = server.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Named"})).await;
    for room in [&unnamed, &named] {
        server.join(&bob.access_token, room).await;
        server.join(&carol.access_token, room).await;
        server.send_text(&bob.access_token, room, "only bob speaks").await;
    }
    let filter = enc(r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}"#);
    let initial = sync(&server, &alice, &format!("timeout=0&filter={filter}")).await;
    assert_eq!(initial["rooms"]["join"][&unnamed]["summary"]["m.heroes"], json!([bob.user_id, carol.user_id]));
    assert_eq!(state_members(&initial, &unnamed), vec![alice.user_id.clone(), bob.user_id.clone(), carol.user_id]);
    assert_eq!(state_members(&initial, &named), vec![alice.user_id, bob.user_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_changes_reach_the_next_incremental_sync_of_room_mates() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let bob_presence = |sync: &Value| -> Vec<Value> {
        sync["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["sender"] == json!(bob.user_id))
            .map(|e| e["content"].clone())
            .collect()
    };
    let first = sync(&server, &alice, "timeout=0").await;
    let since = next_batch(&sync(&server, &alice, &format!("since={}&timeout=0", next_batch(&first))).await);

    // PUT /presence/{userId}/status.
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id));
    let (status, _) =
        server.put(&path, Some(&bob.access_token), json!({"presence": "unavailable", "status_msg": "lunch"})).await;
    assert_eq!(status, 200);
    let after_put = sync(&server, &alice, &format!("since={since}&timeout=0")).await;
    let seen = bob_presence(&after_put);
    assert_eq!(seen.len(), 1, "{after_put}");
    assert_eq!((&seen[0]["presence"], &seen[0]["status_msg"]), (&json!("unavailable"), &json!("lunch")));
    assert_eq!(after_put["presence"]["events"][0]["type"], "m.presence");

    // `set_presence` on /sync, seen by a sync already waiting.
    let since = next_batch(&after_put);
    let http = server.http.clone();
    let url = server.url(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000"));
    let token = alice.access_token.clone();
    let waiting =
        tokio::spawn(
            async move { http.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() },
        );
    let alice_id: matrix_sdk::ruma::OwnedUserId = alice.user_id.as_str().try_into().unwrap();
    let notifier = server.services().notifier.clone();
    wait_until("alice's sync to wait", || notifier.is_waiting(&alice_id)).await;
    sync(&server, &bob, "timeout=0&set_presence=online").await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the sync returns").unwrap();
    let seen = bob_presence(&woken);
    assert_eq!(seen.len(), 1, "{woken}");
    assert_eq!(seen[0]["presence"], "online");
    assert_eq!(seen[0]["currently_active"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_room_mates_get_each_others_presence() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let presence_of = |sync: &Value, user: &str| -> Vec<Value> {
        let events = sync["presence"]["events"].as_array().unwrap();
        events.iter().filter(|e| e["sender"] == json!(user)).map(|e| e["content"].clone()).collect()
    };
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    let (status, _) =
        server.put(&path, Some(&alice.access_token), json!({"presence": "online", "status_msg": "here"})).await;
    assert_eq!(status, 200);
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    // `set_presence=offline` leaves presence alone: Alice stays online.
    let alice_before = sync(&server, &alice, "timeout=0&set_presence=offline").await;
    assert_eq!(presence_of(&alice_before, &alice.user_id)[0]["presence"], "online");
    let bob_before = sync(&server, &bob, "timeout=0&set_presence=offline").await;
    assert!(presence_of(&bob_before, &alice.user_id).is_empty(), "no room shared yet");

    server.join(&bob.access_token, &room).await;
    // Bob learns Alice's presence, though it changed before his token
    // (Sytest: "Newly joined room includes presence in incremental sync")...
    let bob_after =
        sync(&server, &bob, &format!("since={}&timeout=0&set_presence=offline", next_batch(&bob_before))).await;
    let seen = presence_of(&bob_after, &alice.user_id);
    assert_eq!(seen.len(), 1, "{bob_after}");
    assert_eq!((&seen[0]["presence"], &seen[0]["status_msg"]), (&json!("online"), &json!("here")));
    let bob_again =
        sync(&server, &bob, &format!("since={}&timeout=0&set_presence=offline", next_batch(&bob_after))).await;
    assert_eq!(bob_again["presence"], json!({"events": []}), "once");
    // ...and Alice Bob's, who never was online (Sytest: "Get presence for
    // newly joined members in incremental sync").
    let alice_after = sync(&server, &alice, &format!("since={}&timeout=0", next_batch(&alice_before))).await;
    assert_eq!(presence_of(&alice_after, &bob.user_id), vec![json!({"presence": "offline"})], "{alice_after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_joined_and_left_between_syncs_comes_with_its_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.put_state(&alice.access_token, &room, "a.madeup.test.state", "", json!({"my_key": 1})).await;
    let filter =
        enc(r#"{"room":{"timeline":{"types":[]},"state":{"types":["a.madeup.test.state"]},"include_leave":true}}"#);
    let invited = sync(&server, &bob, &format!("timeout=0&filter={filter}")).await;
    server.join(&bob.access_token, &room).await;
    server.room_post(&bob.access_token, &room, "leave", json!({})).await;
    // Sytest: "When user joins and leaves a room in the same batch, the
    // full state is still included in the next sync".
    let left = sync(&server, &bob, &format!("since={}&timeout=0&filter={filter}", next_batch(&invited))).await;
    let state = left["rooms"]["leave"][&room]["state"]["events"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{left}");
    assert_eq!((&state[0]["type"], &state[0]["content"]["my_key"]), (&json!("a.madeup.test.state"), &json!(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn account_data_filters_keep_only_their_types() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let room = server.create_room(&alice.access_token, json!({"name": "Data"})).await;
    let user = enc(&alice.user_id);
    for (kind, content) in [("my.test.type", "cats"), ("other.type", "dogs")] {
        let global = format!("/_matrix/client/v3/user/{user}/account_data/{kind}");
        assert_eq!(server.put(&global, token, json!({"v": content})).await.0, 200);
        let in_room = format!("/_matrix/client/v3/user/{user}/rooms/{}/account_data/{kind}", enc(&room));
        assert_eq!(server.put(&in_room, token, json!({"v": content})).await.0, 200);
    }
    let filter =
        json!({"account_data": {"types": ["my.test.type"]}, "room": {"account_data": {"not_types": ["other.*"]}}});
    let response = sync(&server, &alice, &format!("timeout=0&filter={}", enc(&filter.to_string()))).await;
    let types = |events: &Value| -> Vec<String> {
        events.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(types(&response["account_data"]["events"]), ["my.test.type"], "no push rules either: {response}");
    assert_eq!(types(&response["rooms"]["join"][&room]["account_data"]["events"]), ["my.test.type"]);
    // Without a filter, everything (and the default push rules).
    let all = sync(&server, &alice, "timeout=0").await;
    let global = types(&all["account_data"]["events"]);
    assert!(global.contains(&"other.type".to_owned()) && global.contains(&"m.push_rules".to_owned()), "{global:?}");
}
