//! Federation interop with Synapse: a real Synapse (pip `matrix-synapse`)
//! and Plexus federate over HTTPS on loopback, both with certificates from a
//! test CA. A Synapse user's public room is joined from Plexus, a Plexus
//! user's public room is joined from Synapse, and messages go both ways,
//! each side seeing the other's in `/sync`; display name changes reach the
//! other side as member events, and each side's users download (and
//! thumbnail) the other side's media through their own server, and a Plexus
//! user's new device reaches Synapse's `/keys/query` (device list updates).
//!
//! `.ci/run` installs Synapse in a virtualenv and sets
//! `PLEXUS_SYNAPSE_PYTHON` to its interpreter; without it the test says so
//! and does nothing. Server logs of a failing run: `PLEXUS_TEST_LOG=debug`
//! (Plexus); Synapse's log tail is printed when the test panics.

mod common;
#[path = "common/synapse.rs"]
mod synapse;

use std::time::{Duration, Instant};

use common::{PASSWORD, TestServer, TestUser, enc, free_port};
use plexus::ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};
use synapse::{Synapse, SynapseUser};

/// Who is syncing, and where: the two servers' clients look alike here.
struct Account<'a> {
    http: &'a reqwest::Client,
    base_url: String,
    user_id: String,
    token: String,
}

impl<'a> Account<'a> {
    fn plexus(server: &'a TestServer, user: &TestUser) -> Self {
        Self {
            http: &server.http,
            base_url: server.base_url.clone(),
            user_id: user.user_id.clone(),
            token: user.access_token.clone(),
        }
    }

    fn synapse(server: &'a Synapse, user: &SynapseUser) -> Self {
        Self {
            http: &server.http,
            base_url: server.client_url.clone(),
            user_id: user.user_id.clone(),
            token: user.access_token.clone(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp =
            self.http.get(format!("{}{path}", self.base_url)).bearer_auth(&self.token).send().await.expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send_text(&self, room: &str, text: &str, txn: &str) -> String {
        let resp = self
            .http
            .put(format!("{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", self.base_url, enc(room)))
            .bearer_auth(&self.token)
            .json(&json!({"msgtype": "m.text", "body": text}))
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{} sending {text:?} to {room}: {body}", self.user_id);
        body["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Syncs (incrementally, from an initial sync) until `found` picks an
    /// event out of a response, or panics after `within`.
    async fn sync_until(&self, what: &str, within: Duration, found: impl Fn(&Value) -> Option<Value>) -> Value {
        let deadline = Instant::now() + within;
        let mut since: Option<String> = None;
        loop {
            let path = match &since {
                Some(s) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", enc(s)),
                None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            };
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "{} syncing: {body}", self.user_id);
            if let Some(event) = found(&body) {
                return event;
            }
            since = body["next_batch"].as_str().map(str::to_owned);
            assert!(Instant::now() < deadline, "{what} never arrived in {}'s /sync", self.user_id);
        }
    }

    /// Waits for a message with `text` in `room`'s timeline; returns it.
    async fn sees_message(&self, room: &str, text: &str) -> Value {
        self.sync_until(&format!("the message {text:?}"), Duration::from_secs(60), |body| {
            body["rooms"]["join"][room]["timeline"]["events"]
                .as_array()?
                .iter()
                .find(|e| e["type"] == "m.room.message" && e["content"]["body"] == text)
                .cloned()
        })
        .await
    }

    /// Waits for `user`'s join in `room`'s timeline or state.
    async fn sees_join(&self, room: &str, user: &str) -> Value {
        self.sync_until(&format!("{user}'s join"), Duration::from_secs(60), |body| {
            let joined = &body["rooms"]["join"][room];
            ["timeline", "state"].iter().find_map(|section| {
                joined[section]["events"]
                    .as_array()?
                    .iter()
                    .find(|e| {
                        e["type"] == "m.room.member" && e["state_key"] == user && e["content"]["membership"] == "join"
                    })
                    .cloned()
            })
        })
        .await
    }

    async fn joined_members(&self, room: &str) -> Value {
        let (status, body) = self.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room))).await;
        assert_eq!(status, 200, "{} joined_members of {room}: {body}", self.user_id);
        body["joined"].clone()
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 60]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("a PNG encodes");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn plexus_and_synapse_federate_both_ways() {
    let Ok(python) = std::env::var("PLEXUS_SYNAPSE_PYTHON") else {
        eprintln!("PLEXUS_SYNAPSE_PYTHON is not set: skipping the Synapse federation interop test (CI runs it)");
        return;
    };

    let certs_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::make_test_certs(certs_dir.path());
    let plexus_port = free_port();
    let plexus_name = format!("localhost:{plexus_port}");
    let plexus = {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        TestServer::start_with(move |c| {
            c.server.server_name = format!("localhost:{plexus_port}").try_into().unwrap();
            c.federation.enabled = true;
            c.federation.listen = vec![format!("127.0.0.1:{plexus_port}").parse().unwrap()];
            c.federation.tls_cert = Some(cert);
            c.federation.tls_key = Some(key);
            c.federation.extra_ca_files = vec![ca];
            c.federation.allow_loopback = true;
        })
        .await
    };
    let synapse = Synapse::start(&python, free_port(), free_port(), &cert, &key, &ca).await;
    let synapse_name = synapse.server_name.clone();

    let sue = synapse.register("sue").await;
    let pat = plexus.register("pat").await;
    assert_eq!(sue.user_id, format!("@sue:{synapse_name}"));
    assert_eq!(pat.user_id, format!("@pat:{plexus_name}"));
    let sue_c = Account::synapse(&synapse, &sue);
    let pat_c = Account::plexus(&plexus, &pat);

    // Rooms of the default version, then of version 1 (event ids in the
    // events, prev and auth events as [id, hashes] pairs).
    for version in [None, Some("1")] {
        let tag = version.map(|v| format!(" (v{v})")).unwrap_or_default();
        let with_version = |mut body: Value| {
            if let Some(v) = version {
                body["room_version"] = json!(v);
            }
            body
        };
        // --- A room on Synapse, joined from Plexus. ---
        let (status, created) = synapse
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&sue.access_token),
                with_version(json!({"preset": "public_chat", "name": "Synapse side"})),
            )
            .await;
        assert_eq!(status, 200, "synapse createRoom: {created}");
        let room_s = created["room_id"].as_str().unwrap().to_owned();

        let (status, joined) = plexus
            .post(
                &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room_s), enc(&synapse_name)),
                Some(&pat.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "Plexus user joining the Synapse room {room_s}: {joined}");
        assert_eq!(joined["room_id"], room_s.as_str());

        if let Some(v) = version {
            let (_, create) = plexus.get_state(&pat.access_token, &room_s, "m.room.create", "").await;
            assert_eq!(create["room_version"], v, "{create}");
        }
        // Plexus has the room's state: its name and both members.
        let (status, name) = plexus.get_state(&pat.access_token, &room_s, "m.room.name", "").await;
        assert_eq!((status, name["name"].as_str()), (200, Some("Synapse side")), "{name}");
        let members = pat_c.joined_members(&room_s).await;
        assert!(members[&sue.user_id].is_object() && members[&pat.user_id].is_object(), "{members}");
        // Synapse learned of the join.
        sue_c.sees_join(&room_s, &pat.user_id).await;

        // Messages both ways.
        let sent = sue_c.send_text(&room_s, &format!("hello from synapse{tag}"), &format!("s1{tag}")).await;
        let got = pat_c.sees_message(&room_s, &format!("hello from synapse{tag}")).await;
        assert_eq!(got["sender"], sue.user_id.as_str(), "{got}");
        assert_eq!(got["event_id"], sent.as_str(), "{got}");
        let sent = pat_c.send_text(&room_s, &format!("hello from plexus{tag}"), &format!("p1{tag}")).await;
        let got = sue_c.sees_message(&room_s, &format!("hello from plexus{tag}")).await;
        assert_eq!(got["sender"], pat.user_id.as_str(), "{got}");
        assert_eq!(got["event_id"], sent.as_str(), "{got}");

        // --- A room on Plexus, joined from Synapse. ---
        let room_p = plexus
            .create_room(&pat.access_token, with_version(json!({"preset": "public_chat", "name": "Plexus side"})))
            .await;
        let (status, joined) = synapse
            .post(
                &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room_p), enc(&plexus_name)),
                Some(&sue.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "Synapse user joining the Plexus room {room_p}: {joined}");
        assert_eq!(joined["room_id"], room_p.as_str());

        let (status, name) = synapse
            .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room_p)), Some(&sue.access_token))
            .await;
        assert_eq!((status, name["name"].as_str()), (200, Some("Plexus side")), "{name}");
        let members = sue_c.joined_members(&room_p).await;
        assert!(members[&sue.user_id].is_object() && members[&pat.user_id].is_object(), "{members}");
        pat_c.sees_join(&room_p, &sue.user_id).await;

        let sent = pat_c.send_text(&room_p, &format!("welcome from plexus{tag}"), &format!("p2{tag}")).await;
        let got = sue_c.sees_message(&room_p, &format!("welcome from plexus{tag}")).await;
        assert_eq!(got["sender"], pat.user_id.as_str(), "{got}");
        assert_eq!(got["event_id"], sent.as_str(), "{got}");
        let sent = sue_c.send_text(&room_p, &format!("thanks from synapse{tag}"), &format!("s2{tag}")).await;
        let got = pat_c.sees_message(&room_p, &format!("thanks from synapse{tag}")).await;
        assert_eq!(got["sender"], sue.user_id.as_str(), "{got}");
        assert_eq!(got["event_id"], sent.as_str(), "{got}");
    }

    // A new display name reaches Synapse's members in every shared room
    // within seconds (new member events, sent over federation).
    let (status, _) = plexus
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&pat.user_id)),
            Some(&pat.access_token),
            json!({"displayname": "Pat from Plexus"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, rooms) = synapse.get("/_matrix/client/v3/joined_rooms", Some(&sue.access_token)).await;
    let rooms: Vec<String> =
        rooms["joined_rooms"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    assert_eq!(rooms.len(), 4, "{rooms:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for room in &rooms {
        loop {
            let members = sue_c.joined_members(room).await;
            if members[&pat.user_id]["display_name"] == "Pat from Plexus" {
                break;
            }
            assert!(Instant::now() < deadline, "Synapse did not see pat's new name in {room}: {members}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, member) = synapse
            .get(
                &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(room), enc(&pat.user_id)),
                Some(&sue.access_token),
            )
            .await;
        assert_eq!((status, member["displayname"].as_str()), (200, Some("Pat from Plexus")), "{member}");
    }

    // And the other way: a Synapse user's new name reaches Plexus as new
    // member events in every shared room.
    let (status, body) = synapse
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&sue.user_id)),
            Some(&sue.access_token),
            json!({"displayname": "Sue from Synapse"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let event = pat_c
        .sync_until("sue's new display name", Duration::from_secs(60), |body| {
            body["rooms"]["join"][&rooms[0]]["timeline"]["events"]
                .as_array()?
                .iter()
                .find(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == sue.user_id.as_str()
                        && e["content"]["displayname"] == "Sue from Synapse"
                })
                .cloned()
        })
        .await;
    assert_eq!(event["content"]["membership"], "join", "{event}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for room in &rooms {
        loop {
            let (status, member) = plexus.get_state(&pat.access_token, room, "m.room.member", &sue.user_id).await;
            if status == 200 && member["displayname"] == "Sue from Synapse" {
                break;
            }
            assert!(Instant::now() < deadline, "Plexus did not see sue's new name in {room}: {member}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let members = pat_c.joined_members(room).await;
        assert_eq!(members[&sue.user_id]["display_name"], "Sue from Synapse", "{members}");
    }

    // Media both ways: each user downloads, through their own server, what
    // the other uploaded on theirs.
    let image = png(96, 64);
    let resp = plexus
        .http
        .post(plexus.url("/_matrix/media/v3/upload?filename=plexus.png"))
        .bearer_auth(&pat.access_token)
        .header("content-type", "image/png")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let uploaded: Value = resp.json().await.unwrap();
    let mxc = uploaded["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned();
    assert!(mxc.starts_with(&plexus_name), "{mxc}");
    let resp = synapse
        .http
        .get(synapse.url(&format!("/_matrix/client/v1/media/download/{mxc}")))
        .bearer_auth(&sue.access_token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "Synapse fetching Plexus media: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert_eq!(bytes, image, "Synapse serves Plexus's bytes");
    // Synapse thumbnails its copy (at one of its configured sizes, the
    // smallest not below the request's).
    let resp = synapse
        .http
        .get(synapse.url(&format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=48&height=32&method=scale")))
        .bearer_auth(&sue.access_token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "Synapse thumbnailing Plexus media: {}", String::from_utf8_lossy(&bytes));
    let thumb = image::load_from_memory(&bytes).expect("a decodable thumbnail");
    assert!((48..=96).contains(&thumb.width()) && thumb.height() >= 32, "{}x{}", thumb.width(), thumb.height());

    let text = b"a file uploaded to synapse".to_vec();
    let resp = synapse
        .http
        .post(synapse.url("/_matrix/media/v3/upload?filename=synapse.txt"))
        .bearer_auth(&sue.access_token)
        .header("content-type", "text/plain")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let uploaded: Value = resp.json().await.unwrap();
    let mxc = uploaded["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned();
    let resp = plexus
        .http
        .get(plexus.url(&format!("/_matrix/client/v1/media/download/{mxc}")))
        .bearer_auth(&pat.access_token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "Plexus fetching Synapse media: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["content-disposition"], "inline; filename=synapse.txt");
    assert_eq!(bytes, text, "Plexus serves Synapse's bytes");
    // An image of Synapse's, thumbnailed on Plexus from its copy.
    let resp = synapse
        .http
        .post(synapse.url("/_matrix/media/v3/upload?filename=synapse.png"))
        .bearer_auth(&sue.access_token)
        .header("content-type", "image/png")
        .body(png(80, 80))
        .send()
        .await
        .unwrap();
    let uploaded: Value = resp.json().await.unwrap();
    let mxc = uploaded["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned();
    let resp = plexus
        .http
        .get(plexus.url(&format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32&method=crop")))
        .bearer_auth(&pat.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let thumb = image::load_from_memory(&resp.bytes().await.unwrap()).expect("a decodable thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (32, 32));

    // Spaces across the two: each server describes its own room, over
    // federation `/hierarchy`, to a space on the other.
    let space = json!({"preset": "public_chat", "name": "Synapse space", "creation_content": {"type": "m.space"}});
    let (status, created) = synapse.post("/_matrix/client/v3/createRoom", Some(&sue.access_token), space).await;
    assert_eq!(status, 200, "{created}");
    let space_s = created["room_id"].as_str().unwrap().to_owned();
    let lone_p = plexus.create_room(&pat.access_token, json!({"preset": "public_chat", "name": "Plexus lone"})).await;
    let (status, body) = synapse
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", enc(&space_s), enc(&lone_p)),
            Some(&sue.access_token),
            json!({"via": [plexus_name]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, page) =
        synapse.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space_s)), Some(&sue.access_token)).await;
    assert_eq!(status, 200, "{page}");
    let rooms = page["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2, "Synapse lists Plexus's room under its space: {page}");
    assert_eq!((rooms[1]["room_id"].as_str(), rooms[1]["name"].as_str()), (Some(lone_p.as_str()), Some("Plexus lone")));

    let lone_s = {
        let body = json!({"preset": "public_chat", "name": "Synapse lone"});
        let (status, created) = synapse.post("/_matrix/client/v3/createRoom", Some(&sue.access_token), body).await;
        assert_eq!(status, 200, "{created}");
        created["room_id"].as_str().unwrap().to_owned()
    };
    let space_p = plexus
        .create_room(
            &pat.access_token,
            json!({"preset": "public_chat", "name": "Plexus space", "creation_content": {"type": "m.space"}}),
        )
        .await;
    let (status, body) =
        plexus.put_state(&pat.access_token, &space_p, "m.space.child", &lone_s, json!({"via": [synapse_name]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, page) =
        plexus.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space_p)), Some(&pat.access_token)).await;
    assert_eq!(status, 200, "{page}");
    let rooms = page["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2, "Plexus lists Synapse's room under its space: {page}");
    assert_eq!(
        (rooms[1]["room_id"].as_str(), rooms[1]["name"].as_str()),
        (Some(lone_s.as_str()), Some("Synapse lone"))
    );

    // Device lists: Synapse tracks pat's (they share rooms), so its
    // `/keys/query` answers from what Plexus's `m.device_list_update` EDUs
    // told it. A new device of pat, with keys, shows up there.
    let keys_on_synapse = || async {
        let query = json!({"device_keys": {pat.user_id.clone(): []}});
        let (status, body) = synapse.post("/_matrix/client/v3/keys/query", Some(&sue.access_token), query).await;
        assert_eq!(status, 200, "{body}");
        body["device_keys"][&pat.user_id].clone()
    };
    let main_keys = signed_device_keys(&pat.user_id, &pat.device_id);
    let (status, body) =
        plexus.post("/_matrix/client/v3/keys/upload", Some(&pat.access_token), json!({"device_keys": main_keys})).await;
    assert_eq!(status, 200, "{body}");
    common::wait_until("Synapse sees pat's device keys", || async {
        keys_on_synapse().await.get(&pat.device_id).is_some()
    })
    .await;
    let (status, login) = plexus.login("pat", PASSWORD).await;
    assert_eq!(status, 200, "{login}");
    let (phone, phone_token) =
        (login["device_id"].as_str().unwrap().to_owned(), login["access_token"].as_str().unwrap().to_owned());
    let phone_keys = signed_device_keys(&pat.user_id, &phone);
    let body = json!({"device_keys": phone_keys.clone()});
    let (status, body) = plexus.post("/_matrix/client/v3/keys/upload", Some(&phone_token), body).await;
    assert_eq!(status, 200, "{body}");
    common::wait_until("Synapse sees pat's new device", || async {
        keys_on_synapse().await.get(&phone).is_some_and(|d| d["keys"] == phone_keys["keys"])
    })
    .await;
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
