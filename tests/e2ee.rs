//! End-to-end encryption support: real matrix-sdk clients encrypting and
//! decrypting through the server, key backup restore on a new device, and
//! the key and to-device APIs over plain HTTP.

#![recursion_limit = "256"]

mod common;
#[path = "common/sdk.rs"]
mod sdk_support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{PASSWORD, TestServer, TestUser, wait_until};
use matrix_sdk::{
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        api::client::room::create_room,
        events::{
            InitialStateEvent,
            room::{
                encryption::RoomEncryptionEventContent,
                message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
        },
    },
};
use plexus::ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, sign_json},
};
use sdk_support::spawn_sync;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_messages_decrypt_and_history_restores_from_backup() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let alice = server.sdk_logged_in("alice").await;
    let bob = server.sdk_logged_in("bob").await;

    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let received = received.clone();
        bob.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let received = received.clone();
            async move { received.lock().unwrap().push(ev.content.body().to_owned()) }
        });
    }
    let alice_sync = spawn_sync(&alice);
    let bob_sync = spawn_sync(&bob);

    let request = matrix_sdk::ruma::assign!(create_room::v3::Request::new(), {
        invite: vec![bob.user_id().unwrap().to_owned()],
        initial_state: vec![InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any()],
    });
    let room = alice.create_room(request).await.expect("encrypted room created");
    let room_id = room.room_id().to_owned();
    wait_until("bob to see the invite", || {
        let bob = bob.clone();
        let room_id = room_id.clone();
        async move { bob.get_room(&room_id).is_some() }
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    wait_until("alice to see bob joined", || {
        let room = room.clone();
        async move {
            room.sync_members().await.ok();
            room.joined_members_count() == 2
        }
    })
    .await;
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());

    for i in 1..=3 {
        room.send(RoomMessageEventContent::text_plain(format!("secret {i}"))).await.expect("alice sends");
    }
    wait_until("bob to decrypt three messages", || {
        let received = received.clone();
        async move { received.lock().unwrap().len() >= 3 }
    })
    .await;
    assert_eq!(*received.lock().unwrap(), vec!["secret 1", "secret 2", "secret 3"]);
    // The server stored ciphertext only.
    let bob_token = bob.access_token().unwrap();
    let (_, page) = server.messages(&bob_token, room_id.as_str(), "dir=b&limit=20").await;
    assert!(!page.to_string().contains("secret 1"), "no plaintext on the server");
    assert!(page.to_string().contains("m.megolm.v1.aes-sha2"));

    // Bob bootstraps cross-signing (the first upload needs no password),
    // then sets up recovery: a key backup and secret storage.
    bob.encryption().bootstrap_cross_signing(None).await.expect("cross-signing bootstrapped");
    let recovery_key =
        bob.encryption().recovery().enable().wait_for_backups_to_upload().await.expect("recovery enabled");
    let (_, keys) = server
        .post("/_matrix/client/v3/keys/query", Some(&bob_token), json!({"device_keys": {"@bob:plexus.test": []}}))
        .await;
    assert!(keys["master_keys"]["@bob:plexus.test"].is_object(), "cross-signing keys were uploaded: {keys}");
    let (_, backup) = server.get("/_matrix/client/v3/room_keys/version", Some(&bob_token)).await;
    assert!(backup["count"].as_u64().unwrap() >= 1, "room keys were backed up: {backup}");

    // A new device of bob restores the keys and reads the history.
    let bob2 = server.sdk_logged_in("bob").await;
    bob2.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await.expect("first sync");
    bob2.encryption().recovery().recover(&recovery_key).await.expect("recovered from the recovery key");
    bob2.encryption().backups().download_room_keys_for_room(&room_id).await.expect("keys downloaded");
    let room2 = bob2.get_room(&room_id).expect("the new device knows the room");
    let page = room2.messages(MessagesOptions::backward()).await.expect("history");
    assert_eq!(common::page_bodies(&page), vec!["secret 1", "secret 2", "secret 3"]);

    alice_sync.abort();
    bob_sync.abort();
}

/// A device's identity keys, signed by the device, as a client uploads them.
fn signed_device_keys(user: &str, device: &str) -> (Value, Ed25519KeyPair) {
    let doc = Ed25519KeyPair::generate();
    let pair = Ed25519KeyPair::from_der(&doc, device.to_owned()).unwrap();
    let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
    let mut obj: CanonicalJsonObject = serde_json::from_value(json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("ed25519:{device}"): public, format!("curve25519:{device}"): "Y3VydmUyNTUxOWtleWZvcnRlc3RpbmdvbmxpZXM"},
    }))
    .unwrap();
    sign_json(user, &pair, &mut obj).unwrap();
    (serde_json::to_value(obj).unwrap(), pair)
}

fn signed_otk(user: &str, pair: &Ed25519KeyPair, n: usize) -> Value {
    let mut obj: CanonicalJsonObject =
        serde_json::from_value(json!({"key": format!("b3RrZm9ydGVzdGluZ251bWJlcnt7bn19{n:04}")})).unwrap();
    sign_json(user, pair, &mut obj).unwrap();
    serde_json::to_value(obj).unwrap()
}

async fn upload(server: &TestServer, user: &TestUser, body: Value) -> (u16, Value) {
    server.post("/_matrix/client/v3/keys/upload", Some(&user.access_token), body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_never_hand_out_a_key_twice() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (keys, pair) = signed_device_keys(&alice.user_id, &alice.device_id);
    let mut otks = serde_json::Map::new();
    for n in 0..20 {
        otks.insert(format!("signed_curve25519:AAAA{n:02}"), signed_otk(&alice.user_id, &pair, n));
    }
    let (status, counts) = upload(&server, &alice, json!({"device_keys": keys, "one_time_keys": otks})).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 20);

    let mut claimers = Vec::new();
    for i in 0..4 {
        claimers.push(server.register(&format!("claimer{i}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for claimer in &claimers {
        for _ in 0..7 {
            let (http, url, token) =
                (server.http.clone(), server.url("/_matrix/client/v3/keys/claim"), claimer.access_token.clone());
            let body =
                json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}});
            tasks.spawn(async move {
                http.post(url).bearer_auth(token).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
            });
        }
    }
    let mut handed_out = Vec::new();
    while let Some(resp) = tasks.join_next().await {
        let resp = resp.unwrap();
        if let Some(keys) = resp["one_time_keys"][&alice.user_id][&alice.device_id].as_object() {
            handed_out.extend(keys.keys().cloned());
        }
    }
    assert_eq!(handed_out.len(), 20, "28 claims for 20 keys: each key once, then nothing (no fallback)");
    let unique: HashSet<&String> = handed_out.iter().collect();
    assert_eq!(unique.len(), 20, "no key was handed out twice");

    // With the one-time keys gone, the fallback key is handed out (and reused).
    let fallback = json!({"signed_curve25519:FALLBACK": signed_otk(&alice.user_id, &pair, 99)});
    upload(&server, &alice, json!({"fallback_keys": fallback})).await;
    let body = json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}});
    for _ in 0..2 {
        let (_, resp) =
            server.post("/_matrix/client/v3/keys/claim", Some(&claimers[0].access_token), body.clone()).await;
        assert!(resp["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:FALLBACK"].is_object());
    }
    let (_, sync) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&alice.access_token)).await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]), "the fallback key was used");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_keys_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (good, _) = signed_device_keys(&alice.user_id, &alice.device_id);

    let (wrong_user, _) = signed_device_keys("@mallory:plexus.test", &alice.device_id);
    let (wrong_device, _) = signed_device_keys(&alice.user_id, "OTHERDEVICE");
    for (what, keys) in [("wrong user", wrong_user), ("wrong device", wrong_device)] {
        let (status, body) = upload(&server, &alice, json!({"device_keys": keys})).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(matches!(body["errcode"].as_str(), Some("M_INVALID_PARAM" | "M_BAD_JSON")), "{what}: {body}");
    }
    let bad_otk = json!({"signed_curve25519:AAAA": {"key": "abc", "signatures": {alice.user_id.clone(): {format!("ed25519:{}", alice.device_id): "bm90IGEgc2lnbmF0dXJl"}}}});
    let (status, _) = upload(&server, &alice, json!({"device_keys": good, "one_time_keys": bad_otk})).await;
    assert_eq!(status, 400, "a forged one-time key signature");
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice.access_token),
            json!({"device_keys": {alice.user_id.clone(): []}}),
        )
        .await;
    assert_eq!(query["device_keys"][&alice.user_id], json!({}), "nothing was stored");

    // The good upload works, and a later change of identity keys is refused.
    let (status, _) = upload(&server, &alice, json!({"device_keys": good})).await;
    assert_eq!(status, 200);
    let (other, _) = signed_device_keys(&alice.user_id, &alice.device_id);
    let (status, body) = upload(&server, &alice, json!({"device_keys": other})).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")));
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice.access_token),
            json!({"device_keys": {alice.user_id.clone(): []}}),
        )
        .await;
    assert_eq!(query["device_keys"][&alice.user_id][&alice.device_id]["keys"], good["keys"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn to_device_messages_survive_a_restart_until_acknowledged() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let first = server.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await.1;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let path = "/_matrix/client/v3/sendToDevice/m.test.ping/txn1";
    let body = json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}}});
    assert_eq!(server.put(path, Some(&alice.access_token), body.clone()).await.0, 200);
    assert_eq!(server.put(path, Some(&alice.access_token), body).await.0, 200, "a retried transaction is accepted");

    server.restart().await;

    let sync1 =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&bob.access_token)).await.1;
    let events = sync1["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "delivered once, despite the retried transaction: {events:?}");
    assert_eq!(events[0]["sender"], alice.user_id.as_str());
    assert_eq!(events[0]["content"]["n"], 1);
    // Not acknowledged yet: the same token gets it again.
    let again =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&bob.access_token)).await.1;
    assert_eq!(again["to_device"]["events"].as_array().unwrap().len(), 1);
    // Syncing with the later token acknowledges it: gone.
    let next = sync1["next_batch"].as_str().unwrap();
    let after = server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={next}"), Some(&bob.access_token)).await.1;
    assert!(after["to_device"]["events"].as_array().is_none_or(|e| e.is_empty()), "{after}");
    let replay =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&bob.access_token)).await.1;
    assert!(replay["to_device"]["events"].as_array().is_none_or(|e| e.is_empty()), "deleted after acknowledgement");

    // The wildcard reaches every device.
    let (_, other) = server.login("bob", PASSWORD).await;
    let other_token = other["access_token"].as_str().unwrap();
    let body = json!({"messages": {bob.user_id.clone(): {"*": {"n": 2}}}});
    server.put("/_matrix/client/v3/sendToDevice/m.test.ping/txn2", Some(&alice.access_token), body).await;
    for token in [bob.access_token.as_str(), other_token] {
        let s = server.get("/_matrix/client/v3/sync?timeout=0", Some(token)).await.1;
        assert!(s["to_device"]["events"].as_array().unwrap().iter().any(|e| e["content"]["n"] == 2));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn device_list_changes_reach_room_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let first = server.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await.1;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let (keys, _) = signed_device_keys(&alice.user_id, &alice.device_id);
    upload(&server, &alice, json!({"device_keys": keys})).await;
    let next = server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&bob.access_token)).await.1;
    assert!(next["device_lists"]["changed"].as_array().unwrap().iter().any(|u| u == alice.user_id.as_str()));
    let to = next["next_batch"].as_str().unwrap();
    let (_, changes) =
        server.get(&format!("/_matrix/client/v3/keys/changes?from={since}&to={to}"), Some(&bob.access_token)).await;
    assert!(changes["changed"].as_array().unwrap().iter().any(|u| u == alice.user_id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn key_backup_keeps_the_better_session() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let t = Some(alice.access_token.as_str());
    let algorithm = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc", "signatures": {}}});
    let (status, created) = server.post("/_matrix/client/v3/room_keys/version", t, algorithm).await;
    assert_eq!(status, 200);
    let version = created["version"].as_str().unwrap().to_owned();
    // Markers are base64, as the session data fields are.
    let session = |fmi: u64, verified: bool, marker: &str| {
        json!({"first_message_index": fmi, "forwarded_count": 0, "is_verified": verified,
               "session_data": {"ephemeral": marker, "ciphertext": "Y2lwaGVy", "mac": "bWFj"}})
    };
    let path = format!("/_matrix/client/v3/room_keys/keys/!room:plexus.test/sess1?version={version}");
    let (status, first) = server.put(&path, t, session(5, false, "Zmlyc3Q")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["count"], 1);
    // A worse key (higher index) does not replace it; a better one does.
    server.put(&path, t, session(9, false, "d29yc2U")).await;
    let (_, kept) = server.get(&path, t).await;
    assert_eq!(kept["session_data"]["ephemeral"], "Zmlyc3Q");
    let (_, better) = server.put(&path, t, session(2, false, "YmV0dGVy")).await;
    assert_ne!(better["etag"], first["etag"], "the etag changes with the content");
    server.put(&path, t, session(0, true, "dmVyaWZpZWQ")).await;
    server.put(&path, t, session(0, false, "dW52ZXJpZmllZA")).await;
    let (_, kept) = server.get(&path, t).await;
    assert_eq!(kept["session_data"]["ephemeral"], "dmVyaWZpZWQ", "verified beats unverified");
    let (_, all) = server.get(&format!("/_matrix/client/v3/room_keys/keys?version={version}"), t).await;
    assert_eq!(all["rooms"]["!room:plexus.test"]["sessions"]["sess1"]["first_message_index"], 0);

    // A write to an old version is refused with the current version.
    let (_, newer) = server
        .post(
            "/_matrix/client/v3/room_keys/version",
            t,
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}}),
        )
        .await;
    let (status, wrong) = server.put(&path, t, session(0, true, "bGF0ZQ")).await;
    assert_eq!(status, 403);
    assert_eq!(wrong["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(wrong["current_version"], newer["version"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_chats_can_be_encrypted_by_default() {
    let server =
        TestServer::start_with(|c| c.rooms.encrypt_by_default = plexus::config::EncryptByDefault::Private).await;
    let alice = server.register("alice").await;
    let private = server.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    let (status, encryption) = server.get_state(&alice.access_token, &private, "m.room.encryption", "").await;
    assert_eq!((status, encryption["algorithm"].as_str()), (200, Some("m.megolm.v1.aes-sha2")));
    let public = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    assert_eq!(server.get_state(&alice.access_token, &public, "m.room.encryption", "").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn former_room_mates_are_listed_as_left() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let first = server.get("/_matrix/client/v3/sync?timeout=0", Some(&alice.access_token)).await.1;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    server.join(&bob.access_token, &room).await;
    let joined =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&alice.access_token)).await.1;
    assert!(
        joined["device_lists"]["changed"].as_array().unwrap().iter().any(|u| u == bob.user_id.as_str()),
        "{joined}"
    );
    let since = joined["next_batch"].as_str().unwrap().to_owned();
    server.room_post(&bob.access_token, &room, "leave", json!({})).await;
    let left =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), Some(&alice.access_token)).await.1;
    assert!(left["device_lists"]["left"].as_array().unwrap().iter().any(|u| u == bob.user_id.as_str()), "{left}");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_keys_are_stored_without_checking_their_self_signature_as_synapse_does() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // Placeholder keys and signature, as Sytest uploads: clients, not the
    // server, verify device keys before they use them.
    let keys = json!({
        "user_id": alice.user_id, "device_id": alice.device_id,
        "algorithms": ["m.olm.curve25519-aes-sha256", "org.example.future"],
        "keys": {format!("curve25519:{}", alice.device_id): "curve25519+key",
                 format!("ed25519:{}", alice.device_id): "ed25519+key"},
        "signatures": {alice.user_id.clone(): {format!("ed25519:{}", alice.device_id): "self+signature"}},
    });
    let (status, body) = upload(
        &server,
        &alice,
        json!({"device_keys": keys.clone(),
        "one_time_keys": {"my_algorithm:my_id_1": "KIhHVkAQi8r41aPNql2zTqQsInpFa8XdslQLC8F8BHc"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one_time_key_counts"]["my_algorithm"], 1);
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice.access_token),
            json!({"device_keys": {alice.user_id.clone(): []}}),
        )
        .await;
    assert_eq!(query["device_keys"][&alice.user_id][&alice.device_id]["keys"], keys["keys"]);

    // Nor must a device's keys include its ed25519 and curve25519 ones
    // (Sytest uploads others alone), as with Synapse.
    let bob = server.register("bob").await;
    let only_other = json!({
        "user_id": bob.user_id, "device_id": bob.device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {format!("org.example:{}", bob.device_id): "opaque"}, "signatures": {},
    });
    let (status, body) = upload(&server, &bob, json!({"device_keys": only_other})).await;
    assert_eq!(status, 200, "{body}");
}
