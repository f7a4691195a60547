//! Device list tracking (client-server API, "Tracking the device list for
//! a user"; server-server API, "Device Management"): a user's new, renamed
//! and deleted devices and new keys reach the users who share a room with
//! them, in `/sync`'s `device_lists.changed` and in `/keys/changes`, on
//! this server and across servers.

mod common;

use common::{PASSWORD, TestServer, TestUser, enc, free_port, make_test_certs, wait_until};
use plexus::ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

/// An incremental sync of `user` from `since` that waits (up to its
/// timeout, again until a minute passed) until `who` is in
/// `device_lists.changed`; returns the sync's `next_batch`.
async fn sync_until_changed(server: &TestServer, user: &TestUser, since: &str, who: &str) -> String {
    let mut since = since.to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let path = format!("/_matrix/client/v3/sync?timeout=2000&since={since}");
        let (status, body) = server.get(&path, Some(&user.access_token)).await;
        assert_eq!(status, 200, "{body}");
        let changed = body["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
        let next = body["next_batch"].as_str().unwrap().to_owned();
        if changed.iter().any(|u| u == who) {
            return next;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{who} never appeared in device_lists.changed for {}",
            user.user_id
        );
        since = next;
    }
}

/// `/keys/changes` between two sync tokens.
async fn key_changes(server: &TestServer, user: &TestUser, from: &str, to: &str) -> Vec<String> {
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/keys/changes?from={from}&to={to}"), Some(&user.access_token)).await;
    assert_eq!(status, 200, "{body}");
    body["changed"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
}

async fn initial_sync(server: &TestServer, user: &TestUser) -> String {
    let (_, body) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&user.access_token)).await;
    body["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_device_changes_reach_the_users_sharing_a_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    server.join(&bob.access_token, &room).await;

    // A new device (a login).
    let since = initial_sync(&server, &alice).await;
    let carol_since = initial_sync(&server, &carol).await;
    let (status, login) = server.login("bob", PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let phone = login["device_id"].as_str().unwrap().to_owned();
    let next = sync_until_changed(&server, &alice, &since, &bob.user_id).await;
    assert!(key_changes(&server, &alice, &since, &next).await.contains(&bob.user_id));

    // A renamed device.
    let since = next;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/devices/{}", enc(&phone)),
            Some(&bob.access_token),
            json!({"display_name": "Phone"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let next = sync_until_changed(&server, &alice, &since, &bob.user_id).await;
    assert_eq!(key_changes(&server, &alice, &since, &next).await, [bob.user_id.as_str()]);

    // A deleted device (after the password).
    let since = next;
    let path = format!("/_matrix/client/v3/devices/{}", enc(&phone));
    let (status, uia) = server.request(reqwest::Method::DELETE, &path, Some(&bob.access_token), Some(json!({}))).await;
    assert_eq!(status, 401, "{uia}");
    let auth = json!({"auth": {"type": "m.login.password", "session": uia["session"], "password": PASSWORD,
                               "identifier": {"type": "m.id.user", "user": "bob"}}});
    let (status, body) = server.request(reqwest::Method::DELETE, &path, Some(&bob.access_token), Some(auth)).await;
    assert_eq!(status, 200, "{body}");
    let next = sync_until_changed(&server, &alice, &since, &bob.user_id).await;
    assert_eq!(key_changes(&server, &alice, &since, &next).await, [bob.user_id.as_str()]);

    // New cross-signing keys.
    let since = next;
    let master = json!({"user_id": bob.user_id, "usage": ["master"],
                        "keys": {"ed25519:bWFzdGVya2V5": "bWFzdGVya2V5"}});
    let (status, body) = server
        .post("/_matrix/client/v3/keys/device_signing/upload", Some(&bob.access_token), json!({"master_key": master}))
        .await;
    assert_eq!(status, 200, "{body}");
    let next = sync_until_changed(&server, &alice, &since, &bob.user_id).await;
    assert!(key_changes(&server, &alice, &since, &next).await.contains(&bob.user_id));

    // Carol shares no room with bob: none of it concerns her.
    let (_, body) =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={carol_since}"), Some(&carol.access_token)).await;
    let changed = body["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
    assert!(!changed.iter().any(|u| u == bob.user_id.as_str()), "{body}");
}

type Certs = (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);

/// A federating server named `localhost:PORT`; returns it and its name.
async fn federating_server(certs: &Certs) -> (TestServer, String) {
    for _ in 0..20 {
        let port = free_port();
        let (ca, cert, key) = certs.clone();
        let name = format!("localhost:{port}");
        let config_name = name.clone();
        let started = TestServer::try_start_with(move |c| {
            c.server.server_name = config_name.try_into().unwrap();
            c.federation.enabled = true;
            c.federation.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
            c.federation.tls_cert = Some(cert);
            c.federation.tls_key = Some(key);
            c.federation.extra_ca_files = vec![ca];
            c.federation.allow_loopback = true;
        })
        .await;
        match started {
            Ok(server) => return (server, name),
            Err(plexus::StartError::Listen { .. }) => continue,
            Err(e) => panic!("server starts: {e}"),
        }
    }
    panic!("no free port for a federation listener");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_list_update_from_another_server_makes_this_one_fetch_the_list() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, a_name) = federating_server(&certs).await;
    let (b, _) = federating_server(&certs).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until("bob's join reaches A", || async {
        let (_, members) =
            a.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.access_token)).await;
        members["joined"].get(&bob.user_id).is_some()
    })
    .await;

    // Bob logs in on a new device: B tells A, which knows nothing of bob's
    // devices yet and asks B for the whole list.
    let since = initial_sync(&a, &alice).await;
    let (status, login) = b.login("bob", PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let phone = login["device_id"].as_str().unwrap().to_owned();
    let next = sync_until_changed(&a, &alice, &since, &bob.user_id).await;
    assert!(key_changes(&a, &alice, &since, &next).await.contains(&bob.user_id));
    let known = a.services().db.remote_device_list(bob.user_id.clone()).await.unwrap();
    let (_, devices) = known.expect("A fetched bob's device list from B");
    let devices: Value = serde_json::from_str(&devices).unwrap();
    assert!(devices.is_object(), "{devices}");

    // A rename on B reaches alice on A the same way.
    let (status, body) = b
        .put(
            &format!("/_matrix/client/v3/devices/{}", enc(&phone)),
            Some(&bob.access_token),
            json!({"display_name": "Phone"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sync_until_changed(&a, &alice, &next, &bob.user_id).await;
}

/// A device's identity keys, signed by the device, as a client uploads them.
fn signed_device_keys(user: &str, device: &str) -> Value {
    let doc = Ed25519KeyPair::generate();
    let pair = Ed25519KeyPair::from_der(&doc, device.to_owned()).unwrap();
    let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
    let mut obj: CanonicalJsonObject = serde_json::from_value(json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("ed25519:{device}"): public, format!("curve25519:{device}"): "Y3VydmUyNTUxOWtleWZvcnRlc3Rpbmc"},
    }))
    .unwrap();
    sign_json(user, &pair, &mut obj).unwrap();
    serde_json::to_value(obj).unwrap()
}

/// What `a` stores of `user`'s device list: the stream id and the devices.
async fn known_devices(a: &TestServer, user: &str) -> Option<(i64, Value)> {
    let known = a.services().db.remote_device_list(user.to_owned()).await.unwrap();
    known.map(|(stream_id, devices)| (stream_id, serde_json::from_str(&devices).unwrap()))
}

/// Two federating servers, alice on A and bob on B in one room; returns
/// them with the room.
async fn alice_and_bob(certs: &Certs) -> (TestServer, TestServer, TestUser, TestUser) {
    let (a, a_name) = federating_server(certs).await;
    let (b, _) = federating_server(certs).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let path = format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&a_name));
    let (status, body) = b.post(&path, Some(&bob.access_token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    wait_until("bob's join reaches A", || async {
        let (_, members) =
            a.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.access_token)).await;
        members["joined"].get(&bob.user_id).is_some()
    })
    .await;
    (a, b, alice, bob)
}

/// Regression: B's device list updates named no device and carried no
/// `prev_id`, so A could only fetch bob's whole list again each time. Now
/// each update names the device with its keys or name and follows on from
/// the one before, and A's copy of bob's list keeps up with B's stream, the
/// stream id `/user/devices` answers.
#[tokio::test(flavor = "multi_thread")]
async fn device_updates_carry_the_device_and_follow_on_from_each_other() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, b, _alice, bob) = alice_and_bob(&certs).await;

    // A new device: A fetches bob's whole list (it knew nothing of it), at
    // the stream id of B's last update.
    let (status, login) = b.login("bob", PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let phone = TestUser {
        user_id: bob.user_id.clone(),
        device_id: login["device_id"].as_str().unwrap().to_owned(),
        access_token: login["access_token"].as_str().unwrap().to_owned(),
        password: PASSWORD.to_owned(),
    };
    let head = b.services().db.device_stream_id(bob.user_id.clone()).await.unwrap();
    wait_until("A knows bob's device list", || async {
        known_devices(&a, &bob.user_id).await.is_some_and(|(stream_id, _)| stream_id == head)
    })
    .await;

    // Its keys, then a new name, each applied on what A has.
    let keys = signed_device_keys(&bob.user_id, &phone.device_id);
    let (status, body) =
        b.post("/_matrix/client/v3/keys/upload", Some(&phone.access_token), json!({"device_keys": keys.clone()})).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/_matrix/client/v3/devices/{}", enc(&phone.device_id));
    let (status, body) = b.put(&path, Some(&bob.access_token), json!({"display_name": "Phone"})).await;
    assert_eq!(status, 200, "{body}");
    let head = b.services().db.device_stream_id(bob.user_id.clone()).await.unwrap();
    wait_until("A follows bob's device stream", || async {
        known_devices(&a, &bob.user_id).await.is_some_and(|(stream_id, _)| stream_id == head)
    })
    .await;
    let (_, devices) = known_devices(&a, &bob.user_id).await.unwrap();
    let device = &devices[&phone.device_id];
    assert_eq!(device["device_display_name"], "Phone", "{devices}");
    assert_eq!(device["keys"]["keys"], keys["keys"], "{devices}");

    // A deleted device is gone from A's copy.
    let (status, uia) = b.request(reqwest::Method::DELETE, &path, Some(&bob.access_token), Some(json!({}))).await;
    assert_eq!(status, 401, "{uia}");
    let auth = json!({"auth": {"type": "m.login.password", "session": uia["session"], "password": PASSWORD,
                               "identifier": {"type": "m.id.user", "user": "bob"}}});
    let (status, body) = b.request(reqwest::Method::DELETE, &path, Some(&bob.access_token), Some(auth)).await;
    assert_eq!(status, 200, "{body}");
    let head = b.services().db.device_stream_id(bob.user_id.clone()).await.unwrap();
    wait_until("A learns of the deletion", || async {
        known_devices(&a, &bob.user_id).await.is_some_and(|(stream_id, _)| stream_id == head)
    })
    .await;
    let (_, devices) = known_devices(&a, &bob.user_id).await.unwrap();
    assert!(devices.get(&phone.device_id).is_none(), "{devices}");
}

/// Regression: `/keys/query` for a user of another server always asked
/// their server, though this one tracks their device list. Now it answers
/// from what it stores, even while their server is away.
#[tokio::test(flavor = "multi_thread")]
async fn keys_of_a_tracked_remote_user_are_answered_from_the_stored_list() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, mut b, alice, bob) = alice_and_bob(&certs).await;
    let keys = signed_device_keys(&bob.user_id, &bob.device_id);
    let (status, body) =
        b.post("/_matrix/client/v3/keys/upload", Some(&bob.access_token), json!({"device_keys": keys.clone()})).await;
    assert_eq!(status, 200, "{body}");
    let head = b.services().db.device_stream_id(bob.user_id.clone()).await.unwrap();
    wait_until("A has bob's device keys", || async {
        known_devices(&a, &bob.user_id).await.is_some_and(|(stream_id, _)| stream_id == head)
    })
    .await;

    b.stop().await;
    let query = json!({"device_keys": {bob.user_id.clone(): []}});
    let (status, body) = a.post("/_matrix/client/v3/keys/query", Some(&alice.access_token), query).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");
    let device = &body["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(device["keys"], keys["keys"], "{body}");
    assert_eq!(device["signatures"], keys["signatures"], "{body}");
}
