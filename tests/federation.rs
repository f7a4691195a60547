//! Federation between real servers on loopback, over HTTPS with
//! certificates from a test CA: keys, signed requests, joins, messages both
//! ways, typing and receipts; unsigned and forged requests are refused.

#![recursion_limit = "256"]

mod common;
#[path = "common/sdk.rs"]
mod sdk_support;

use std::time::Duration;

use common::{TestServer, TestUser, assert_error, enc, free_port, make_test_certs};
use serde_json::{Value, json};

struct Pair {
    a: TestServer,
    b: TestServer,
    a_name: String,
    b_name: String,
    _certs: tempfile::TempDir,
}

type Certs = (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);

/// A federating server named `localhost:PORT` on a free port; returns it
/// and its name.
async fn start_server(certs: &Certs) -> (TestServer, String) {
    start_server_named(certs, "localhost").await
}

/// A federating server named `HOST:PORT` (HOST is `localhost` or
/// `127.0.0.1`) on a free port. A port taken between choosing and binding
/// it is retried.
async fn start_server_named(certs: &Certs, host: &str) -> (TestServer, String) {
    for _ in 0..20 {
        let port = free_port();
        let (ca, cert, key) = certs.clone();
        let name = format!("{host}:{port}");
        let started = TestServer::try_start_with(move |c| {
            c.server.server_name = name.try_into().unwrap();
            c.federation.enabled = true;
            c.federation.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
            c.federation.tls_cert = Some(cert);
            c.federation.tls_key = Some(key);
            c.federation.extra_ca_files = vec![ca];
            c.federation.allow_loopback = true;
        })
        .await;
        match started {
            Ok(server) => return (server, format!("{host}:{port}")),
            Err(plexus::StartError::Listen { .. }) => continue,
            Err(e) => panic!("server starts: {e}"),
        }
    }
    panic!("no free port for a federation listener");
}

async fn pair() -> Pair {
    let (mut servers, certs) = servers(2).await;
    let (b, b_name) = servers.pop().unwrap();
    let (a, a_name) = servers.pop().unwrap();
    Pair { a, b, a_name, b_name, _certs: certs }
}

/// `n` federating servers and their names, sharing one test CA.
async fn servers(n: usize) -> (Vec<(TestServer, String)>, tempfile::TempDir) {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(start_server(&certs).await);
    }
    (out, certs_dir)
}

/// Syncs until `found` finds something in a sync response, or panics.
async fn sync_until(server: &TestServer, user: &TestUser, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    let mut since: Option<String> = None;
    for _ in 0..40 {
        let path = match &since {
            Some(s) => format!("/_matrix/client/v3/sync?timeout=500&since={s}"),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, body) = server.get(&path, Some(&user.access_token)).await;
        assert_eq!(status, 200, "{body}");
        if found(&body) {
            return body;
        }
        since = body["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{what} never arrived for {}", user.user_id);
}

fn timeline_has(body: &Value, room: &str, text: &str) -> bool {
    body["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["content"]["body"] == text))
}

#[tokio::test]
async fn two_servers_share_a_room() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;

    // Each server publishes a self-signed key document.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let port_a = p.a_name.rsplit(':').next().unwrap();
    let keys: Value = http
        .get(format!("https://127.0.0.1:{port_a}/_matrix/key/v2/server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["server_name"], p.a_name.as_str());
    assert!(keys["signatures"][p.a_name.as_str()].is_object(), "{keys}");

    let room = p.a.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Across"})).await;
    let (status, body) =
        p.b.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());

    // Bob's server has the room's state: its name, and both members.
    let (status, name) = p.b.get_state(&bob.access_token, &room, "m.room.name", "").await;
    assert_eq!((status, name["name"].as_str()), (200, Some("Across")), "{name}");
    let (status, members) =
        p.b.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{members}");
    assert!(members["joined"][&alice.user_id].is_object() && members["joined"][&bob.user_id].is_object());

    // Alice's server learned of the join.
    sync_until(&p.a, &alice, "bob's join", |b| {
        b["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|ev| ev.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()))
    })
    .await;

    // Messages both ways.
    let (status, sent) = p.a.send_text(&alice.access_token, &room, "hello from A").await;
    assert_eq!(status, 200, "{sent}");
    sync_until(&p.b, &bob, "alice's message", |b| timeline_has(b, &room, "hello from A")).await;
    let (status, sent_b) = p.b.send_text(&bob.access_token, &room, "hello from B").await;
    assert_eq!(status, 200, "{sent_b}");
    let body = sync_until(&p.a, &alice, "bob's message", |b| timeline_has(b, &room, "hello from B")).await;
    let event = body["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["body"] == "hello from B")
        .unwrap()
        .clone();
    assert_eq!(event["sender"], bob.user_id.as_str());
    assert_eq!(event["event_id"], sent_b["event_id"]);

    // Typing from B reaches A; a receipt from A reaches B.
    let (status, _) =
        p.b.put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&bob.user_id)),
            Some(&bob.access_token),
            json!({"typing": true, "timeout": 20000}),
        )
        .await;
    assert_eq!(status, 200);
    sync_until(&p.a, &alice, "bob typing", |b| {
        b["rooms"]["join"][&room]["ephemeral"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"].as_array().is_some_and(|u| u.contains(&json!(bob.user_id)))
            })
        })
    })
    .await;
    let event_id = sent_b["event_id"].as_str().unwrap();
    let (status, _) =
        p.a.post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(event_id)),
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    sync_until(&p.b, &bob, "alice's receipt", |b| {
        b["rooms"]["join"][&room]["ephemeral"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| e["type"] == "m.receipt" && e["content"][event_id]["m.read"][&alice.user_id].is_object())
        })
    })
    .await;

    // Profiles of users on the other server are asked of their server.
    let (status, _) =
        p.a.put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
            Some(&alice.access_token),
            json!({"displayname": "Alice of A"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, profile) =
        p.b.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)), Some(&bob.access_token)).await;
    assert_eq!((status, profile["displayname"].as_str()), (200, Some("Alice of A")), "{profile}");

    // A state change on A is state on B.
    let (status, _) =
        p.a.put_state(&alice.access_token, &room, "m.room.topic", "", json!({"topic": "federated"})).await;
    assert_eq!(status, 200);
    for _ in 0..50 {
        let (_, topic) = p.b.get_state(&bob.access_token, &room, "m.room.topic", "").await;
        if topic["topic"] == "federated" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the topic never reached B");
}

#[tokio::test]
async fn rooms_of_versions_1_and_2_are_shared() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let (_, caps) = p.a.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    for version in ["1", "2"] {
        assert_eq!(caps["capabilities"]["m.room_versions"]["available"][version], "stable", "{caps}");
        let room =
            p.a.create_room(
                &alice.access_token,
                json!({
                    "room_version": version, "preset": "public_chat", "name": "Old",
                    "power_level_content_override": {"users": {alice.user_id.clone(): 100, bob.user_id.clone(): 50}},
                }),
            )
            .await;
        let (status, body) =
            p.b.post(
                &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&p.a_name)),
                Some(&bob.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "v{version}: {body}");
        let (status, create) = p.b.get_state(&bob.access_token, &room, "m.room.create", "").await;
        assert_eq!((status, create["room_version"].as_str()), (200, Some(version)), "{create}");
        let (_, name) = p.b.get_state(&bob.access_token, &room, "m.room.name", "").await;
        assert_eq!(name["name"], "Old");
        sync_until(&p.a, &alice, "bob's join", |b| {
            b["rooms"]["join"][&room]["timeline"]["events"].as_array().is_some_and(|ev| {
                ev.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
            })
        })
        .await;

        // Event ids are `$localpart:server` of the server that made them.
        let text_a = format!("v{version} from A");
        let (status, sent_a) = p.a.send_text(&alice.access_token, &room, &text_a).await;
        assert_eq!(status, 200, "{sent_a}");
        assert!(sent_a["event_id"].as_str().unwrap().ends_with(&format!(":{}", p.a_name)), "{sent_a}");
        sync_until(&p.b, &bob, "alice's message", |b| timeline_has(b, &room, &text_a)).await;
        let text_b = format!("v{version} from B");
        let (status, sent_b) = p.b.send_text(&bob.access_token, &room, &text_b).await;
        assert_eq!(status, 200, "{sent_b}");
        let id_b = sent_b["event_id"].as_str().unwrap();
        assert!(id_b.ends_with(&format!(":{}", p.b_name)), "{sent_b}");
        let body = sync_until(&p.a, &alice, "bob's message", |b| timeline_has(b, &room, &text_b)).await;
        let event = body["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["content"]["body"] == text_b.as_str())
            .unwrap()
            .clone();
        assert_eq!((event["sender"].as_str(), event["event_id"].as_str()), (Some(bob.user_id.as_str()), Some(id_b)));
        // As A stored it: the id inside, prev and auth events as [id, hashes] pairs.
        let id = plexus::ruma::OwnedEventId::try_from(id_b).unwrap();
        let stored = p.a.services().rooms.pdu_jsons(&[id]).await.unwrap();
        let pdu: Value = serde_json::from_str(stored[0].get()).unwrap();
        assert_eq!(pdu["event_id"], id_b);
        for refs in [&pdu["prev_events"], &pdu["auth_events"]] {
            let pairs = refs.as_array().unwrap();
            assert!(!pairs.is_empty(), "{pdu}");
            assert!(pairs.iter().all(|r| r[0].is_string() && r[1]["sha256"].is_string()), "{pdu}");
        }

        // State from B becomes state on A.
        let (status, _) =
            p.b.put_state(&bob.access_token, &room, "m.room.topic", "", json!({"topic": format!("v{version}")})).await;
        assert_eq!(status, 200);
        let mut topic = Value::Null;
        for _ in 0..50 {
            topic = p.a.get_state(&alice.access_token, &room, "m.room.topic", "").await.1;
            if topic["topic"] == format!("v{version}").as_str() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(topic["topic"], format!("v{version}").as_str(), "the topic set on B reached A");
    }
}

#[tokio::test]
async fn join_by_remote_alias() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let carol = p.b.register("carol").await;
    let room = p.a.create_room(&alice.access_token, json!({"preset": "public_chat", "room_alias_name": "lobby"})).await;
    let alias = format!("#lobby:{}", p.a_name);
    // B resolves A's alias by asking A.
    let (status, resolved) =
        p.b.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)), Some(&carol.access_token)).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["room_id"], room.as_str());
    assert!(resolved["servers"].as_array().unwrap().contains(&json!(p.a_name)), "{resolved}");
    let missing = format!("#nowhere:{}", p.a_name);
    let got = p.b.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&missing)), Some(&carol.access_token)).await;
    assert_error(&got, 404, "M_NOT_FOUND");
    let (status, body) =
        p.b.post(&format!("/_matrix/client/v3/join/{}", enc(&alias)), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    let (status, _) = p.b.send_text(&carol.access_token, &room, "hi lobby").await;
    assert_eq!(status, 200);
    sync_until(&p.a, &alice, "carol's message", |b| timeline_has(b, &room, "hi lobby")).await;
}

#[tokio::test]
async fn public_room_directory_of_another_server() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let listed = p.a.create_room(&alice.access_token, json!({"visibility": "public", "name": "Listed on A"})).await;
    p.a.create_room(&alice.access_token, json!({"visibility": "private", "name": "Unlisted"})).await;
    let (status, page) =
        p.b.get(&format!("/_matrix/client/v3/publicRooms?server={}", enc(&p.a_name)), Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{page}");
    let rooms = page["chunk"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{page}");
    assert_eq!((rooms[0]["room_id"].as_str(), rooms[0]["name"].as_str()), (Some(listed.as_str()), Some("Listed on A")));
    let (status, found) =
        p.b.post(
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&p.a_name)),
            Some(&bob.access_token),
            json!({"filter": {"generic_search_term": "nothing like it"}}),
        )
        .await;
    assert_eq!((status, found["chunk"].as_array().map(Vec::len)), (200, Some(0)), "{found}");
}

#[tokio::test]
async fn private_rooms_refuse_remote_joins() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = p.a.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    let got =
        p.b.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    // Nothing changed on either side.
    let (_, rooms) = p.b.get("/_matrix/client/v3/joined_rooms", Some(&bob.access_token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
    let (_, members) =
        p.a.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.access_token)).await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn unsigned_and_forged_requests_are_refused() {
    let p = pair().await;
    let port_a = p.a_name.rsplit(':').next().unwrap();
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let url = format!("https://127.0.0.1:{port_a}/_matrix/federation/v1/send/t1");
    let body = json!({"origin": p.b_name, "origin_server_ts": 1, "pdus": []});

    let resp = http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["errcode"], "M_UNAUTHORIZED");

    // A header naming B but signed with a key B does not have.
    let forged = format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:a_fake\",sig=\"{}\"",
        p.b_name,
        p.a_name,
        "A".repeat(86)
    );
    let resp = http.put(&url).header("Authorization", forged).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["errcode"], "M_UNAUTHORIZED");

    // The version endpoint needs no signature.
    let version: Value = http
        .get(format!("https://127.0.0.1:{port_a}/_matrix/federation/v1/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["server"]["name"], "Plexus");
}

#[tokio::test]
async fn invite_join_leave_and_late_joiner_backfills() {
    let (servers, _certs) = servers(3).await;
    let [(a, a_name), (b, _), (c, _)] = <[_; 3]>::try_from(servers).ok().unwrap();
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let charlie = c.register("charlie").await;
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat", "name": "Three"})).await;

    // alice invites bob; bob's server shows the invite with the room's name.
    let (status, body) = a.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200, "{body}");
    let sync = sync_until(&b, &bob, "the invite", |s| s["rooms"]["invite"][&room].is_object()).await;
    let invite_state = sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap().clone();
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Three"), "{sync}");
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "invite"
        && e["sender"] == alice.user_id.as_str()));

    // bob joins through the inviting server (the room id names none).
    let (status, body) = b.join(&bob.access_token, &room).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = a.send_text(&alice.access_token, &room, "first from A").await;
    assert_eq!(status, 200);
    sync_until(&b, &bob, "alice's message", |s| timeline_has(s, &room, "first from A")).await;
    let (status, _) = b.send_text(&bob.access_token, &room, "first from B").await;
    assert_eq!(status, 200);
    sync_until(&a, &alice, "bob's message", |s| timeline_has(s, &room, "first from B")).await;

    // bob leaves; alice's server sees it.
    let (status, _) = b.room_post(&bob.access_token, &room, "leave", json!({})).await;
    assert_eq!(status, 200);
    sync_until(&a, &alice, "bob's leave", |s| {
        s["rooms"]["join"][&room]["timeline"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| e["state_key"] == bob.user_id.as_str() && e["content"]["membership"] == "leave")
        })
    })
    .await;
    let (_, members) =
        a.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.access_token)).await;
    assert!(members["joined"][&bob.user_id].is_null(), "{members}");

    // charlie joins late and pages back into the history from before.
    let (status, body) = c
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&a_name)),
            Some(&charlie.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut bodies = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let query = match &from {
            Some(f) => format!("dir=b&limit=50&from={f}"),
            None => "dir=b&limit=50".to_owned(),
        };
        let (status, page) = c.messages(&charlie.access_token, &room, &query).await;
        assert_eq!(status, 200, "{page}");
        for e in page["chunk"].as_array().unwrap() {
            if let Some(b) = e["content"]["body"].as_str() {
                bodies.push(b.to_owned());
            }
            assert_ne!(e["type"], Value::Null);
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    assert_eq!(bodies, vec!["first from B".to_owned(), "first from A".to_owned()], "charlie's history");
}

/// A page that fills up with the little history a late joiner's server
/// has still gives `end`: the next page backfills what came before.
#[tokio::test]
async fn a_late_joiners_full_first_page_leads_on_to_older_history() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = p.a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, _) = p.a.send_text(&alice.access_token, &room, "before bob came").await;
    assert_eq!(status, 200);
    let (status, body) =
        p.b.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, page) = p.b.messages(&bob.access_token, &room, "dir=b&limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1);
    let mut from = page["end"].as_str().expect("an end while older history may exist").to_owned();
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let (status, page) = p.b.messages(&bob.access_token, &room, &format!("dir=b&limit=50&from={from}")).await;
        assert_eq!(status, 200, "{page}");
        bodies.extend(
            page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).map(str::to_owned),
        );
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    assert_eq!(bodies, ["before bob came"]);
}

#[tokio::test]
async fn declining_a_remote_invite() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = p.a.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    let (status, body) = p.a.room_post(&alice.access_token, &room, "invite", json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&p.b, &bob, "the invite", |s| s["rooms"]["invite"][&room].is_object()).await;
    let (status, body) = p.b.room_post(&bob.access_token, &room, "leave", json!({})).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&p.a, &alice, "bob's refusal", |s| {
        s["rooms"]["join"][&room]["timeline"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| e["state_key"] == bob.user_id.as_str() && e["content"]["membership"] == "leave")
        })
    })
    .await;
    let (_, sync) = p.b.get("/_matrix/client/v3/sync?timeout=0", Some(&bob.access_token)).await;
    assert!(sync["rooms"]["invite"][&room].is_null(), "{sync}");
}

/// alice on A creates a public room (v12) that bob on B joins; returns its id.
async fn shared_room(p: &Pair, alice: &TestUser, bob: &TestUser, extra: Value) -> String {
    let mut body = json!({"preset": "public_chat"});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let room = p.a.create_room(&alice.access_token, body).await;
    let (status, body) =
        p.b.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    room
}

#[tokio::test]
async fn presence_reaches_users_of_other_servers_in_shared_rooms() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = shared_room(&p, &alice, &bob, json!({})).await;
    sync_until(&p.a, &alice, "bob's join", |s| {
        s["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["state_key"] == bob.user_id.as_str()))
    })
    .await;

    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id));
    let (status, body) =
        p.b.put(&path, Some(&bob.access_token), json!({"presence": "unavailable", "status_msg": "at lunch"})).await;
    assert_eq!(status, 200, "{body}");
    let sync = sync_until(&p.a, &alice, "bob's presence", |s| {
        s["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["sender"] == bob.user_id.as_str() && e["content"]["presence"] == "unavailable")
        })
    })
    .await;
    let event = sync["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == bob.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(event["type"], "m.presence");
    assert_eq!(event["content"]["status_msg"], "at lunch");
    let (status, seen) = p.a.get(&path, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!((seen["presence"].as_str(), seen["status_msg"].as_str()), (Some("unavailable"), Some("at lunch")));

    // A server speaks only for its own users: B claiming alice is away
    // changes nothing on A.
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    let (status, _) = p.a.put(&path, Some(&alice.access_token), json!({"presence": "online"})).await;
    assert_eq!(status, 200);
    let forged = json!({"edu_type": "m.presence", "content": {"push": [
        {"user_id": alice.user_id, "presence": "offline", "status_msg": "forged", "last_active_ago": 0}
    ]}});
    let (status, body) = forged::AsB::new(&p).send_edus(vec![forged]).await;
    assert_eq!(status, 200, "{body}");
    let (_, seen) = p.a.get(&path, Some(&alice.access_token)).await;
    assert_eq!(seen["presence"], "online", "{seen}");
    assert!(seen.get("status_msg").is_none_or(Value::is_null), "{seen}");
}

/// Message bodies of a room as `user` pages back through all of it, oldest first.
async fn all_bodies(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let query = match &from {
            Some(f) => format!("dir=b&limit=100&from={f}"),
            None => "dir=b&limit=100".to_owned(),
        };
        let (status, page) = server.messages(&user.access_token, room, &query).await;
        assert_eq!(status, 200, "{page}");
        for e in page["chunk"].as_array().unwrap() {
            if let Some(b) = e["content"]["body"].as_str() {
                bodies.push(b.to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    bodies.reverse();
    bodies
}

#[tokio::test]
async fn messages_sent_while_a_server_is_down_arrive_once_in_order() {
    let mut p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = shared_room(&p, &alice, &bob, json!({})).await;
    sync_until(&p.a, &alice, "bob's join", |s| s["rooms"]["join"][&room].is_object()).await;

    p.b.stop().await;
    let expected: Vec<String> = (0..100).map(|i| format!("while down {i}")).collect();
    for text in &expected {
        let (status, _) = p.a.send_text(&alice.access_token, &room, text).await;
        assert_eq!(status, 200);
    }
    p.b.start_again().await;

    // The sender retries with back-off; give it time, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let bodies = all_bodies(&p.b, &bob, &room).await;
        if bodies.len() >= expected.len() || tokio::time::Instant::now() > deadline {
            assert_eq!(bodies, expected, "B has every message once, in order");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn concurrent_topic_changes_resolve_to_the_same_state() {
    concurrent_topic_changes(None).await;
}

#[tokio::test]
async fn concurrent_topic_changes_in_a_version_1_room_resolve_to_the_same_state() {
    // Room version 1 has its own state resolution.
    concurrent_topic_changes(Some("1")).await;
}

async fn concurrent_topic_changes(version: Option<&str>) {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    // Version 12 creators are privileged by the create event; earlier
    // versions need them in `users`.
    let mut extra = json!({"power_level_content_override": {"users": {bob.user_id.clone(): 50}}});
    if let Some(v) = version {
        extra["room_version"] = json!(v);
        extra["power_level_content_override"]["users"][&alice.user_id] = json!(100);
    }
    let room = shared_room(&p, &alice, &bob, extra).await;
    sync_until(&p.a, &alice, "bob's join", |s| s["rooms"]["join"][&room].is_object()).await;

    // Cut the servers off from each other, change the topic on both sides.
    p.a.services().federation.sender.set_paused(true);
    p.b.services().federation.sender.set_paused(true);
    let (status, from_a) =
        p.a.put_state(&alice.access_token, &room, "m.room.topic", "", json!({"topic": "from A"})).await;
    assert_eq!(status, 200, "{from_a}");
    let (status, from_b) =
        p.b.put_state(&bob.access_token, &room, "m.room.topic", "", json!({"topic": "from B"})).await;
    assert_eq!(status, 200, "{from_b}");
    p.a.services().federation.sender.set_paused(false);
    p.b.services().federation.sender.set_paused(false);

    // Each server gets the other's event, then both agree.
    let ids = [from_a["event_id"].as_str().unwrap(), from_b["event_id"].as_str().unwrap()];
    for _ in 0..100 {
        let mut known = 0;
        for (server, user) in [(&p.a, &alice), (&p.b, &bob)] {
            for id in ids {
                let (status, _) = server
                    .get(
                        &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(id)),
                        Some(&user.access_token),
                    )
                    .await;
                known += usize::from(status == 200);
            }
        }
        if known == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, topic_a) = p.a.get_state(&alice.access_token, &room, "m.room.topic", "").await;
    let (_, topic_b) = p.b.get_state(&bob.access_token, &room, "m.room.topic", "").await;
    assert_eq!(topic_a, topic_b, "both servers resolve to the same topic");
    assert!(topic_a["topic"] == "from A" || topic_a["topic"] == "from B", "{topic_a}");
    // And they keep working together afterwards.
    let (status, _) = p.b.send_text(&bob.access_token, &room, "after the split").await;
    assert_eq!(status, 200);
    sync_until(&p.a, &alice, "the message after the split", |s| timeline_has(s, &room, "after the split")).await;
}

#[tokio::test]
async fn server_acls_shut_a_denied_server_out() {
    // B is named by its IP address so that an ACL can tell it from A
    // (ACLs match hosts without ports, and both would be `localhost`).
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (a, a_name) = start_server(&certs).await;
    let (b, b_name) = start_server_named(&certs, "127.0.0.1").await;
    let p = Pair { a, b, a_name, b_name, _certs: certs_dir };
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let carol = p.b.register("carol").await;
    let room = shared_room(&p, &alice, &bob, json!({})).await;
    sync_until(&p.a, &alice, "bob's join", |s| s["rooms"]["join"][&room].is_object()).await;
    let b_server: plexus::ruma::OwnedServerName = p.b_name.as_str().try_into().unwrap();
    let room_id = plexus::ruma::OwnedRoomId::try_from(room.as_str()).unwrap();
    assert_eq!(p.a.services().federation.room_servers(&room_id).await.unwrap(), vec![b_server.clone()]);

    let acl = json!({"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true});
    let (status, body) = p.a.put_state(&alice.access_token, &room, "m.room.server_acl", "", acl).await;
    assert_eq!(status, 200, "{body}");

    // Nothing of the room goes to B any more.
    assert!(p.a.services().federation.room_servers(&room_id).await.unwrap().is_empty());

    // A PDU from B is refused for that room.
    let as_b = forged::AsB::new(&p);
    let (_, state) =
        p.a.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.access_token)).await;
    let id_of = |kind: &str, key: &str| {
        state.as_array().unwrap().iter().find(|e| e["type"] == kind && e["state_key"] == key).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let auth = vec![id_of("m.room.power_levels", ""), id_of("m.room.member", &bob.user_id)];
    let prev = id_of("m.room.server_acl", "");
    let pdu = as_b.message(&room, &bob.user_id, auth, prev, "denied");
    let pdu_id = forged::AsB::event_id(&pdu);
    let (status, body) = as_b.send(vec![pdu], None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["pdus"][&pdu_id]["error"].as_str().is_some_and(|e| e.contains("ACL")), "{body}");
    let got =
        p.a.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&pdu_id)), Some(&alice.access_token))
            .await;
    assert_error(&got, 404, "M_NOT_FOUND");

    // B's typing notices about the room are dropped by A. A second room
    // without an ACL serves as the marker: EDUs are applied in order.
    let open = shared_room(&p, &alice, &bob, json!({})).await;
    sync_until(&p.a, &alice, "bob's join of the open room", |s| s["rooms"]["join"][&open].is_object()).await;
    for r in [&room, &open] {
        let (status, _) =
            p.b.put(
                &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(r), enc(&bob.user_id)),
                Some(&bob.access_token),
                json!({"typing": true, "timeout": 20000}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let typing_in = |s: &Value, r: &str| {
        s["rooms"]["join"][r]["ephemeral"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"].as_array().is_some_and(|u| u.contains(&json!(bob.user_id)))
            })
        })
    };
    sync_until(&p.a, &alice, "bob typing in the open room", |s| typing_in(s, &open)).await;
    let (_, full) = p.a.get("/_matrix/client/v3/sync?timeout=0", Some(&alice.access_token)).await;
    assert!(typing_in(&full, &open) && !typing_in(&full, &room), "{full}");

    // A room whose ACL denies B from the start: B's join is refused by
    // A's make_join with 403 M_FORBIDDEN, and B stays out.
    let acl = json!({"type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": ["127.0.0.1"]}});
    let closed = p.a.create_room(&alice.access_token, json!({"preset": "public_chat", "initial_state": [acl]})).await;
    let got =
        p.b.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&closed), enc(&p.a_name)),
            Some(&carol.access_token),
            json!({}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    assert!(got.1["error"].as_str().unwrap().contains("ACL"), "{:?}", got.1);
    let (_, members) =
        p.a.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&closed)), Some(&alice.access_token)).await;
    assert_eq!(members["joined"].as_object().map(|m| m.len()), Some(1), "{members}");
}

#[tokio::test]
async fn a_gap_too_long_to_fill_takes_its_state_from_state_ids() {
    gap_filled_from_the_state_before(0).await;
}

#[tokio::test]
async fn a_gap_with_much_unknown_state_takes_it_from_state() {
    // More unknown state events than are fetched one by one: /state.
    gap_filled_from_the_state_before(60).await;
}

/// B's events for A are lost: a topic change, `extra_state` other state
/// events, then more messages than one get_missing_events request brings
/// back. A must learn the state in the gap from B.
async fn gap_filled_from_the_state_before(extra_state: usize) {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let levels = json!({"power_level_content_override": {"users": {bob.user_id.clone(): 50}}});
    let room = shared_room(&p, &alice, &bob, levels).await;
    sync_until(&p.a, &alice, "bob's join", |s| s["rooms"]["join"][&room].is_object()).await;

    let b = p.b.services();
    b.federation.sender.set_paused(true);
    let (status, _) =
        p.b.put_state(&bob.access_token, &room, "m.room.topic", "", json!({"topic": "set in the gap"})).await;
    assert_eq!(status, 200);
    for i in 0..extra_state {
        let (status, _) =
            p.b.put_state(&bob.access_token, &room, "org.example.gap", &i.to_string(), json!({"i": i})).await;
        assert_eq!(status, 200);
    }
    for i in 0..25 {
        let (status, _) = p.b.send_text(&bob.access_token, &room, &format!("lost {i}")).await;
        assert_eq!(status, 200);
    }
    let txn = b.db.next_federation_txn(p.a_name.clone(), 1000, 1000).await.unwrap().expect("queued for A");
    b.db.federation_txn_done(p.a_name.clone(), txn.last_id).await.unwrap();
    let (status, _) = p.b.send_text(&bob.access_token, &room, "after the gap").await;
    assert_eq!(status, 200);
    b.federation.sender.set_paused(false);

    // A fetches the last 20 missing messages; the oldest of them still has
    // an unknown prev event, so its state comes from B's /state_ids, which
    // includes the topic A never received.
    sync_until(&p.a, &alice, "the message after the gap", |s| timeline_has(s, &room, "after the gap")).await;
    let (status, topic) = p.a.get_state(&alice.access_token, &room, "m.room.topic", "").await;
    assert_eq!((status, topic["topic"].as_str()), (200, Some("set in the gap")), "{topic}");
    if extra_state > 0 {
        let last = (extra_state - 1).to_string();
        let (status, gap) = p.a.get_state(&alice.access_token, &room, "org.example.gap", &last).await;
        assert_eq!((status, gap["i"].as_u64()), (200, Some(extra_state as u64 - 1)), "{gap}");
    }
    let bodies = all_bodies(&p.a, &alice, &room).await;
    let expected: Vec<String> = (5..25).map(|i| format!("lost {i}")).chain(["after the gap".to_owned()]).collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn knocking_on_a_room_of_another_server() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let knock_rule = json!({"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}});
    let room =
        p.a.create_room(
            &alice.access_token,
            json!({"preset": "private_chat", "name": "Knock first", "initial_state": [knock_rule]}),
        )
        .await;

    // bob knocks from B, through A.
    let (status, body) =
        p.b.post(
            &format!("/_matrix/client/v3/knock/{}?via={}", enc(&room), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!((status, body["room_id"].as_str()), (200, Some(room.as_str())), "{body}");

    // ruma 0.16's `Rooms::is_empty` forgets knocked rooms, so a response
    // whose only room is a knocked one would lose its `rooms`: give bob a
    // room of his own.
    p.b.create_room(&bob.access_token, json!({})).await;
    // B shows bob the room he knocked on, with the stripped state A sent.
    let sync = sync_until(&p.b, &bob, "the knock", |s| s["rooms"]["knock"][&room].is_object()).await;
    let events = sync["rooms"]["knock"][&room]["knock_state"]["events"].as_array().unwrap().clone();
    assert!(events.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first"), "{sync}");
    assert!(
        events.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "knock"),
        "{sync}"
    );

    // A has the knock in the room's state, with its reason.
    let (status, member) = p.a.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!((member["membership"].as_str(), member["reason"].as_str()), (Some("knock"), Some("let me in")));

    // carol knocks too, then thinks better of it: her leave goes through A
    // (make_leave/send_leave, as B is not in the room yet).
    let carol = p.b.register("carol").await;
    let (status, body) =
        p.b.post(
            &format!("/_matrix/client/v3/knock/{}?via={}", enc(&room), enc(&p.a_name)),
            Some(&carol.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        p.b.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(&carol.access_token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = p.a.get_state(&alice.access_token, &room, "m.room.member", &carol.user_id).await;
    assert_eq!(member["membership"], "leave", "{member}");

    // alice lets bob in: an invite, then his join over federation.
    let (status, body) =
        p.a.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice.access_token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sync_until(&p.b, &bob, "the invite", |s| s["rooms"]["invite"][&room].is_object()).await;
    let (status, body) =
        p.b.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), Some(&bob.access_token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = p.a.get_state(&alice.access_token, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "join", "{member}");

    // A room that does not take knocks refuses one: 403 M_FORBIDDEN.
    let closed = p.a.create_room(&alice.access_token, json!({"preset": "private_chat"})).await;
    let got =
        p.b.post(
            &format!("/_matrix/client/v3/knock/{}?via={}", enc(&closed), enc(&p.a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
}

mod forged {
    //! Requests and PDUs made by the test as if it were server B (it signs
    //! with B's key from B's data dir), some of them forged.

    use plexus::ruma::{
        self, CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId,
        RoomVersionId,
        api::{
            OutgoingRequest,
            federation::{authentication::ServerSignaturesInput, transactions::send_transaction_message},
        },
        signatures::{Ed25519KeyPair, hash_and_sign_event, reference_hash},
    };

    use super::*;

    pub struct AsB {
        key: Ed25519KeyPair,
        pub b_name: String,
        a_name: String,
        a_url: String,
        http: reqwest::Client,
    }

    impl AsB {
        pub fn new(p: &Pair) -> Self {
            let key = plexus::server_key::ServerKey::load_or_create(p.b.dir.path()).unwrap().keypair;
            let port_a = p.a_name.rsplit(':').next().unwrap();
            Self {
                key,
                b_name: p.b_name.clone(),
                a_name: p.a_name.clone(),
                a_url: format!("https://127.0.0.1:{port_a}"),
                http: reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap(),
            }
        }

        /// A message PDU in `room` from `sender`, hashed and signed with B's key.
        pub fn message(
            &self,
            room: &str,
            sender: &str,
            auth: Vec<String>,
            prev: String,
            body: &str,
        ) -> CanonicalJsonObject {
            let value = json!({
                "room_id": room, "sender": sender, "type": "m.room.message",
                "content": {"msgtype": "m.text", "body": body},
                "auth_events": auth, "prev_events": [prev], "depth": 1000,
                "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            });
            let mut obj: CanonicalJsonObject = serde_json::from_value(value).unwrap();
            let rules = RoomVersionId::V12.rules().unwrap();
            hash_and_sign_event(&self.b_name, &self.key, &mut obj, &rules.redaction).unwrap();
            obj
        }

        pub fn event_id(obj: &CanonicalJsonObject) -> String {
            format!("${}", reference_hash(obj, &RoomVersionId::V12.rules().unwrap()).unwrap())
        }

        /// PUTs a transaction to A signed with `key` (B's by default) for
        /// `destination` (A's by default); returns status and body.
        pub async fn send(
            &self,
            pdus: Vec<CanonicalJsonObject>,
            key: Option<&Ed25519KeyPair>,
            destination: Option<&str>,
        ) -> (u16, Value) {
            self.send_transaction(pdus, vec![], key, destination).await
        }

        /// PUTs a transaction of EDUs to A, signed with B's key.
        pub async fn send_edus(&self, edus: Vec<Value>) -> (u16, Value) {
            self.send_transaction(vec![], edus, None, None).await
        }

        async fn send_transaction(
            &self,
            pdus: Vec<CanonicalJsonObject>,
            edus: Vec<Value>,
            key: Option<&Ed25519KeyPair>,
            destination: Option<&str>,
        ) -> (u16, Value) {
            let mut request = send_transaction_message::v1::Request::new(
                OwnedTransactionId::from(format!("t{}", MilliSecondsSinceUnixEpoch::now().get())),
                OwnedServerName::try_from(self.b_name.as_str()).unwrap(),
                MilliSecondsSinceUnixEpoch::now(),
            );
            request.pdus = pdus.iter().map(|p| serde_json::value::to_raw_value(p).unwrap()).collect();
            request.edus = edus.iter().map(|e| serde_json::from_value(e.clone()).unwrap()).collect();
            let input = ServerSignaturesInput::new(
                self.b_name.as_str().try_into().unwrap(),
                destination.unwrap_or(&self.a_name).try_into().unwrap(),
                key.unwrap_or(&self.key),
            );
            let http_request = request.try_into_http_request::<Vec<u8>>(&self.a_url, input, ()).unwrap();
            let request = reqwest::Request::try_from(http_request.map(reqwest::Body::from)).unwrap();
            let response = self.http.execute(request).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
    }

    pub fn set(obj: &mut CanonicalJsonObject, key: &str, value: Value) {
        obj.insert(key.to_owned(), CanonicalJsonValue::try_from(value).unwrap());
    }

    pub fn fresh_key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "evil".into()).unwrap()
    }

    pub use ruma::signatures::Ed25519KeyPair as Key;
}

#[tokio::test]
async fn forged_input_is_refused_and_stores_nothing() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let room = shared_room(&p, &alice, &bob, json!({})).await;
    let as_b = forged::AsB::new(&p);

    // What a message of bob's needs: auth events and a prev event, from A.
    let (_, state) =
        p.a.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.access_token)).await;
    let id_of = |kind: &str, key: &str| {
        state.as_array().unwrap().iter().find(|e| e["type"] == kind && e["state_key"] == key).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let power = id_of("m.room.power_levels", "");
    let bob_member = id_of("m.room.member", &bob.user_id);
    let (_, last) = p.a.messages(&alice.access_token, &room, "dir=b&limit=1").await;
    let prev = last["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let visible = |id: String| {
        let (a, token, room) = (&p.a, alice.access_token.clone(), room.clone());
        async move { a.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&id)), Some(&token)).await }
    };

    // A well-formed message made this way is accepted: the harness works.
    let good = as_b.message(&room, &bob.user_id, vec![power.clone(), bob_member.clone()], prev.clone(), "genuine");
    let good_id = forged::AsB::event_id(&good);
    let (status, body) = as_b.send(vec![good], None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, event) = visible(good_id.clone()).await;
    assert_eq!((status, event["content"]["body"].as_str()), (200, Some("genuine")), "{event}");

    // A bad signature: a signed field changed after signing.
    let mut bad_sig =
        as_b.message(&room, &bob.user_id, vec![power.clone(), bob_member.clone()], prev.clone(), "bad sig");
    forged::set(&mut bad_sig, "origin_server_ts", json!(12345));
    let bad_sig_id = forged::AsB::event_id(&bad_sig);
    let (status, body) = as_b.send(vec![bad_sig], None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["pdus"][&bad_sig_id]["error"].is_string(), "{body}");
    assert_error(&visible(bad_sig_id).await, 404, "M_NOT_FOUND");

    // A wrong content hash: the content changed after signing. Kept, redacted.
    let mut bad_hash =
        as_b.message(&room, &bob.user_id, vec![power.clone(), bob_member.clone()], prev.clone(), "original");
    forged::set(&mut bad_hash, "content", json!({"msgtype": "m.text", "body": "tampered"}));
    let bad_hash_id = forged::AsB::event_id(&bad_hash);
    let (status, body) = as_b.send(vec![bad_hash], None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, event) = visible(bad_hash_id).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"], json!({}), "stored redacted: {event}");

    // An event that fails auth: a message from a user who is not in the room.
    let mallory = format!("@mallory:{}", as_b.b_name);
    let intruder = as_b.message(&room, &mallory, vec![power.clone()], prev.clone(), "let me in");
    let intruder_id = forged::AsB::event_id(&intruder);
    let (status, body) = as_b.send(vec![intruder], None, None).await;
    assert_eq!(status, 200, "{body}");
    // Processed (rejected), so no error for it, as Synapse answers.
    assert_eq!(body["pdus"][&intruder_id], json!({}), "{body}");
    assert_error(&visible(intruder_id).await, 404, "M_NOT_FOUND");

    // A transaction signed with a key B never published, and one meant for
    // another server: refused outright.
    let stray = as_b.message(&room, &bob.user_id, vec![power.clone(), bob_member.clone()], prev.clone(), "stray");
    let stray_id = forged::AsB::event_id(&stray);
    let evil: forged::Key = forged::fresh_key();
    let got = as_b.send(vec![stray.clone()], Some(&evil), None).await;
    assert_error(&got, 401, "M_UNAUTHORIZED");
    let got = as_b.send(vec![stray], None, Some("localhost:1")).await;
    assert_error(&got, 401, "M_UNAUTHORIZED");
    assert_error(&visible(stray_id).await, 404, "M_NOT_FOUND");

    // Nothing forged reached alice's timeline.
    let bodies = all_bodies(&p.a, &alice, &room).await;
    assert_eq!(bodies, vec!["genuine".to_owned()], "{bodies:?}");
}

mod sdk {
    //! matrix-sdk clients on two servers: sync loops, an encrypted room,
    //! keys and to-device messages across servers.

    use std::sync::{Arc, Mutex};

    use matrix_sdk::{
        Client,
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

    use super::*;
    use crate::{common::wait_until, sdk_support::spawn_sync};

    fn collect_messages(client: &Client) -> Arc<Mutex<Vec<String>>> {
        let received = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = received.clone();
        client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let sink = sink.clone();
            async move { sink.lock().unwrap().push(ev.content.body().to_owned()) }
        });
        received
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn encrypted_room_across_servers_with_matrix_sdk() {
        let p = pair().await;
        p.a.register("alice").await;
        p.b.register("bob").await;
        let alice = p.a.sdk_logged_in("alice").await;
        let bob = p.b.sdk_logged_in("bob").await;
        let alice_got = collect_messages(&alice);
        let bob_got = collect_messages(&bob);
        let syncs = [spawn_sync(&alice), spawn_sync(&bob)];

        // alice creates an encrypted room inviting bob on the other server.
        let request = matrix_sdk::ruma::assign!(create_room::v3::Request::new(), {
            invite: vec![bob.user_id().unwrap().to_owned()],
            initial_state: vec![InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any()],
        });
        let room = alice.create_room(request).await.expect("encrypted room created");
        let room_id = room.room_id().to_owned();
        wait_until("bob to see the invite", || {
            let (bob, room_id) = (bob.clone(), room_id.clone());
            async move { bob.get_room(&room_id).is_some() }
        })
        .await;
        bob.join_room_by_id(&room_id).await.expect("bob joins over federation");
        wait_until("alice to see bob joined", || {
            let room = room.clone();
            async move {
                room.sync_members().await.ok();
                room.joined_members_count() == 2
            }
        })
        .await;

        // Encrypted both ways: keys are queried and claimed across servers,
        // room keys travel as to-device messages.
        for i in 1..=3 {
            room.send(RoomMessageEventContent::text_plain(format!("secret {i}"))).await.expect("alice sends");
        }
        wait_until("bob to decrypt alice's messages", || {
            let got = bob_got.clone();
            async move { got.lock().unwrap().len() >= 3 }
        })
        .await;
        assert_eq!(*bob_got.lock().unwrap(), vec!["secret 1", "secret 2", "secret 3"]);
        let bob_room = bob.get_room(&room_id).expect("bob has the room");
        bob_room.send(RoomMessageEventContent::text_plain("reply from B")).await.expect("bob sends");
        wait_until("alice to decrypt bob's reply", || {
            let got = alice_got.clone();
            async move { got.lock().unwrap().iter().any(|b| b == "reply from B") }
        })
        .await;

        // Neither server stored plaintext.
        let token = alice.access_token().unwrap();
        let (_, page) = p.a.messages(&token, room_id.as_str(), "dir=b&limit=50").await;
        assert!(!page.to_string().contains("secret 1") && !page.to_string().contains("reply from B"));
        for task in syncs {
            task.abort();
        }
    }
}

/// The names of the rooms of a `/hierarchy` page, in order.
fn hierarchy_names(page: &Value) -> Vec<String> {
    let rooms = page["rooms"].as_array().unwrap_or_else(|| panic!("rooms in {page}"));
    rooms.iter().map(|r| r["name"].as_str().unwrap_or("?").to_owned()).collect()
}

#[tokio::test]
async fn space_hierarchies_reach_rooms_of_other_servers() {
    let p = pair().await;
    let alice = p.a.register("alice").await;
    let bob = p.b.register("bob").await;
    let space = json!({ "type": "m.space" });
    let room = |name: &str, preset: &str, creation: &Value| json!({ "name": name, "preset": preset, "creation_content": creation });
    let link = |via: &str, order: &str| json!({ "via": [via], "order": order });

    // On B, which A is in no room of: a public room, a private one, and a
    // space holding a room of B, a room of A and the private room.
    let b_room = p.b.create_room(&bob.access_token, room("B room", "public_chat", &json!({}))).await;
    let b_secret = p.b.create_room(&bob.access_token, room("B secret", "private_chat", &json!({}))).await;
    let b_space = p.b.create_room(&bob.access_token, room("B space", "public_chat", &space)).await;
    let b_leaf = p.b.create_room(&bob.access_token, room("B leaf", "public_chat", &json!({}))).await;
    let a_room = p.a.create_room(&alice.access_token, room("A room", "public_chat", &json!({}))).await;
    for (child, via, order) in [(&b_leaf, &p.b_name, "a"), (&a_room, &p.a_name, "b"), (&b_secret, &p.b_name, "c")] {
        let (status, body) = p.b.put_state(&bob.access_token, &b_space, "m.space.child", child, link(via, order)).await;
        assert_eq!(status, 200, "{body}");
    }
    // On A, a space linking to the three rooms of B.
    let a_space = p.a.create_room(&alice.access_token, room("A space", "public_chat", &space)).await;
    for (child, order) in [(&b_room, "a"), (&b_secret, "b"), (&b_space, "c")] {
        let (status, body) =
            p.a.put_state(&alice.access_token, &a_space, "m.space.child", child, link(&p.b_name, order)).await;
        assert_eq!(status, 200, "{body}");
    }

    // Alice's server asks B (Plexus answering `/hierarchy` over
    // federation): B's public room and space are described, the private
    // room is not, and below B's space A's own room comes from A's state.
    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&a_space));
    let (status, page) = p.a.get(&path, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(hierarchy_names(&page), ["A space", "B room", "B space", "B leaf", "A room"]);
    let rooms = page["rooms"].as_array().unwrap();
    assert_eq!(rooms[1]["room_id"], b_room.as_str());
    assert_eq!(rooms[1]["num_joined_members"], 1);
    assert!(matches!(rooms[1].get("join_rule").and_then(Value::as_str), None | Some("public")), "{page}");
    assert_eq!(rooms[2]["room_type"], "m.space");
    let b_space_children: Vec<&str> =
        rooms[2]["children_state"].as_array().unwrap().iter().map(|c| c["state_key"].as_str().unwrap()).collect();
    // B's space lists all its links, though A may not preview the private
    // room (B named it among the inaccessible children).
    assert_eq!(b_space_children, [b_leaf.as_str(), a_room.as_str(), b_secret.as_str()]);
    assert_eq!(rooms[3]["room_id"], b_leaf.as_str());
    // Pages of the same walk.
    let (status, first) = p.a.get(&format!("{path}?limit=3"), Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{first}");
    let token = first["next_batch"].as_str().expect("a second page");
    let (status, second) = p.a.get(&format!("{path}?limit=3&from={}", enc(token)), Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(hierarchy_names(&first), ["A space", "B room", "B space"]);
    assert_eq!(hierarchy_names(&second), ["B leaf", "A room"]);

    // The other way: Bob's server asks A about A's room under B's space.
    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&b_space));
    let (status, page) = p.b.get(&path, Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(hierarchy_names(&page), ["B space", "B leaf", "A room", "B secret"]);
    assert_eq!(page["rooms"][2]["room_id"], a_room.as_str());

    // The federation endpoint itself wants a signed request.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let port_b = p.b_name.rsplit(':').next().unwrap();
    let unsigned = http
        .get(format!("https://127.0.0.1:{port_b}/_matrix/federation/v1/hierarchy/{}", enc(&b_space)))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: Value = unsigned.json().await.unwrap();
    assert_eq!(body["errcode"], "M_UNAUTHORIZED");
}
