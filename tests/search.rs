//! Server-side search and the user directory, as clients use them:
//! finding a word among thousands of messages, ranked; case and accents
//! ignored; only what the searcher may see (history visibility, redactions,
//! nothing of encrypted events); paging; filters; context around a result;
//! groupings; the index built for events stored before it existed. Then
//! the user directory: who may be found, by word prefix, and `limited`.

mod common;

use common::{TestServer, TestUser, assert_error, enc};
use futures_util::future::join_all;
use serde_json::{Value, json};

async fn search(server: &TestServer, user: &TestUser, criteria: Value, next_batch: Option<&str>) -> Value {
    let path = match next_batch {
        Some(token) => format!("/_matrix/client/v3/search?next_batch={}", enc(token)),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let (status, body) =
        server.post(&path, Some(&user.access_token), json!({"search_categories": {"room_events": criteria}})).await;
    assert_eq!(status, 200, "{body}");
    body["search_categories"]["room_events"].clone()
}

/// The bodies of the results, in order.
fn bodies(events: &Value) -> Vec<String> {
    events["results"]
        .as_array()
        .map(|r| r.iter().map(|r| r["result"]["content"]["body"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

async fn send(server: &TestServer, user: &TestUser, room: &str, text: &str) -> String {
    let (status, body) = server.send_text(&user.access_token, room, text).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn private_room(server: &TestServer, user: &TestUser) -> String {
    server.create_room(&user.access_token, json!({"preset": "private_chat"})).await
}

#[tokio::test]
async fn finds_one_message_among_two_thousand_best_match_first() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    for chunk in (0..2_000).collect::<Vec<_>>().chunks(100) {
        let texts: Vec<String> = chunk.iter().map(|i| format!("routine status report number {i}")).collect();
        join_all(texts.iter().map(|text| send(&server, &alice, &room, text))).await;
    }
    send(&server, &alice, &room, "the walrus was seen near the pier").await;
    send(&server, &alice, &room, "walrus walrus walrus: all about the walrus").await;

    let started = std::time::Instant::now();
    let found = search(&server, &alice, json!({"search_term": "walrus"}), None).await;
    let took = started.elapsed();
    assert_eq!(bodies(&found), ["walrus walrus walrus: all about the walrus", "the walrus was seen near the pier"]);
    assert_eq!(found["count"], 2);
    assert_eq!(found["highlights"], json!(["walrus"]));
    let ranks: Vec<f64> = found["results"].as_array().unwrap().iter().map(|r| r["rank"].as_f64().unwrap()).collect();
    assert!(ranks[0] > ranks[1], "ranked best first: {ranks:?}");
    assert!(found.get("next_batch").is_none());
    // Two words: both must be there.
    let found = search(&server, &alice, json!({"search_term": "report 1999"}), None).await;
    assert_eq!(bodies(&found), ["routine status report number 1999"]);
    eprintln!("search among 2,002 messages took {took:?}");
}

#[tokio::test]
async fn case_and_accents_do_not_matter() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    send(&server, &alice, &room, "Meet me at the Café Zoë, CRÈME BRÛLÉE for everyone").await;
    send(&server, &alice, &room, "nothing to see").await;
    for term in ["cafe", "CAFÉ", "zoe", "creme brulee", "Crème"] {
        let found = search(&server, &alice, json!({"search_term": term}), None).await;
        assert_eq!(bodies(&found), ["Meet me at the Café Zoë, CRÈME BRÛLÉE for everyone"], "{term}");
    }
}

#[tokio::test]
async fn a_later_member_does_not_find_what_was_said_before_they_joined_a_joined_only_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server
        .create_room(
            &alice.access_token,
            json!({"preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "joined"}}]}),
        )
        .await;
    send(&server, &alice, &room, "the secret plan").await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    send(&server, &alice, &room, "the open plan").await;

    let found = search(&server, &bob, json!({"search_term": "plan"}), None).await;
    assert_eq!(bodies(&found), ["the open plan"]);
    assert_eq!(found["count"], 1);
    let found = search(&server, &alice, json!({"search_term": "plan", "order_by": "recent"}), None).await;
    assert_eq!(bodies(&found), ["the open plan", "the secret plan"]);
}

#[tokio::test]
async fn next_batch_pages_through_every_result_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    for i in 0..25 {
        send(&server, &alice, &room, &format!("paging message {i}")).await;
    }
    for order in ["rank", "recent"] {
        let criteria = json!({"search_term": "paging", "order_by": order, "filter": {"limit": 10}});
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = search(&server, &alice, criteria.clone(), token.as_deref()).await;
            assert_eq!(page["count"], 25);
            seen.extend(bodies(&page));
            pages += 1;
            match page["next_batch"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{order}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25, "{order}: every result once: {seen:?}");
        if order == "recent" {
            assert_eq!(seen[0], "paging message 24");
            assert_eq!(seen[24], "paging message 0");
        }
    }
    let (status, body) = server
        .post(
            "/_matrix/client/v3/search?next_batch=nonsense",
            Some(&alice.access_token),
            json!({"search_categories": {"room_events": {"search_term": "paging"}}}),
        )
        .await;
    assert_error(&(status, body), 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn filters_narrow_by_room_and_sender() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let first = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let second = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    for room in [&first, &second] {
        assert_eq!(server.join(&bob.access_token, room).await.0, 200);
        send(&server, &alice, room, &format!("alice says hello in {room}")).await;
        send(&server, &bob, room, &format!("bob says hello in {room}")).await;
    }
    let found = search(&server, &alice, json!({"search_term": "hello", "filter": {"rooms": [first]}}), None).await;
    assert_eq!(found["count"], 2);
    assert!(bodies(&found).iter().all(|b| b.ends_with(&first)));
    let found = search(&server, &alice, json!({"search_term": "hello", "filter": {"not_rooms": [first]}}), None).await;
    assert_eq!(found["count"], 2);
    assert!(bodies(&found).iter().all(|b| b.ends_with(&second)));
    let found =
        search(&server, &alice, json!({"search_term": "hello", "filter": {"senders": [bob.user_id]}}), None).await;
    assert_eq!(found["count"], 2);
    assert!(bodies(&found).iter().all(|b| b.starts_with("bob")));
    let found =
        search(&server, &alice, json!({"search_term": "hello", "filter": {"not_senders": [bob.user_id]}}), None).await;
    assert!(bodies(&found).iter().all(|b| b.starts_with("alice")));
    let found = search(
        &server,
        &alice,
        json!({"search_term": "hello", "filter": {"rooms": [second], "senders": [alice.user_id]}}),
        None,
    )
    .await;
    assert_eq!(bodies(&found), [format!("alice says hello in {second}")]);
    assert!(found.get("state").is_none(), "state only when asked for");
    let found = search(
        &server,
        &alice,
        json!({"search_term": "hello", "filter": {"rooms": [second]}, "include_state": true}),
        None,
    )
    .await;
    let state = found["state"].as_object().unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), [&second]);
    assert!(state[&second].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    // Only names and topics: no message body is found.
    let found = search(&server, &alice, json!({"search_term": "hello", "keys": ["content.name"]}), None).await;
    assert_eq!(found["count"], 0);
}

#[tokio::test]
async fn redacted_and_encrypted_messages_are_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    let leaked = send(&server, &alice, &room, "my password is hunter2").await;
    send(&server, &alice, &room, "hunter2 is a fine film").await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", enc(&room), enc(&leaked)),
            Some(&alice.access_token),
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let found = search(&server, &alice, json!({"search_term": "hunter2"}), None).await;
    assert_eq!(bodies(&found), ["hunter2 is a fine film"]);

    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.encrypted/e1", enc(&room)),
            Some(&alice.access_token),
            json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "zebracipher", "sender_key": "k",
                   "device_id": "D", "session_id": "s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let found = search(&server, &alice, json!({"search_term": "zebracipher"}), None).await;
    assert_eq!(found["count"], 0);
}

#[tokio::test]
async fn results_come_with_the_events_around_them_and_profiles() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
            Some(&alice.access_token),
            json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = private_room(&server, &alice).await;
    for text in ["one", "two", "three", "the needle", "four", "five"] {
        send(&server, &alice, &room, text).await;
    }
    let criteria = json!({"search_term": "needle",
        "event_context": {"before_limit": 2, "after_limit": 1, "include_profile": true}});
    let found = search(&server, &alice, criteria, None).await;
    assert_eq!(bodies(&found), ["the needle"]);
    let context = &found["results"][0]["context"];
    let text = |events: &Value| -> Vec<String> {
        events.as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(text(&context["events_before"]), ["three", "two"]);
    assert_eq!(text(&context["events_after"]), ["four"]);
    assert!(context["start"].is_string() && context["end"].is_string());
    assert_eq!(context["profile_info"][&alice.user_id]["displayname"], "Alice Liddell");
}

#[tokio::test]
async fn groupings_count_results_per_room_and_sender() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let first = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let second = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob.access_token, &second).await.0, 200);
    for i in 0..3 {
        send(&server, &alice, &first, &format!("grouped note {i}")).await;
    }
    send(&server, &alice, &second, "grouped note by alice").await;
    send(&server, &bob, &second, "grouped note by bob").await;
    let criteria = json!({"search_term": "grouped",
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}});
    let found = search(&server, &alice, criteria, None).await;
    assert_eq!(found["count"], 5);
    let by_room = &found["groups"]["room_id"];
    assert_eq!(by_room[&first]["results"].as_array().unwrap().len(), 3);
    assert_eq!(by_room[&second]["results"].as_array().unwrap().len(), 2);
    let by_sender = &found["groups"]["sender"];
    assert_eq!(by_sender[&alice.user_id]["results"].as_array().unwrap().len(), 4);
    assert_eq!(by_sender[&bob.user_id]["results"].as_array().unwrap().len(), 1);
    assert!(by_room[&first]["order"].is_u64());
}

#[tokio::test]
async fn events_stored_before_the_index_existed_are_found() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    send(&server, &alice, &room, "an old archived memo").await;
    server.stop().await;
    // Back to the schema before search (dropping the tables of every
    // migration after it, and undoing their changes to older tables): the
    // migrations run again at start and index what is stored.
    {
        let db = rusqlite::Connection::open(server.dir.path().join("plexus.db")).unwrap();
        db.execute_batch(
            "DROP TABLE event_search; DROP TABLE event_relations; DROP TABLE reports; DROP TABLE openid_tokens;
             DROP TABLE delayed_events; DROP TABLE appservice_queue; DROP TABLE remote_media; DROP TABLE remote_device_lists; DROP TABLE device_list_updates;
             ALTER TABLE users DROP COLUMN is_guest;
             PRAGMA user_version = 9;",
        )
        .unwrap();
    }
    server.start_again().await;
    let found = search(&server, &alice, json!({"search_term": "memo"}), None).await;
    assert_eq!(bodies(&found), ["an old archived memo"]);
}

async fn set_name(server: &TestServer, user: &TestUser, name: &str) {
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&user.user_id)),
            Some(&user.access_token),
            json!({"displayname": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn directory(server: &TestServer, user: &TestUser, term: &str, limit: u64) -> Value {
    let (status, body) = server
        .post(
            "/_matrix/client/v3/user_directory/search",
            Some(&user.access_token),
            json!({"search_term": term, "limit": limit}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn found_ids(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn directory_finds_room_mates_and_public_room_members_not_strangers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let dave = server.register("dave").await;
    set_name(&server, &bob, "Bobby Tables").await;
    set_name(&server, &carol, "Carol Tabletop").await;
    set_name(&server, &dave, "Dave Tablet").await;
    // Bob shares a private room with alice; carol is alone in hers; dave
    // is in a public room alice is not in.
    let shared = private_room(&server, &alice).await;
    assert_eq!(server.room_post(&alice.access_token, &shared, "invite", json!({"user_id": bob.user_id})).await.0, 200);
    assert_eq!(server.join(&bob.access_token, &shared).await.0, 200);
    private_room(&server, &carol).await;
    server.create_room(&dave.access_token, json!({"preset": "public_chat"})).await;

    let found = directory(&server, &alice, "tab", 10).await;
    assert_eq!(found_ids(&found), [bob.user_id.clone(), dave.user_id.clone()]);
    assert_eq!(found["limited"], false);
    assert_eq!(found["results"][0]["display_name"], "Bobby Tables");
    // Word prefixes only, of names and user ids.
    assert!(found_ids(&directory(&server, &alice, "ables", 10).await).is_empty());
    assert_eq!(found_ids(&directory(&server, &alice, "BOB", 10).await), [bob.user_id.as_str()]);
    assert!(found_ids(&directory(&server, &alice, "carol", 10).await).is_empty());
    // A name changed is found under the new name.
    set_name(&server, &bob, "Robert Droptables").await;
    assert_eq!(found_ids(&directory(&server, &alice, "robert", 10).await), [bob.user_id.as_str()]);
}

/// Sytest 52user-directory/01public.pl, "Users appear/disappear from
/// directory when join_rules / history_visibility are changed" and "Users
/// stay in directory when join_rules are changed but history_visibility is
/// world_readable": a room is public while anyone may join it or read it;
/// a user sharing no room with the searcher (themself included) is found
/// only while in a public room.
#[tokio::test]
async fn directory_follows_a_rooms_join_rules_and_history_visibility() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    set_name(&server, &bob, "Bobby Tables").await;
    let room = private_room(&server, &alice).await;
    assert_eq!(server.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await.0, 200);
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    let set = |kind: &'static str, content: Value| {
        let (server, token, room) = (&server, alice.access_token.clone(), room.clone());
        async move {
            let (status, body) = server.put_state(&token, &room, kind, "", content).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let found_by = |searcher: &TestUser| {
        let (server, searcher) = (&server, searcher.clone());
        async move { found_ids(&directory(server, &searcher, "bobby", 10).await) }
    };
    let bob_only = [bob.user_id.clone()];
    // Alice shares the room; bob himself and carol do not.
    assert_eq!(found_by(&alice).await, bob_only);
    assert!(found_by(&bob).await.is_empty(), "a private room does not list one's self");
    assert!(found_by(&carol).await.is_empty());

    set("m.room.join_rules", json!({"join_rule": "public"})).await;
    assert_eq!(found_by(&carol).await, bob_only, "a public join rule lists the room's members");
    assert_eq!(found_by(&bob).await, bob_only);
    set("m.room.join_rules", json!({"join_rule": "invite"})).await;
    assert!(found_by(&carol).await.is_empty());
    assert!(found_by(&bob).await.is_empty());

    set("m.room.history_visibility", json!({"history_visibility": "world_readable"})).await;
    assert_eq!(found_by(&carol).await, bob_only, "world-readable history lists the room's members");
    set("m.room.join_rules", json!({"join_rule": "public"})).await;
    set("m.room.join_rules", json!({"join_rule": "invite"})).await;
    assert_eq!(found_by(&carol).await, bob_only, "still world-readable");
    set("m.room.history_visibility", json!({"history_visibility": "shared"})).await;
    assert!(found_by(&carol).await.is_empty());
    assert_eq!(found_by(&alice).await, bob_only);
}

#[tokio::test]
async fn directory_limit_says_when_more_matched() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    for name in ["member1", "member2", "member3"] {
        let user = server.register(name).await;
        assert_eq!(server.join(&user.access_token, &room).await.0, 200);
    }
    let found = directory(&server, &alice, "member", 2).await;
    assert_eq!(found_ids(&found).len(), 2);
    assert_eq!(found["limited"], true);
    let found = directory(&server, &alice, "member", 3).await;
    assert_eq!(found_ids(&found).len(), 3);
    assert_eq!(found["limited"], false);
}

#[tokio::test]
async fn directory_may_list_every_local_user() {
    let server = TestServer::start_with(|c| c.user_directory.search_all_users = true).await;
    let alice = server.register("alice").await;
    let carol = server.register("carol").await;
    set_name(&server, &carol, "Carol Hermit").await;
    private_room(&server, &carol).await;
    assert_eq!(found_ids(&directory(&server, &alice, "hermit", 10).await), [carol.user_id]);
}

/// Figures, not a check: `cargo test --release --test search -- --ignored
/// --nocapture`. 100,000 messages in one room, then the median time of a
/// search for a word in one message and for a word in 1% of them.
#[tokio::test]
#[ignore]
async fn search_over_a_hundred_thousand_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = private_room(&server, &alice).await;
    let started = std::time::Instant::now();
    for chunk in (0..100_000).collect::<Vec<_>>().chunks(200) {
        let texts: Vec<String> = chunk
            .iter()
            .map(|i| {
                let common = if i % 100 == 0 { " periodic" } else { "" };
                format!("message {i} about nothing in particular{common}")
            })
            .collect();
        join_all(texts.iter().map(|text| send(&server, &alice, &room, text))).await;
    }
    send(&server, &alice, &room, "a unique aardvark").await;
    eprintln!("sent 100,001 messages in {:?}", started.elapsed());
    for (term, expected) in [("aardvark", 1), ("periodic", 1_000)] {
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = std::time::Instant::now();
            let found = search(&server, &alice, json!({"search_term": term}), None).await;
            times.push(started.elapsed());
            assert_eq!(found["count"], expected);
        }
        times.sort();
        eprintln!("search for {term:?} ({expected} hits): p50 {:?}, max {:?}", times[10], times[20]);
    }
}
