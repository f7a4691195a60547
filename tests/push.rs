//! Push rules and notification counts, as clients use them: the default
//! ruleset, rules that mute a room or highlight a keyword, intentional
//! mentions, receipts that reset counts, thread counts, and
//! `GET /notifications`.

mod common;

use common::{TestServer, TestUser, assert_error, enc};
use serde_json::{Value, json};

async fn sync(server: &TestServer, user: &TestUser, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?{query}"), Some(&user.access_token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn counts(sync: &Value, room: &str) -> (u64, u64) {
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (unread["notification_count"].as_u64().unwrap_or(u64::MAX), unread["highlight_count"].as_u64().unwrap_or(u64::MAX))
}

async fn send(server: &TestServer, user: &TestUser, room: &str, content: Value) -> String {
    let txn = format!("{}", rand::random::<u64>());
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
            Some(&user.access_token),
            content,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

/// A room of three (alice, bob, carol): group-room rules apply.
async fn group_room(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    server.join(&carol.access_token, &room).await;
    (alice, bob, room)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_user_starts_with_the_server_default_rules() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let (status, rules) = server.get("/_matrix/client/v3/pushrules/", Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{rules}");
    let overrides = rules["global"]["override"].as_array().unwrap();
    assert_eq!(overrides[0]["rule_id"], ".m.rule.master");
    assert_eq!(overrides[0]["enabled"], false);
    assert!(overrides.iter().any(|r| r["rule_id"] == ".m.rule.is_user_mention"));
    let underrides = rules["global"]["underride"].as_array().unwrap();
    assert!(underrides.iter().any(|r| r["rule_id"] == ".m.rule.message"));

    let (status, global) = server.get("/_matrix/client/v3/pushrules/global/", Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(global, rules["global"]);

    // The same rules come as account data in the first sync.
    let first = sync(&server, &bob, "timeout=0").await;
    let events = first["account_data"]["events"].as_array().unwrap();
    let pushed = events.iter().find(|e| e["type"] == "m.push_rules").expect("m.push_rules in sync");
    assert_eq!(pushed["content"]["global"], rules["global"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_added_placed_enabled_changed_and_deleted() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let token = Some(bob.access_token.as_str());
    let base = "/_matrix/client/v3/pushrules/global";
    let rule = |id: &str| json!({"pattern": id, "actions": ["notify"]});
    assert_eq!(server.put(&format!("{base}/content/cake"), token, rule("cake")).await.0, 200);
    assert_eq!(server.put(&format!("{base}/content/pie?before=cake"), token, rule("pie")).await.0, 200);
    let (_, rules) = server.get("/_matrix/client/v3/pushrules/", token).await;
    let content: Vec<&str> =
        rules["global"]["content"].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
    assert_eq!(content[..2], ["pie", "cake"]);

    let (status, got) = server.get(&format!("{base}/content/cake"), token).await;
    assert_eq!(status, 200);
    assert_eq!((got["pattern"].as_str(), got["default"].as_bool()), (Some("cake"), Some(false)));

    assert_eq!(server.put(&format!("{base}/content/cake/enabled"), token, json!({"enabled": false})).await.0, 200);
    let (_, enabled) = server.get(&format!("{base}/content/cake/enabled"), token).await;
    assert_eq!(enabled, json!({"enabled": false}));
    let actions = json!({"actions": ["notify", {"set_tweak": "highlight"}]});
    assert_eq!(server.put(&format!("{base}/content/cake/actions"), token, actions.clone()).await.0, 200);
    assert_eq!(server.get(&format!("{base}/content/cake/actions"), token).await.1, actions);

    let (status, _) = server.request(reqwest::Method::DELETE, &format!("{base}/content/cake"), token, None).await;
    assert_eq!(status, 200);
    assert_error(&server.get(&format!("{base}/content/cake"), token).await, 404, "M_NOT_FOUND");

    // The spec's errors, and nothing changed by them.
    let (_, before) = server.get("/_matrix/client/v3/pushrules/", token).await;
    assert_error(&server.put(&format!("{base}/content/x?after=nope"), token, rule("x")).await, 404, "M_NOT_FOUND");
    let dotted = json!({"actions": [], "conditions": []});
    assert_error(&server.put(&format!("{base}/override/.m.custom"), token, dotted).await, 400, "M_INVALID_PARAM");
    let master = server.request(reqwest::Method::DELETE, &format!("{base}/override/.m.rule.master"), token, None).await;
    assert_error(&master, 400, "M_INVALID_PARAM");
    assert_error(&server.get(&format!("{base}/room/nope/enabled"), token).await, 404, "M_NOT_FOUND");
    let bad_conditions = json!({"actions": ["notify"], "conditions": "not a list"});
    assert_eq!(server.put(&format!("{base}/override/odd"), token, bad_conditions).await.0, 400);
    let (_, after) = server.get("/_matrix/client/v3/pushrules/", token).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_highlights_and_a_receipt_resets_the_counts() {
    let server = TestServer::start().await;
    let (alice, bob, room) = group_room(&server).await;
    send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "hello all"})).await;
    let mention = send(
        &server,
        &alice,
        &room,
        json!({"msgtype": "m.text", "body": "bob, look", "m.mentions": {"user_ids": [bob.user_id]}}),
    )
    .await;
    let first = sync(&server, &bob, "timeout=0").await;
    assert_eq!(counts(&first, &room), (2, 1));
    // Alice's own messages do not count for her.
    assert_eq!(counts(&sync(&server, &alice, "timeout=0").await, &room), (0, 0));

    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&mention)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let since = first["next_batch"].as_str().unwrap();
    let after = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(counts(&after, &room), (0, 0));

    // GET /notifications lists both, newest first, now read.
    let (status, listed) = server.get("/_matrix/client/v3/notifications", Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{listed}");
    let notifications = listed["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 2);
    assert_eq!(notifications[0]["event"]["event_id"], mention.as_str());
    assert_eq!(notifications[0]["event"]["content"]["body"], "bob, look");
    assert_eq!(notifications[0]["room_id"], room.as_str());
    assert_eq!(notifications[0]["read"], true);
    assert_eq!(notifications[0].get("profile_tag"), Some(&Value::Null), "spelled out, as Synapse does");
    assert!(notifications[0]["actions"].as_array().unwrap().iter().any(|a| a["set_tweak"] == "highlight"));
    let (_, highlights) = server.get("/_matrix/client/v3/notifications?only=highlight", Some(&bob.access_token)).await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
    let (_, page) = server.get("/_matrix/client/v3/notifications?limit=1", Some(&bob.access_token)).await;
    assert_eq!(page["notifications"][0]["event"]["event_id"], mention.as_str());
    let next = page["next_token"].as_str().expect("a next page");
    let (_, rest) =
        server.get(&format!("/_matrix/client/v3/notifications?limit=1&from={next}"), Some(&bob.access_token)).await;
    assert_eq!(rest["notifications"][0]["event"]["content"]["body"], "hello all");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_muted_room_counts_nothing_and_mentions_only_counts_mentions() {
    let server = TestServer::start().await;
    let (alice, bob, room) = group_room(&server).await;
    let token = Some(bob.access_token.as_str());
    // Element's "mute": an override rule on the room with no actions.
    let mute = json!({"actions": [], "conditions": [{"kind": "event_match", "key": "room_id", "pattern": room}]});
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/pushrules/global/override/{}", enc(&room)), token, mute).await;
    assert_eq!(status, 200, "{body}");
    send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "quiet"})).await;
    let muted = sync(&server, &bob, "timeout=0").await;
    assert_eq!(counts(&muted, &room), (0, 0));

    // Element's "mentions and keywords": a room rule that does not notify
    // (older Elements say so with the legacy `dont_notify`).
    let path = format!("/_matrix/client/v3/pushrules/global/override/{}", enc(&room));
    assert_eq!(server.request(reqwest::Method::DELETE, &path, token, None).await.0, 200);
    let room_rule = format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&room));
    assert_eq!(server.put(&room_rule, token, json!({"actions": ["dont_notify"]})).await.0, 200);
    send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "chatter"})).await;
    send(
        &server,
        &alice,
        &room,
        json!({"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [bob.user_id]}}),
    )
    .await;
    let since = muted["next_batch"].as_str().unwrap();
    let mentions_only = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(counts(&mentions_only, &room), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyword_rule_highlights() {
    let server = TestServer::start().await;
    let (alice, bob, room) = group_room(&server).await;
    let keyword = json!({"pattern": "deploy", "actions": ["notify", {"set_tweak": "highlight"}]});
    let (status, _) =
        server.put("/_matrix/client/v3/pushrules/global/content/deploy", Some(&bob.access_token), keyword).await;
    assert_eq!(status, 200);
    send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "ready to deploy now?"})).await;
    send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "lunch?"})).await;
    assert_eq!(counts(&sync(&server, &bob, "timeout=0").await, &room), (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn thread_replies_count_apart_when_the_filter_asks() {
    let server = TestServer::start().await;
    let (alice, bob, room) = group_room(&server).await;
    let root = send(&server, &alice, &room, json!({"msgtype": "m.text", "body": "root"})).await;
    let reply = json!({"msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    let last_reply = {
        send(&server, &alice, &room, reply.clone()).await;
        send(&server, &alice, &room, reply).await
    };
    let plain = sync(&server, &bob, "timeout=0").await;
    assert_eq!(counts(&plain, &room), (3, 0));
    let filter = enc(&json!({"room": {"timeline": {"unread_thread_notifications": true}}}).to_string());
    let threaded = sync(&server, &bob, &format!("timeout=0&filter={filter}")).await;
    assert_eq!(counts(&threaded, &room), (1, 0));
    let threads = &threaded["rooms"]["join"][&room]["unread_thread_notifications"];
    assert_eq!(threads[&root]["notification_count"], 2);

    // A threaded receipt reads the thread only.
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last_reply)),
            Some(&bob.access_token),
            json!({"thread_id": root}),
        )
        .await;
    assert_eq!(status, 200);
    let read_thread = sync(&server, &bob, &format!("timeout=0&filter={filter}")).await;
    assert_eq!(counts(&read_thread, &room), (1, 0));
    assert!(read_thread["rooms"]["join"][&room]["unread_thread_notifications"].get(&root).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_kind_is_listed_and_malformed_rule_paths_are_refused_as_synapse_does() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let token = Some(bob.access_token.as_str());
    let base = "/_matrix/client/v3/pushrules";
    let rule = json!({"pattern": "cake", "actions": ["notify"]});
    assert_eq!(server.put(&format!("{base}/global/content/cake"), token, rule).await.0, 200);

    // `GET /pushrules/global/{kind}/` lists that kind, user rules first.
    let (status, listed) = server.get(&format!("{base}/global/content/"), token).await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
    assert_eq!(ids[0], "cake");
    assert!(ids.contains(&".m.rule.contains_user_name") || ids.len() == 1, "{ids:?}");
    let (status, listed) = server.get(&format!("{base}/global/sender/"), token).await;
    assert_eq!((status, listed), (200, json!([])));

    // The spec's own paths end with a slash; without it Synapse answers
    // 404 for the whole set and 400 for a scope or kind.
    assert_eq!(server.get(&format!("{base}/"), token).await.0, 200);
    assert_eq!(server.get(&format!("{base}/global/"), token).await.0, 200);
    assert_error(&server.get(base, token).await, 404, "M_UNRECOGNIZED");
    for path in ["/global", "/global/room", "/not_a_scope/", "/global/not_a_kind/", "/global/override/.m.rule.master/x"]
    {
        let (status, body) = server.get(&format!("{base}{path}"), token).await;
        assert_eq!(status, 400, "GET {path}: {body}");
    }
    let (_, before) = server.get(&format!("{base}/"), token).await;
    let empty = json!({"actions": ["notify"]});
    for path in
        ["/", "/global", "/global/room", "/global/room/", "/not_a_scope/room/x", "/global/override/.m.rule.master/x"]
    {
        let (status, body) = server.put(&format!("{base}{path}"), token, empty.clone()).await;
        assert_eq!(status, 400, "PUT {path}: {body}");
    }
    assert_eq!(server.get(&format!("{base}/"), token).await.1, before, "nothing changed");
    // Still behind authentication.
    assert_eq!(server.get(&format!("{base}/global/content/"), None).await.0, 401);
}
