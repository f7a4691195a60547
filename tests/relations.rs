//! Relations and threads as users meet them: edits, reactions, replies and
//! thread replies, their bundled aggregations wherever events are served,
//! `/relations` paging and filters, and `/threads`. Plain HTTP.

mod common;

use common::{TestServer, TestUser, enc};
use serde_json::{Value, json};

/// Sends an event of `kind`; returns its id.
async fn send(server: &TestServer, user: &TestUser, room: &str, kind: &str, content: Value) -> String {
    let txn = format!("r{}", rand::random::<u64>());
    let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room));
    let (status, body) = server.put(&path, Some(&user.access_token), content).await;
    assert_eq!(status, 200, "send {kind}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn text(server: &TestServer, user: &TestUser, room: &str, body: &str) -> String {
    send(server, user, room, "m.room.message", json!({"msgtype": "m.text", "body": body})).await
}

async fn edit(server: &TestServer, user: &TestUser, room: &str, original: &str, body: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    });
    send(server, user, room, "m.room.message", content).await
}

async fn thread_reply(server: &TestServer, user: &TestUser, room: &str, root: &str, body: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                         "m.in_reply_to": {"event_id": root}},
    });
    send(server, user, room, "m.room.message", content).await
}

async fn react(server: &TestServer, user: &TestUser, room: &str, target: &str, key: &str) -> String {
    let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}});
    send(server, user, room, "m.reaction", content).await
}

async fn redact(server: &TestServer, user: &TestUser, room: &str, event: &str) {
    let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/x{}", enc(room), enc(event), rand::random::<u64>());
    let (status, body) = server.put(&path, Some(&user.access_token), json!({})).await;
    assert_eq!(status, 200, "redact: {body}");
}

async fn event(server: &TestServer, user: &TestUser, room: &str, id: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(id));
    server.get(&path, Some(&user.access_token)).await
}

/// `/relations/{id}{suffix}` with a query string.
async fn relations(server: &TestServer, user: &TestUser, room: &str, id: &str, suffix: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v1/rooms/{}/relations/{}{suffix}", enc(room), enc(id));
    server.get(&path, Some(&user.access_token)).await
}

fn chunk_ids(body: &Value) -> Vec<&str> {
    body["chunk"].as_array().expect("chunk").iter().map(|e| e["event_id"].as_str().expect("event_id")).collect()
}

/// Alice's public room with Bob in it.
async fn room_with_bob(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    (alice, bob, room)
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_reactions_replies_and_threads_are_bundled_everywhere() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = text(&server, &alice, &room, "Tea at five?").await;
    let edited = edit(&server, &alice, &room, &root, "Tea at six?").await;
    let reaction = react(&server, &bob, &room, &root, "👍").await;
    let reply_content =
        json!({"msgtype": "m.text", "body": "Yes!", "m.relates_to": {"m.in_reply_to": {"event_id": root}}});
    let reply = send(&server, &bob, &room, "m.room.message", reply_content).await;
    let in_thread = thread_reply(&server, &bob, &room, &root, "Milk or lemon?").await;
    let reference = send(
        &server,
        &alice,
        &room,
        "m.room.message",
        json!({"msgtype": "m.text", "body": "see above", "m.relates_to": {"rel_type": "m.reference", "event_id": root}}),
    )
    .await;

    let check = |event: &Value, participated: bool| {
        let relations = &event["unsigned"]["m.relations"];
        assert_eq!(relations["m.replace"]["event_id"], edited.as_str(), "edit bundled in {event}");
        assert_eq!(relations["m.replace"]["content"]["m.new_content"]["body"], "Tea at six?");
        assert_eq!(relations["m.thread"]["count"], 1);
        assert_eq!(relations["m.thread"]["latest_event"]["event_id"], in_thread.as_str());
        assert_eq!(relations["m.thread"]["latest_event"]["content"]["body"], "Milk or lemon?");
        assert_eq!(relations["m.thread"]["current_user_participated"], participated);
        assert_eq!(relations["m.reference"]["chunk"], json!([{"event_id": reference}]));
        // The original content is served unchanged.
        assert_eq!(event["content"]["body"], "Tea at five?");
    };

    // `/event`, for the root's sender and for a thread participant.
    let (status, served) = event(&server, &alice, &room, &root).await;
    assert_eq!(status, 200);
    check(&served, true);
    let (_, served) = event(&server, &bob, &room, &root).await;
    check(&served, true);

    // `/messages`.
    let (status, page) = server.messages(&bob.access_token, &room, "dir=b&limit=20").await;
    assert_eq!(status, 200);
    let served = page["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == root.as_str()).expect("root");
    check(served, true);
    let served_reply = page["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == reply.as_str()).unwrap();
    assert_eq!(served_reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], root.as_str());
    assert!(served_reply["unsigned"].get("m.relations").is_none(), "nothing relates to the reply");

    // `/context`.
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}?limit=4", enc(&room), enc(&root));
    let (status, context) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    check(&context["event"], true);

    // `/sync` timelines.
    let filter = enc(&json!({"room": {"timeline": {"limit": 50}}}).to_string());
    let (status, sync) = server.get(&format!("/_matrix/client/v3/sync?filter={filter}"), Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().expect("timeline");
    check(timeline.iter().find(|e| e["event_id"] == root.as_str()).expect("root in sync"), true);

    // `/relations` lists every relation, newest first; the reply is not one.
    let (status, all) = relations(&server, &bob, &room, &root, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(chunk_ids(&all), [reference.as_str(), in_thread.as_str(), reaction.as_str(), edited.as_str()]);
    assert_eq!(all["chunk"][2]["content"]["m.relates_to"]["key"], "👍");

    // A reaction in the thread is listed with `recurse`.
    let nested = react(&server, &alice, &room, &in_thread, "🍋").await;
    let (_, direct) = relations(&server, &bob, &room, &root, "/m.annotation").await;
    assert_eq!(chunk_ids(&direct), [reaction.as_str()]);
    let (status, deep) = relations(&server, &bob, &room, &root, "/m.annotation?recurse=true").await;
    assert_eq!(status, 200, "{deep}");
    assert_eq!(chunk_ids(&deep), [nested.as_str(), reaction.as_str()]);
    assert!(deep["recursion_depth"].as_u64().is_some_and(|d| d >= 2), "{deep}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relations_page_and_filter_by_type() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = text(&server, &alice, &room, "Vote!").await;
    let mut reactions = Vec::new();
    for key in ["1", "2", "3", "4", "5"] {
        reactions.push(react(&server, &bob, &room, &root, key).await);
    }
    let in_thread = thread_reply(&server, &bob, &room, &root, "counting").await;

    // Two at a time, newest first, following `next_batch`.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    for _ in 0..10 {
        let (status, page) = relations(&server, &bob, &room, &root, &format!("/m.annotation{query}")).await;
        assert_eq!(status, 200, "{page}");
        assert!(chunk_ids(&page).len() <= 2);
        seen.extend(chunk_ids(&page).into_iter().map(str::to_owned));
        match page["next_batch"].as_str() {
            Some(next) => query = format!("?limit=2&from={}", enc(next)),
            None => break,
        }
    }
    let newest_first: Vec<String> = reactions.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // Forwards, oldest first.
    let (_, page) = relations(&server, &bob, &room, &root, "/m.annotation?dir=f&limit=3").await;
    assert_eq!(chunk_ids(&page), reactions[..3].iter().map(String::as_str).collect::<Vec<_>>());

    let (_, threads) = relations(&server, &bob, &room, &root, "/m.thread").await;
    assert_eq!(chunk_ids(&threads), [in_thread.as_str()]);
    let (_, typed) = relations(&server, &bob, &room, &root, "/m.annotation/m.reaction?limit=1").await;
    assert_eq!(chunk_ids(&typed), [reactions[4].as_str()]);
    let (status, none) = relations(&server, &bob, &room, &root, "/m.thread/m.reaction").await;
    assert_eq!(status, 200);
    assert!(chunk_ids(&none).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_list_the_latest_activity_first() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let carol = server.register("carol").await;
    assert_eq!(server.join(&carol.access_token, &room).await.0, 200);
    let alices = text(&server, &alice, &room, "Alice's thread").await;
    let bobs = text(&server, &bob, &room, "Bob's thread").await;
    text(&server, &alice, &room, "Not a thread").await;
    thread_reply(&server, &carol, &room, &bobs, "in Bob's").await;
    let latest = thread_reply(&server, &carol, &room, &alices, "in Alice's").await;

    let path = format!("/_matrix/client/v1/rooms/{}/threads", enc(&room));
    let (status, all) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(chunk_ids(&all), [alices.as_str(), bobs.as_str()]);
    let thread = &all["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["latest_event"]["event_id"], latest.as_str());
    assert_eq!(thread["count"], 1);
    assert_eq!(thread["current_user_participated"], false);
    assert_eq!(all["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], true);

    // One at a time.
    let (_, first) = server.get(&format!("{path}?limit=1"), Some(&bob.access_token)).await;
    assert_eq!(chunk_ids(&first), [alices.as_str()]);
    let next = first["next_batch"].as_str().expect("a next page");
    let (_, second) = server.get(&format!("{path}?limit=1&from={}", enc(next)), Some(&bob.access_token)).await;
    assert_eq!(chunk_ids(&second), [bobs.as_str()]);

    // Bob takes part only in his own thread.
    let (status, mine) = server.get(&format!("{path}?include=participated"), Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(chunk_ids(&mine), [bobs.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redacted_edit_or_thread_reply_no_longer_counts() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = text(&server, &alice, &room, "first draft").await;
    let first = edit(&server, &alice, &room, &root, "second draft").await;
    let second = edit(&server, &alice, &room, &root, "third draft").await;
    let reply_one = thread_reply(&server, &bob, &room, &root, "one").await;
    let reply_two = thread_reply(&server, &bob, &room, &root, "two").await;

    let (_, served) = event(&server, &bob, &room, &root).await;
    assert_eq!(served["unsigned"]["m.relations"]["m.replace"]["event_id"], second.as_str());
    assert_eq!(served["unsigned"]["m.relations"]["m.thread"]["count"], 2);

    redact(&server, &alice, &room, &second).await;
    redact(&server, &bob, &room, &reply_two).await;
    let (_, served) = event(&server, &bob, &room, &root).await;
    let relations = &served["unsigned"]["m.relations"];
    assert_eq!(relations["m.replace"]["event_id"], first.as_str(), "the previous edit applies again");
    assert_eq!(relations["m.replace"]["content"]["m.new_content"]["body"], "second draft");
    assert_eq!(relations["m.thread"]["count"], 1);
    assert_eq!(relations["m.thread"]["latest_event"]["event_id"], reply_one.as_str());
    let (_, listed) = relations_of(&server, &bob, &room, &root).await;
    assert!(!chunk_ids(&listed).contains(&second.as_str()), "a redacted relation is not listed");
}

async fn relations_of(server: &TestServer, user: &TestUser, room: &str, id: &str) -> (u16, Value) {
    relations(server, user, room, id, "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_by_another_user_is_not_applied() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = text(&server, &alice, &room, "Alice's words").await;
    edit(&server, &bob, &room, &root, "Bob's words").await;
    let (_, served) = event(&server, &alice, &room, &root).await;
    assert_eq!(served["content"]["body"], "Alice's words");
    assert!(served["unsigned"]["m.relations"].get("m.replace").is_none(), "{served}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relations_are_refused_to_users_who_cannot_see_the_parent() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let eve = server.register("eve").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    let root = text(&server, &alice, &room, "secret").await;
    react(&server, &alice, &room, &root, "🤫").await;

    let (event_status, event_body) = event(&server, &eve, &room, &root).await;
    let (status, body) = relations(&server, &eve, &room, &root, "").await;
    assert_eq!(status, event_status, "{body}");
    assert!(status == 403 || status == 404, "{status}");
    assert_eq!(body["errcode"], event_body["errcode"]);
    assert!(body.get("chunk").is_none());
    let (status, _) =
        server.get(&format!("/_matrix/client/v1/rooms/{}/threads", enc(&room)), Some(&eve.access_token)).await;
    assert!(status == 403 || status == 404, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thread_reply_after_leaving_is_not_bundled() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = text(&server, &alice, &room, "before Bob leaves").await;
    assert_eq!(server.room_post(&bob.access_token, &room, "leave", json!({})).await.0, 200);
    thread_reply(&server, &alice, &room, &root, "after Bob left").await;

    let (status, served) = event(&server, &bob, &room, &root).await;
    assert_eq!(status, 200, "Bob still sees what he saw: {served}");
    assert!(served["unsigned"].get("m.relations").is_none(), "{served}");
    let (_, served) = event(&server, &alice, &room, &root).await;
    assert_eq!(served["unsigned"]["m.relations"]["m.thread"]["count"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_sdk_edits_a_message_and_reads_the_edit_back() {
    use matrix_sdk::{
        room::{IncludeRelations, RelationsOptions},
        ruma::{
            api::client::room::create_room,
            events::{
                relation::RelationType,
                room::message::{ReplacementMetadata, RoomMessageEventContent},
            },
        },
    };

    let server = TestServer::start().await;
    server.register("alice").await;
    let alice = server.sdk_logged_in("alice").await;
    let room = alice.create_room(create_room::v3::Request::new()).await.expect("room created");
    let original = room.send(RoomMessageEventContent::text_plain("Helo")).await.expect("sent").response.event_id;
    let edit =
        RoomMessageEventContent::text_plain("Hello").make_replacement(ReplacementMetadata::new(original.clone(), None));
    let edit_id = room.send(edit).await.expect("edit sent").response.event_id;

    let fetched = room.event(&original, None).await.expect("the original");
    let served: Value = serde_json::from_str(fetched.raw().json().get()).expect("JSON");
    let replacement = &served["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replacement["event_id"], edit_id.as_str());
    assert_eq!(replacement["content"]["m.new_content"]["body"], "Hello");

    let options = RelationsOptions {
        include_relations: IncludeRelations::RelationsOfType(RelationType::Replacement),
        ..RelationsOptions::default()
    };
    let relations = room.relations(original, options).await.expect("relations");
    let ids: Vec<_> = relations.chunk.iter().filter_map(|e| e.event_id()).collect();
    assert_eq!(ids, [edit_id]);
}
