//! Safety as users meet it: ignoring a user (client-server API, "Ignoring
//! Users") hides their messages and invites from every sync, `/messages`,
//! `/context` and the notification counts until they are unignored; and
//! reports of events, rooms and users ("Reporting content") are stored for
//! the server's admins, refused or concealed as the spec says, and
//! rate-limited.

#![recursion_limit = "256"]
mod common;

use std::time::Duration;

use common::{TestServer, TestUser, assert_error, enc};
use matrix_sdk::{
    config::SyncSettings,
    ruma::{UserId, events::ignored_user_list::IgnoredUserListEventContent},
    sync::SyncResponse,
};
use plexus::{
    config::RateLimit,
    storage::reports::{ReportListing, ReportTarget, StoredReport},
};
use serde_json::{Value, json};

const SLIDING_SYNC: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

fn settings() -> SyncSettings {
    SyncSettings::default().timeout(Duration::ZERO)
}

/// Sends a message mentioning `whom` (a highlight under the default
/// rules); returns its event id.
async fn mention(server: &TestServer, from: &TestUser, room: &str, whom: &TestUser, body: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/m{}", enc(room), rand::random::<u64>());
    let content = json!({"msgtype": "m.text", "body": body, "m.mentions": {"user_ids": [whom.user_id]}});
    let (status, sent) = server.put(&path, Some(&from.access_token), content).await;
    assert_eq!(status, 200, "{sent}");
    sent["event_id"].as_str().expect("event_id").to_owned()
}

async fn text(server: &TestServer, from: &TestUser, room: &str, body: &str) -> String {
    let (status, sent) = server.send_text(&from.access_token, room, body).await;
    assert_eq!(status, 200, "{sent}");
    sent["event_id"].as_str().expect("event_id").to_owned()
}

/// The message bodies among events, in order.
fn bodies<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    events.into_iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
}

/// A room's timeline events in a matrix-sdk sync response, as JSON.
fn sdk_timeline(response: &SyncResponse, room: &str) -> Vec<Value> {
    response
        .rooms
        .joined
        .iter()
        .find(|(id, _)| id.as_str() == room)
        .map(|(_, update)| {
            update.timeline.events.iter().map(|e| serde_json::from_str(e.raw().json().get()).expect("JSON")).collect()
        })
        .unwrap_or_default()
}

/// A full `/sync` over plain HTTP.
async fn initial_sync(server: &TestServer, user: &TestUser) -> Value {
    let (status, body) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&user.access_token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `(notification_count, highlight_count)` of a joined room in a full sync.
async fn unread_counts(server: &TestServer, user: &TestUser, room: &str) -> (u64, u64) {
    let sync = initial_sync(server, user).await;
    let counts = &sync["rooms"]["join"][room]["unread_notifications"];
    (counts["notification_count"].as_u64().unwrap_or(0), counts["highlight_count"].as_u64().unwrap_or(0))
}

/// `/messages` backwards from the end: the events, oldest first.
async fn history(server: &TestServer, user: &TestUser, room: &str) -> Vec<Value> {
    let (status, page) = server.messages(&user.access_token, room, "dir=b&limit=50").await;
    assert_eq!(status, 200, "{page}");
    let mut events = page["chunk"].as_array().expect("chunk").clone();
    events.reverse();
    events
}

async fn context(server: &TestServer, user: &TestUser, room: &str, event: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/context/{}?limit=20", enc(room), enc(event));
    server.get(&path, Some(&user.access_token)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignored_users_messages_and_invites_never_arrive_until_unignored() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let alice_id = UserId::parse(alice.user_id.as_str()).expect("user id");
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    let before = mention(&server, &alice, &room, &bob, "bob: before").await;
    assert_eq!(unread_counts(&server, &bob, &room).await, (1, 1), "a mention notifies and highlights");

    // Bob, in matrix-sdk, ignores Alice.
    let sdk = server.sdk_logged_in("bob").await;
    sdk.sync_once(settings()).await.expect("first sync");
    sdk.account().ignore_user(&alice_id).await.expect("alice ignored");

    mention(&server, &alice, &room, &bob, "bob: while ignored").await;
    let topic = json!({"topic": "Still the topic"});
    assert_eq!(server.put_state(&alice.access_token, &room, "m.room.topic", "", topic).await.0, 200);
    let dm = server.create_room(&alice.access_token, json!({"invite": [bob.user_id], "is_direct": true})).await;
    let own = text(&server, &bob, &room, "bob talks").await;

    // Sync (matrix-sdk): Bob's own message and Alice's state event, none
    // of her messages, no invite; the changed list itself arrives.
    let response = sdk.sync_once(settings()).await.expect("sync while ignoring");
    let timeline = sdk_timeline(&response, &room);
    assert_eq!(bodies(&timeline), ["bob talks"], "{timeline:?}");
    assert!(
        timeline.iter().any(|e| e["type"] == "m.room.topic" && e["sender"] == alice.user_id.as_str()),
        "an ignored user's state events still arrive: {timeline:?}"
    );
    assert!(!response.rooms.invited.keys().any(|r| r.as_str() == dm), "the ignored user's invite is dropped");
    let account = sdk.account();
    let ignored = account.account_data::<IgnoredUserListEventContent>().await.expect("account data");
    let ignored = ignored.expect("the list synced").deserialize().expect("a list");
    assert!(ignored.ignored_users.contains_key(&alice_id));

    // A full sync over HTTP: the same.
    let sync = initial_sync(&server, &bob).await;
    let events = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().expect("timeline").clone();
    assert!(bodies(&events).iter().all(|b| b == "bob talks"), "{events:?}");
    assert!(sync["rooms"]["invite"].get(&dm).is_none(), "no invite in {}", sync["rooms"]);

    // Sliding sync: the invite is not listed, Alice's messages not sent.
    let request = json!({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 20, "required_state": [["*", "*"]]}}});
    let (status, sliding) = server.post(&format!("{SLIDING_SYNC}?timeout=0"), Some(&bob.access_token), request).await;
    assert_eq!(status, 200, "{sliding}");
    assert_eq!(sliding["lists"]["all"]["count"], 1, "only the joined room is listed: {sliding}");
    assert!(sliding["rooms"].get(&dm).is_none());
    let events = sliding["rooms"][&room]["timeline"].as_array().expect("timeline").clone();
    assert_eq!(bodies(&events), ["bob talks"]);

    // `/messages` and `/context`: none of Alice's messages, before or
    // after the ignoring; her state events stay.
    let events = history(&server, &bob, &room).await;
    assert_eq!(bodies(&events), ["bob talks"]);
    assert!(events.iter().any(|e| e["type"] == "m.room.topic"));
    assert!(events.iter().any(|e| e["type"] == "m.room.create" && e["sender"] == alice.user_id.as_str()));
    assert_error(&context(&server, &bob, &room, &before).await, 404, "M_NOT_FOUND");
    let (status, around) = context(&server, &bob, &room, &own).await;
    assert_eq!(status, 200, "{around}");
    assert!(bodies(around["events_before"].as_array().expect("events_before")).is_empty(), "{around}");
    // Alice herself still sees everything.
    assert_eq!(bodies(&history(&server, &alice, &room).await), ["bob: before", "bob: while ignored", "bob talks"]);

    // Notifications: the mention while ignored neither counts nor is listed.
    assert_eq!(unread_counts(&server, &bob, &room).await, (1, 1));
    let (status, listed) = server.get("/_matrix/client/v3/notifications", Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    let notified: Vec<Value> =
        listed["notifications"].as_array().expect("list").iter().map(|n| n["event"].clone()).collect();
    assert_eq!(bodies(&notified), ["bob: before"]);

    // Unignoring: Alice's new messages arrive again (not those missed).
    sdk.account().unignore_user(&alice_id).await.expect("alice unignored");
    text(&server, &alice, &room, "after unignoring").await;
    let response = sdk.sync_once(settings()).await.expect("sync after unignoring");
    assert_eq!(bodies(&sdk_timeline(&response, &room)), ["after unignoring"]);
    assert_eq!(
        bodies(&history(&server, &bob, &room).await),
        ["bob: before", "bob: while ignored", "bob talks", "after unignoring"]
    );
    mention(&server, &alice, &room, &bob, "bob: again").await;
    // A one-to-one room: every message notifies, mentions highlight too.
    assert_eq!(unread_counts(&server, &bob, &room).await, (3, 2), "her messages count again");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignore_list_must_name_users() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&bob.user_id));
    let valid = json!({"ignored_users": {"@alice:plexus.test": {}}});
    assert_eq!(server.put(&path, Some(&bob.access_token), valid.clone()).await.0, 200);
    for bad in [
        json!({}),
        json!({"ignored_users": ["@alice:plexus.test"]}),
        json!({"ignored_users": {"alice": {}}}),
        json!({"ignored_users": {"@alice:plexus.test": true}}),
    ] {
        assert_error(&server.put(&path, Some(&bob.access_token), bad).await, 400, "M_BAD_JSON");
    }
    let (status, stored) = server.get(&path, Some(&bob.access_token)).await;
    assert_eq!((status, stored), (200, valid), "a refused list changes nothing");
}

/// Every report stored, newest first.
async fn reports(server: &TestServer) -> Vec<StoredReport> {
    let listing = ReportListing { limit: 100, ..Default::default() };
    server.services().db.list_reports(listing).await.expect("reports listed")
}

async fn report_event(server: &TestServer, user: &TestUser, room: &str, event: &str, body: Value) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(room), enc(event));
    server.post(&path, Some(&user.access_token), body).await
}

async fn report_room(server: &TestServer, user: &TestUser, room: &str, body: Value) -> (u16, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{}/report", enc(room)), Some(&user.access_token), body).await
}

async fn report_user(server: &TestServer, user: &TestUser, target: &str, body: Value) -> (u16, Value) {
    server.post(&format!("/_matrix/client/v3/users/{}/report", enc(target)), Some(&user.access_token), body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_reach_the_admins_and_reveal_nothing_else() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob.access_token, &room).await.0, 200);
    let spam = text(&server, &alice, &room, "buy now").await;

    // An event, by a member who sees it.
    let (status, body) = report_event(&server, &bob, &room, &spam, json!({"reason": "spam"})).await;
    assert_eq!((status, body), (200, json!({})));
    let stored = reports(&server).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].report.reporter, bob.user_id);
    assert_eq!(stored[0].report.reason, "spam");
    assert_eq!(
        stored[0].report.target,
        ReportTarget::Event { room_id: room.clone(), event_id: spam.clone(), sender: alice.user_id.clone() }
    );
    assert!(stored[0].report.ts > 0 && stored[0].resolved.is_none());
    // The reason may be left out.
    assert_eq!(report_event(&server, &bob, &room, &spam, json!({})).await.0, 200);
    assert_eq!(reports(&server).await[0].report.reason, "");

    // Not joined, unknown event, event of another room: the same 404.
    assert_error(&report_event(&server, &carol, &room, &spam, json!({"reason": "x"})).await, 404, "M_NOT_FOUND");
    let unknown = "$unknown:plexus.test";
    assert_error(&report_event(&server, &bob, &room, unknown, json!({"reason": "x"})).await, 404, "M_NOT_FOUND");
    let other = server.create_room(&bob.access_token, json!({})).await;
    assert_error(&report_event(&server, &bob, &other, &spam, json!({"reason": "x"})).await, 404, "M_NOT_FOUND");
    assert_error(&report_event(&server, &bob, &room, &spam, json!({"reason": 5})).await, 400, "M_BAD_JSON");
    assert_eq!(reports(&server).await.len(), 2, "refused reports are not stored");

    // A room: anyone may report it; an unknown one is answered alike and
    // not stored.
    assert_eq!(report_room(&server, &carol, &room, json!({"reason": "scam room"})).await, (200, json!({})));
    assert_eq!(report_room(&server, &carol, "!nowhere:plexus.test", json!({"reason": "?"})).await, (200, json!({})));
    let stored = reports(&server).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].report.target, ReportTarget::Room { room_id: room.clone() });
    assert_eq!(stored[0].report.reason, "scam room");

    // A user: the same; users of other servers are kept.
    assert_eq!(report_user(&server, &carol, &alice.user_id, json!({"reason": "rude"})).await, (200, json!({})));
    assert_eq!(report_user(&server, &carol, "@nobody:plexus.test", json!({"reason": "?"})).await, (200, json!({})));
    assert_eq!(report_user(&server, &carol, "@eve:elsewhere.test", json!({"reason": "bot"})).await.0, 200);
    let stored = reports(&server).await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[0].report.target, ReportTarget::User { user_id: "@eve:elsewhere.test".into() });
    assert_eq!(stored[1].report.target, ReportTarget::User { user_id: alice.user_id.clone() });
    assert_eq!(stored[1].report.reason, "rude");
    // The spec requires a reason for a user.
    assert_error(&report_user(&server, &carol, &alice.user_id, json!({})).await, 400, "M_BAD_JSON");
    assert_eq!(report_user(&server, &carol, "not-a-user", json!({"reason": "?"})).await.0, 400);
    assert_eq!(reports(&server).await.len(), 5);

    // An admin resolves one (the admin API comes later; the store is ready).
    let db = &server.services().db;
    assert!(db.resolve_report(stored[0].id, "@admin:plexus.test".into(), 1).await.expect("resolved"));
    let open =
        db.list_reports(ReportListing { limit: 100, resolved: Some(false), before: None }).await.expect("listed");
    assert_eq!(open.len(), 4);
    assert!(open.iter().all(|r| r.id != stored[0].id));
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_rate_limited_per_user() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.registration = RateLimit { per_second: 100.0, burst: 100 };
        config.rate_limits.report = RateLimit { per_second: 0.001, burst: 2 };
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    for reason in ["one", "two"] {
        assert_eq!(report_room(&server, &alice, &room, json!({"reason": reason})).await.0, 200);
    }
    let limited = report_user(&server, &alice, &bob.user_id, json!({"reason": "three"})).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{}", limited.1);
    assert_eq!(reports(&server).await.len(), 2, "a limited report is not stored");
    // Another user has a bucket of their own.
    assert_eq!(report_room(&server, &bob, &room, json!({"reason": "mine"})).await.0, 200);
}

/// Sytest 49ignore.pl "Ignore user in existing room": with a filter of
/// message timelines and member state, a full sync after ignoring a user
/// leaves out their messages (and still lists every member); an
/// incremental sync whose only event is theirs leaves the room out, and
/// the next message of someone else arrives alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_filtered_sync_leaves_out_an_ignored_users_messages() {
    let server = TestServer::start().await;
    let [one, two, three] =
        [server.register("one").await, server.register("two").await, server.register("three").await];
    let room =
        server.create_room(&one.access_token, json!({"preset": "public_chat", "room_alias_name": "existing"})).await;
    for user in [&two, &three] {
        assert_eq!(server.join(&user.access_token, &room).await.0, 200);
    }
    for user in [&one, &two, &three] {
        text(&server, user, &room, "Message").await;
    }
    let filter = json!({
        "account_data": {"types": ["m.ignored_user_list"]},
        "presence": {"types": []},
        "room": {"timeline": {"types": ["m.room.message"]}, "state": {"types": ["m.room.member"]}},
    });
    let path = format!("/_matrix/client/v3/user/{}/filter", enc(&one.user_id));
    let (status, created) = server.post(&path, Some(&one.access_token), filter).await;
    assert_eq!(status, 200, "{created}");
    let filter_id = created["filter_id"].as_str().unwrap().to_owned();
    let sync = |since: Option<String>| {
        let (server, token, filter_id) = (&server, one.access_token.clone(), filter_id.clone());
        async move {
            let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
            let path = format!("/_matrix/client/v3/sync?timeout=0&filter={filter_id}{since}");
            let (status, body) = server.get(&path, Some(&token)).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let counts = |body: &Value| {
        let joined = &body["rooms"]["join"][&room];
        let len = |v: &Value| v.as_array().map_or(0, Vec::len);
        (len(&joined["timeline"]["events"]), len(&joined["state"]["events"]))
    };
    assert_eq!(counts(&sync(None).await), (3, 3));

    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&one.user_id));
    let ignored = json!({"ignored_users": {two.user_id.clone(): {}}});
    assert_eq!(server.put(&path, Some(&one.access_token), ignored).await.0, 200);
    let filler = format!("/_matrix/client/v3/rooms/{}/send/a.made.up.filler.type/f1", enc(&room));
    assert_eq!(server.put(&filler, Some(&one.access_token), json!({"filler": 1})).await.0, 200);
    let full = sync(None).await;
    assert_eq!(counts(&full), (2, 3), "{full}");
    assert!(
        full["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["sender"] != two.user_id.as_str())
    );

    text(&server, &two, &room, "Message2").await;
    let since = full["next_batch"].as_str().unwrap().to_owned();
    let third = sync(Some(since)).await;
    assert!(third["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()), "{third}");

    text(&server, &three, &room, "Message3").await;
    let fourth = sync(Some(third["next_batch"].as_str().unwrap().to_owned())).await;
    assert_eq!(counts(&fourth).0, 1, "{fourth}");
    assert_eq!(bodies(fourth["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap()), ["Message3"]);
}
