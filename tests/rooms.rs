//! Rooms as users meet them: create, invite, join, talk, read history,
//! directory and aliases, moderation, redaction and upgrades. The main
//! story runs through matrix-sdk; details through plain HTTP.

mod common;

use common::{PASSWORD, TestServer, assert_error, enc};
use matrix_sdk::{
    room::MessagesOptions,
    ruma::{
        OwnedRoomId,
        api::client::room::{Visibility, create_room},
        assign,
        events::room::message::RoomMessageEventContent,
    },
};
use serde_json::json;

async fn sdk_login(server: &TestServer, name: &str) -> matrix_sdk::Client {
    server.register(name).await;
    let client = server.sdk_client().await;
    client.matrix_auth().login_username(name, PASSWORD).await.expect("login");
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn alice_and_bob_talk_in_a_private_room() {
    let server = TestServer::start().await;
    let alice = sdk_login(&server, "alice").await;
    let bob = sdk_login(&server, "bob").await;
    let bob_id = bob.user_id().unwrap().to_owned();

    let request = assign!(create_room::v3::Request::new(), {
        name: Some("Tea party".to_owned()),
        topic: Some("Why is a raven like a writing desk?".to_owned()),
    });
    let room = alice.create_room(request).await.expect("room created");
    let room_id: OwnedRoomId = room.room_id().to_owned();
    room.invite_user_by_id(&bob_id).await.expect("invite");

    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins by id");
    room.send(RoomMessageEventContent::text_plain("Hello Bob")).await.expect("alice sends");
    bob_room.send(RoomMessageEventContent::text_plain("Hello Alice")).await.expect("bob sends");

    for client_room in [&room, &bob_room] {
        let page = client_room.messages(MessagesOptions::backward()).await.expect("messages");
        assert_eq!(common::page_bodies(&page), vec!["Hello Bob", "Hello Alice"]);
    }

    // Name and topic are room state that both can read.
    let bob_token = bob.access_token().unwrap();
    let (status, name) = server.get_state(&bob_token, room_id.as_str(), "m.room.name", "").await;
    assert_eq!((status, name["name"].as_str()), (200, Some("Tea party")));
    let (_, topic) = server.get_state(&bob_token, room_id.as_str(), "m.room.topic", "").await;
    assert_eq!(topic["topic"], "Why is a raven like a writing desk?");
    let (_, joined) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room_id.as_str())), Some(&bob_token))
        .await;
    let members: Vec<&String> = joined["joined"].as_object().unwrap().keys().collect();
    assert_eq!(members, vec!["@alice:plexus.test", "@bob:plexus.test"]);
    // Unset profile fields are spelled out as null, as Synapse does.
    assert_eq!(joined["joined"]["@bob:plexus.test"].get("avatar_url"), Some(&serde_json::Value::Null));
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&bob_token)).await;
    assert_eq!(rooms["joined_rooms"], json!([room_id]));
}

#[tokio::test(flavor = "multi_thread")]
async fn public_rooms_are_found_in_the_directory_and_joined_by_alias() {
    let server = TestServer::start().await;
    let alice = sdk_login(&server, "alice").await;
    let carol = sdk_login(&server, "carol").await;
    let request = assign!(create_room::v3::Request::new(), {
        name: Some("Lobby".to_owned()),
        room_alias_name: Some("lobby".to_owned()),
        visibility: Visibility::Public,
    });
    let room = alice.create_room(request).await.expect("room created");

    let listing = carol.public_rooms(None, None, None).await.expect("directory");
    assert_eq!(listing.chunk.len(), 1);
    let entry = &listing.chunk[0];
    assert_eq!(entry.room_id, room.room_id());
    assert_eq!(entry.name.as_deref(), Some("Lobby"));
    assert_eq!(entry.canonical_alias.as_ref().map(|a| a.as_str()), Some("#lobby:plexus.test"));
    assert_eq!(entry.num_joined_members, 1u32.into());

    let alias = matrix_sdk::ruma::RoomOrAliasId::parse("#lobby:plexus.test").unwrap();
    let joined = carol.join_room_by_id_or_alias(&alias, &[]).await.expect("join by alias");
    assert_eq!(joined.room_id(), room.room_id());
    joined.send(RoomMessageEventContent::text_plain("hi all")).await.expect("carol talks");

    let token = carol.access_token().unwrap();
    let (_, listing) = server
        .post("/_matrix/client/v3/publicRooms", Some(&token), json!({"filter": {"generic_search_term": "lob"}}))
        .await;
    assert_eq!(listing["chunk"][0]["num_joined_members"], 2);
    let (_, none) = server
        .post("/_matrix/client/v3/publicRooms", Some(&token), json!({"filter": {"generic_search_term": "nothing"}}))
        .await;
    assert_eq!(none["chunk"], json!([]));

    // Taking the alias again is refused; unknown aliases are 404.
    let again = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({"room_alias_name": "lobby"})).await;
    assert_error(&again, 400, "M_ROOM_IN_USE");
    let (_, other) = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await;
    let taken = server
        .put(
            &format!("/_matrix/client/v3/directory/room/{}", enc("#lobby:plexus.test")),
            Some(&token),
            json!({"room_id": other["room_id"]}),
        )
        .await;
    assert_error(&taken, 409, "M_UNKNOWN");
    assert_error(
        &server.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#nope:plexus.test")), None).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kick_ban_unban_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let a = alice.access_token.as_str();
    let b = bob.access_token.as_str();
    assert_eq!(server.join(b, &room).await.0, 200);

    let (status, _) = server.room_post(a, &room, "kick", json!({"user_id": bob.user_id, "reason": "cool down"})).await;
    assert_eq!(status, 200);
    let (_, member) = server.get_state(a, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member, json!({"membership": "leave", "reason": "cool down"}));
    assert_error(&server.send_text(b, &room, "still here?").await, 403, "M_FORBIDDEN");

    assert_eq!(server.join(b, &room).await.0, 200, "a kicked user may rejoin a public room");
    let (status, _) = server.room_post(a, &room, "ban", json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200);
    let (_, member) = server.get_state(a, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "ban");
    assert_error(&server.join(b, &room).await, 403, "M_FORBIDDEN");

    // Bob cannot ban back: he lacks the power.
    let (status, _) = server.room_post(b, &room, "ban", json!({"user_id": alice.user_id})).await;
    assert_eq!(status, 403);

    let (status, _) = server.room_post(a, &room, "unban", json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200);
    let (_, member) = server.get_state(a, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "leave");
    assert_eq!(server.join(b, &room).await.0, 200, "unbanned users may join again");
    assert_eq!(server.send_text(b, &room, "back").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redaction_strips_content_for_everyone() {
    let server = TestServer::start().await;
    let alice = sdk_login(&server, "alice").await;
    let bob = sdk_login(&server, "bob").await;
    let room = alice
        .create_room(assign!(create_room::v3::Request::new(), { invite: vec![bob.user_id().unwrap().to_owned()] }))
        .await
        .unwrap();
    let bob_room = bob.join_room_by_id(room.room_id()).await.unwrap();
    let sent = room.send(RoomMessageEventContent::text_plain("oops, my password is hunter2")).await.unwrap();
    room.redact(&sent.response.event_id, Some("leaked a secret"), None).await.expect("redact");

    for (client, room_id) in [(&alice, room.room_id()), (&bob, bob_room.room_id())] {
        let token = client.access_token().unwrap();
        let (status, event) = server
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(room_id.as_str()),
                    enc(sent.response.event_id.as_str())
                ),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(event["content"], json!({}), "content stripped for {}", client.user_id().unwrap());
        assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "leaked a secret");
        let (_, page) = server.messages(&token, room_id.as_str(), "dir=b&limit=5").await;
        let text = page.to_string();
        assert!(!text.contains("hunter2"), "no trace of the content in /messages: {text}");
    }
    // Bob may not redact Alice's messages: he lacks the power.
    let other = room.send(RoomMessageEventContent::text_plain("keep me")).await.unwrap();
    let err = bob_room.redact(&other.response.event_id, None, None).await.expect_err("forbidden");
    assert_eq!(err.as_client_api_error().map(|e| e.status_code.as_u16()), Some(403));
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrading_a_room_leaves_a_tombstone() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let a = alice.access_token.as_str();
    let old = server
        .create_room(
            a,
            json!({"name": "Old place", "room_version": "11", "room_alias_name": "place", "preset": "public_chat"}),
        )
        .await;
    let (status, up) = server.room_post(a, &old, "upgrade", json!({"new_version": "12"})).await;
    assert_eq!(status, 200, "{up}");
    let new = up["replacement_room"].as_str().unwrap();
    assert_ne!(new, old);

    let (_, tombstone) = server.get_state(a, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new);
    let (_, create) = server.get_state(a, new, "m.room.create", "").await;
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["predecessor"]["room_id"], old);
    let (_, name) = server.get_state(a, new, "m.room.name", "").await;
    assert_eq!(name["name"], "Old place", "state carried over");
    let (_, alias) =
        server.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#place:plexus.test")), None).await;
    assert_eq!(alias["room_id"], new, "the alias moved");
    let (_, join_rules) = server.get_state(a, new, "m.room.join_rules", "").await;
    assert_eq!(join_rules["join_rule"], "public");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_supported_room_version_works_and_others_are_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let all = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];
    for version in all {
        let room =
            server.create_room(&alice.access_token, json!({"room_version": version, "invite": [bob.user_id]})).await;
        assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
        assert_eq!(server.send_text(&bob.access_token, &room, "hi").await.0, 200, "v{version}");
        let (_, create) = server.get_state(&bob.access_token, &room, "m.room.create", "").await;
        assert_eq!(create["room_version"], version);
    }
    let refused =
        server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"room_version": "999"})).await;
    assert_error(&refused, 400, "M_UNSUPPORTED_ROOM_VERSION");
    let (_, caps) = server.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    let available: std::collections::BTreeSet<&str> =
        caps["capabilities"]["m.room_versions"]["available"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(available, all.into_iter().collect());
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "12");
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_are_idempotent_per_transaction_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/txn-1", enc(&room));
    let (_, first) = server.put(&path, Some(&alice.access_token), json!({"msgtype": "m.text", "body": "once"})).await;
    let (_, second) = server.put(&path, Some(&alice.access_token), json!({"msgtype": "m.text", "body": "once"})).await;
    assert_eq!(first["event_id"], second["event_id"]);
    let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=50").await;
    let onces = page["chunk"].as_array().unwrap().iter().filter(|e| e["content"]["body"] == "once").count();
    assert_eq!(onces, 1);
    // Another device with the same txn id is a different transaction.
    let (_, other) = server.login("alice", PASSWORD).await;
    let (_, third) = server
        .put(&path, Some(other["access_token"].as_str().unwrap()), json!({"msgtype": "m.text", "body": "once"}))
        .await;
    assert_ne!(first["event_id"], third["event_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_without_transaction_id_is_sent_each_time_as_synapse_does() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let other_room = server.create_room(&alice.access_token, json!({})).await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message", enc(&room));
    let body = json!({"msgtype": "m.text", "body": "no txn"});
    let (status, first) = server.post(&path, Some(&alice.access_token), body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = server.post(&path, Some(&alice.access_token), body).await;
    assert_ne!(first["event_id"], second["event_id"], "no transaction id, no deduplication");
    let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=50").await;
    let sent = page["chunk"].as_array().unwrap().iter().filter(|e| e["content"]["body"] == "no txn").count();
    assert_eq!(sent, 2);
    // The same checks as a PUT: token, JSON object content, membership.
    assert_eq!(server.post(&path, None, json!({})).await.0, 401);
    assert_error(&server.post(&path, Some(&alice.access_token), json!([1])).await, 400, "M_BAD_JSON");
    let bob = server.register("bob").await;
    assert_error(&server.post(&path, Some(&bob.access_token), json!({"body": "x"})).await, 403, "M_FORBIDDEN");
    // Redacting an event of another room from this one: 400, as Synapse.
    let (_, elsewhere) = server.send_text(&alice.access_token, &other_room, "elsewhere").await;
    let redact =
        format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", enc(&room), enc(elsewhere["event_id"].as_str().unwrap()));
    assert_error(&server.put(&redact, Some(&alice.access_token), json!({})).await, 400, "M_INVALID_PARAM");
}

#[tokio::test(flavor = "multi_thread")]
async fn context_event_members_and_timestamps() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let a = alice.access_token.as_str();
    let room = server.create_room(a, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(server.send_text(a, &room, &format!("m{i}")).await.1["event_id"].as_str().unwrap().to_owned());
    }
    let (status, ctx) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/context/{}?limit=4", enc(&room), enc(&ids[4])), Some(a)).await;
    assert_eq!(status, 200);
    assert_eq!(ctx["event"]["content"]["body"], "m4");
    let before: Vec<&str> =
        ctx["events_before"].as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap()).collect();
    let after: Vec<&str> =
        ctx["events_after"].as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap()).collect();
    assert_eq!(before, vec!["m3", "m2"]);
    assert_eq!(after, vec!["m5", "m6"]);
    assert!(ctx["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    // Sytest "/context/ on non world readable room does not work": a user
    // who may not read the room is refused (403), not told of no event.
    let carol = server.register("carol").await;
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}", enc(&room), enc(&ids[4]));
    assert_error(&server.get(&path, Some(&carol.access_token)).await, 403, "M_FORBIDDEN");
    // A member asking for an event that does not exist finds none.
    let path = format!("/_matrix/client/v3/rooms/{}/context/%24nope", enc(&room));
    assert_error(&server.get(&path, Some(a)).await, 404, "M_NOT_FOUND");

    let (_, members) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/members?membership=join", enc(&room)), Some(a)).await;
    let users: Vec<&str> =
        members["chunk"].as_array().unwrap().iter().map(|e| e["state_key"].as_str().unwrap()).collect();
    assert_eq!(users, vec!["@alice:plexus.test", "@bob:plexus.test"]);
    server.room_post(&bob.access_token, &room, "leave", json!({})).await;
    let (_, members) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/members?not_membership=join", enc(&room)), Some(a)).await;
    assert_eq!(members["chunk"][0]["state_key"], "@bob:plexus.test");
    assert_eq!(members["chunk"][0]["content"]["membership"], "leave");

    let (_, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&ids[2])), Some(a)).await;
    let ts = event["origin_server_ts"].as_u64().unwrap();
    let (status, found) =
        server.get(&format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir=f", enc(&room)), Some(a)).await;
    assert_eq!(status, 200);
    assert_eq!(found["origin_server_ts"], ts);
    assert_error(
        &server.get(&format!("/_matrix/client/v3/rooms/{}/event/%24nope", enc(&room)), Some(a)).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn knocking_and_forgetting() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server
        .create_room(&alice.access_token, json!({"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]}))
        .await;
    assert_error(&server.join(&bob.access_token, &room).await, 403, "M_FORBIDDEN");
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/knock/{}", enc(&room)),
            Some(&bob.access_token),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = server.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "knock");
    server.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    server.room_post(&bob.access_token, &room, "leave", json!({})).await;
    assert_eq!(server.room_post(&bob.access_token, &room, "forget", json!({})).await.0, 200);
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&bob.access_token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_display_name_reaches_every_room_the_user_is_in() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let first = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let second = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    for room in [&first, &second] {
        server.join(&bob.access_token, room).await;
    }
    let (status, _) = server
        .put(
            "/_matrix/client/v3/profile/@alice:plexus.test/displayname",
            Some(&alice.access_token),
            json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, 200);
    // The member events go out in the background: wait for them.
    for room in [&first, &second] {
        common::wait_until("alice's member event to carry her new name", || async {
            let (_, member) = server.get_state(&bob.access_token, room, "m.room.member", "@alice:plexus.test").await;
            member["displayname"] == "Alice Liddell" && member["membership"] == "join"
        })
        .await;
    }
    // Nothing is sent where the name is already right.
    let (_, page) = server.messages(&bob.access_token, &first, "dir=b&limit=20").await;
    let renames = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["displayname"] == "Alice Liddell")
        .count();
    assert_eq!(renames, 1);
    assert_eq!(
        page["chunk"].as_array().unwrap().iter().find(|e| e["content"]["displayname"] == "Alice Liddell").unwrap()["unsigned"]
            ["prev_content"]["membership"],
        "join"
    );
}
