//! Regressions found by conformance suites: room creation under
//! concurrency, upgrades pointing at their tombstone, the default room
//! version, and the places where Plexus is as liberal as Synapse (typing
//! without a timeout, extra join fields, repeated state, unknown device
//! key algorithms, ...), each as a client meets it.

mod common;

use std::collections::HashSet;

use common::{TestServer, TestUser, assert_error, enc};
use serde_json::{Value, json};

/// The room's `m.room.create` event, as `/state` lists it.
async fn create_event(server: &TestServer, user: &TestUser, room: &str) -> Value {
    let (status, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room)), Some(&user.access_token)).await;
    assert_eq!(status, 200, "{state}");
    state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").cloned().expect("a create event")
}

#[tokio::test(flavor = "multi_thread")]
async fn many_rooms_created_at_once_by_one_user_are_all_distinct() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let creations = (0..25).map(|_| {
        server.post("/_matrix/client/v3/createRoom", Some(&alice.access_token), json!({"preset": "private_chat"}))
    });
    let answers = futures_util::future::join_all(creations).await;
    let mut rooms = HashSet::new();
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
        rooms.insert(body["room_id"].as_str().expect("room_id").to_owned());
    }
    assert_eq!(rooms.len(), 25, "every creation made its own room");
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    let joined: HashSet<String> =
        joined["joined_rooms"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    assert_eq!(joined, rooms);
    // Each is a room of the default version whose create event is its own.
    for room in rooms.iter().take(3) {
        let create = create_event(&server, &alice, room).await;
        assert_eq!(create["content"]["room_version"], "12");
        assert_eq!(format!("!{}", &create["event_id"].as_str().unwrap()[1..]), *room);
    }
}

/// Upgrades `room` to `version`; returns the new room's id.
async fn upgrade(server: &TestServer, user: &TestUser, room: &str, version: &str) -> String {
    let (status, body) = server.room_post(&user.access_token, room, "upgrade", json!({"new_version": version})).await;
    assert_eq!(status, 200, "{body}");
    body["replacement_room"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_upgraded_rooms_predecessor_names_the_tombstone() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for version in ["10", "11"] {
        let old = server.create_room(&alice.access_token, json!({"room_version": "9", "name": "Old"})).await;
        server.send_text(&alice.access_token, &old, "before the upgrade").await;
        let new = upgrade(&server, &alice, &old, version).await;

        let (_, tombstone) = server.get_state(&alice.access_token, &old, "m.room.tombstone", "").await;
        assert_eq!(tombstone["replacement_room"], new.as_str());
        let (_, old_state) =
            server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&old)), Some(&alice.access_token)).await;
        let tombstone_id =
            old_state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.tombstone").unwrap()["event_id"].clone();

        let create = create_event(&server, &alice, &new).await;
        assert_eq!(create["content"]["room_version"], version);
        assert_eq!(create["content"]["predecessor"], json!({"room_id": old, "event_id": tombstone_id}));
        let (_, name) = server.get_state(&alice.access_token, &new, "m.room.name", "").await;
        assert_eq!(name["name"], "Old");
    }

    // Room version 12: the room id is the create event's hash, which the
    // tombstone names, so the create event cannot name the tombstone
    // (MSC4291 deprecates `predecessor.event_id`): only the room is named.
    let old = server.create_room(&alice.access_token, json!({"room_version": "11"})).await;
    let new = upgrade(&server, &alice, &old, "12").await;
    let (_, tombstone) = server.get_state(&alice.access_token, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new.as_str());
    let create = create_event(&server, &alice, &new).await;
    assert_eq!(create["content"]["predecessor"], json!({"room_id": old}));
}

/// Sytest "/upgrade of a bogus room fails gracefully": a room unknown
/// here is 404 `M_NOT_FOUND`; a room the user may not upgrade stays 403.
#[tokio::test]
async fn upgrading_an_unknown_room_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let body = json!({"new_version": "11"});
    let bogus = server.room_post(&alice.access_token, "!fail:unknown", "upgrade", body.clone()).await;
    assert_error(&bogus, 404, "M_NOT_FOUND");
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_error(&server.room_post(&bob.access_token, &room, "upgrade", body).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn the_default_room_version_is_configurable() {
    let server = TestServer::start_with(|c| c.rooms.default_room_version = "10".try_into().unwrap()).await;
    let alice = server.register("alice").await;
    let (status, caps) = server.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "10");
    assert_eq!(caps["capabilities"]["m.change_password"], json!({"enabled": true}));
    let room = server.create_room(&alice.access_token, json!({})).await;
    assert_eq!(create_event(&server, &alice, &room).await["content"]["room_version"], "10");
    // A version the client names still wins.
    let room = server.create_room(&alice.access_token, json!({"room_version": "11"})).await;
    assert_eq!(create_event(&server, &alice, &room).await["content"]["room_version"], "11");

    // The default default is 12, and a version this server does not know
    // is refused at start, naming the key.
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let (_, caps) = server.get("/_matrix/client/v3/capabilities", Some(&bob.access_token)).await;
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "12");
    let mut config = plexus::config::Config::default();
    config.rooms.default_room_version = "org.example.unknown".try_into().unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("rooms.default_room_version"), "{err}");
}

#[tokio::test]
async fn typing_without_a_timeout_lasts_the_default_time() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id));
    let (status, body) = server.put(&path, Some(&alice.access_token), json!({"typing": true})).await;
    assert_eq!(status, 200, "{body}");
    let (_, sync) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&alice.access_token)).await;
    let typing = sync["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.typing")
        .cloned()
        .expect("a typing event");
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));
    // Still refused: a body that is not a typing notice.
    let (status, _) = server.put(&path, Some(&alice.access_token), json!({"typing": "yes"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_join_keeps_the_clients_extra_member_fields() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            Some(&bob.access_token),
            json!({"reason": "hello", "org.example.custom": {"colour": "teal"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = server.get_state(&bob.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "join");
    assert_eq!(member["reason"], "hello");
    assert_eq!(member["org.example.custom"], json!({"colour": "teal"}));
    assert_eq!(member["displayname"], "bob");

    // The same through `/join/{roomIdOrAlias}`; `membership` stays `join`.
    let carol = server.register("carol").await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            Some(&carol.access_token),
            json!({"membership": "leave", "io.example.flag": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = server.get_state(&carol.access_token, &room, "m.room.member", &carol.user_id).await;
    assert_eq!((member["membership"].as_str(), member["io.example.flag"].as_bool()), (Some("join"), Some(true)));
}

#[tokio::test]
async fn setting_the_same_state_twice_sends_one_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;
    let topic = json!({"topic": "tea"});
    let (status, first) = server.put_state(&alice.access_token, &room, "m.room.topic", "", topic.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = server.put_state(&alice.access_token, &room, "m.room.topic", "", topic.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["event_id"], again["event_id"]);
    let (_, page) = server.messages(&alice.access_token, &room, "dir=b&limit=5").await;
    let topics = page["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.topic").count();
    assert_eq!(topics, 1);
    // Another content, or another sender, is a new event.
    let (_, other) = server.put_state(&alice.access_token, &room, "m.room.topic", "", json!({"topic": "coffee"})).await;
    assert_ne!(other["event_id"], first["event_id"]);
    server
        .put_state(&alice.access_token, &room, "m.room.power_levels", "", {
            let (_, mut pl) = server.get_state(&alice.access_token, &room, "m.room.power_levels", "").await;
            pl["users"][&bob.user_id] = json!(50);
            pl
        })
        .await;
    let (_, by_bob) = server.put_state(&bob.access_token, &room, "m.room.topic", "", json!({"topic": "coffee"})).await;
    assert!(by_bob["event_id"].is_string());
    assert_ne!(by_bob["event_id"], other["event_id"]);
}

#[tokio::test]
async fn a_canonical_alias_must_point_at_the_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"room_alias_name": "tea"})).await;
    let other = server.create_room(&alice.access_token, json!({"room_alias_name": "coffee"})).await;
    let put = |content: Value| server.put_state(&alice.access_token, &room, "m.room.canonical_alias", "", content);

    assert_error(&put(json!({"alias": "#coffee:plexus.test"})).await, 400, "M_BAD_ALIAS");
    assert_error(&put(json!({"alias": "#nowhere:plexus.test"})).await, 400, "M_BAD_ALIAS");
    assert_error(&put(json!({"alt_aliases": ["#coffee:plexus.test"]})).await, 400, "M_BAD_ALIAS");
    assert_error(&put(json!({"alias": "not an alias"})).await, 400, "M_INVALID_PARAM");
    assert_error(&put(json!({"alt_aliases": "#tea:plexus.test"})).await, 400, "M_INVALID_PARAM");
    let (_, current) = server.get_state(&alice.access_token, &room, "m.room.canonical_alias", "").await;
    assert_eq!(current["alias"], "#tea:plexus.test", "nothing refused was stored");

    let (status, body) = put(json!({"alias": "#tea:plexus.test", "alt_aliases": ["#tea:plexus.test"]})).await;
    assert_eq!(status, 200, "{body}");
    // Removing the alias is fine too.
    let (status, body) = put(json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, other_alias) = server.get_state(&alice.access_token, &other, "m.room.canonical_alias", "").await;
    assert_eq!(other_alias["alias"], "#coffee:plexus.test");
}

#[tokio::test]
async fn messages_give_an_end_while_more_may_come() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    for i in 0..4 {
        server.send_text(&alice.access_token, &room, &format!("m{i}")).await;
    }
    // Backwards with more history: `end`; at the room's start: none.
    let (_, back) = server.messages(&alice.access_token, &room, "dir=b&limit=2").await;
    assert_eq!(back["chunk"].as_array().unwrap().len(), 2);
    let end = back["end"].as_str().expect("end while there is more history").to_owned();
    let (_, rest) = server.messages(&alice.access_token, &room, &format!("dir=b&limit=100&from={end}")).await;
    assert!(rest["end"].is_null(), "{rest}");

    // Forwards, the page reaching the newest event still has an `end`:
    // paginating from it later finds what was sent since.
    let (_, forward) = server.messages(&alice.access_token, &room, "dir=f&limit=100").await;
    let end = forward["end"].as_str().expect("end going forward").to_owned();
    server.send_text(&alice.access_token, &room, "later").await;
    let (_, later) = server.messages(&alice.access_token, &room, &format!("dir=f&limit=100&from={end}")).await;
    let bodies: Vec<&str> =
        later["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, ["later"]);
}

#[tokio::test]
async fn registration_with_inhibit_login_makes_no_device() {
    let server = TestServer::start().await;
    let body = json!({"username": "dora", "password": common::PASSWORD, "inhibit_login": true,
                      "auth": {"type": "m.login.dummy"}});
    let (status, first) = server.post("/_matrix/client/v3/register", None, body.clone()).await;
    let (status, resp) = if status == 401 {
        let mut body = body;
        body["auth"]["session"] = first["session"].clone();
        server.post("/_matrix/client/v3/register", None, body).await
    } else {
        (status, first)
    };
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["user_id"], "@dora:plexus.test");
    assert!(resp.get("access_token").is_none() && resp.get("device_id").is_none(), "{resp}");
    let (status, login) = server.login("dora", common::PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let (_, devices) = server.get("/_matrix/client/v3/devices", login["access_token"].as_str()).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "only the login's device: {devices}");
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_not_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;
    let url = server.url(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/bad-utf8", enc(&room)));
    let body: &[u8] = b"{\"msgtype\": \"m.text\", \"body\": \"\xff\xfe\"}";
    let resp = reqwest::Client::new()
        .put(url)
        .bearer_auth(&alice.access_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let json: Value = resp.json().await.unwrap();
    assert_error(&(status, json), 400, "M_NOT_JSON");
}

#[tokio::test]
async fn versions_and_thirdparty_protocols_answer_what_clients_expect() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["org.matrix.e2e_cross_signing"], true);
    let (status, protocols) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice.access_token)).await;
    assert_eq!((status, protocols), (200, json!({})));
}

/// Device keys for `user`'s device, listing `algorithms` and a key of an
/// algorithm no spec names, signed by the device.
fn device_keys(user: &TestUser, algorithms: Value) -> Value {
    use plexus::ruma::{
        CanonicalJsonObject,
        serde::{Base64, base64::Standard},
        signatures::{Ed25519KeyPair, sign_json},
    };
    let doc = Ed25519KeyPair::generate();
    let device = &user.device_id;
    let pair = Ed25519KeyPair::from_der(&doc, device.clone()).unwrap();
    let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
    let mut obj: CanonicalJsonObject = serde_json::from_value(json!({
        "user_id": user.user_id,
        "device_id": device,
        "algorithms": algorithms,
        "keys": {
            format!("ed25519:{device}"): public,
            format!("curve25519:{device}"): "Y3VydmUyNTUxOWtleWZvcnRlc3RpbmdvbmxpZXM",
            format!("org.example.pq:{device}"): "c29tZSBmdXR1cmUga2V5",
        },
    }))
    .unwrap();
    sign_json(&user.user_id, &pair, &mut obj).unwrap();
    serde_json::to_value(obj).unwrap()
}

#[tokio::test]
async fn device_keys_of_unknown_algorithms_and_any_backup_auth_data_are_accepted() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let keys = device_keys(&alice, json!(["m.olm.v1.curve25519-aes-sha2", "org.example.future.v2"]));
    let (status, body) =
        server.post("/_matrix/client/v3/keys/upload", Some(&alice.access_token), json!({"device_keys": keys})).await;
    assert_eq!(status, 200, "{body}");
    let (_, query) = server
        .post("/_matrix/client/v3/keys/query", Some(&alice.access_token), json!({"device_keys": {&alice.user_id: []}}))
        .await;
    let stored = &query["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(stored["algorithms"], json!(["m.olm.v1.curve25519-aes-sha2", "org.example.future.v2"]));

    // Any JSON, a string too, as Synapse keeps it (Sytest sends one).
    for auth_data in
        [json!({}), json!({"anything": [1, 2, {"nested": true}]}), json!({"public_key": 5}), json!("opaque")]
    {
        let (status, body) = server
            .post(
                "/_matrix/client/v3/room_keys/version",
                Some(&alice.access_token),
                json!({"algorithm": "org.example.backup.v9", "auth_data": auth_data}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let version = body["version"].as_str().unwrap().to_owned();
        let (_, info) =
            server.get(&format!("/_matrix/client/v3/room_keys/version/{version}"), Some(&alice.access_token)).await;
        assert_eq!(info["auth_data"], auth_data);
    }
}
