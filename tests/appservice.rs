//! Application services: registration files checked at start, the
//! `as_token` acting as its users, `m.login.application_service`, exclusive
//! namespaces, pings, and a real bridge built on the `mautrix` Python
//! library (`tests/interop/mautrix_bridge.py`) receiving transactions,
//! answering queries and surviving its own outage and a Plexus restart.
//! `.ci/run` installs mautrix and sets `PLEXUS_MAUTRIX_PYTHON`; without it
//! the bridge test says so and does nothing.

mod common;

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{TestServer, assert_error, free_port};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};

const AS_TOKEN: &str = "as_token_for_tests";
const HS_TOKEN: &str = "hs_token_for_tests";

fn registration(url: Option<&str>) -> String {
    let url = url.map_or("null".to_owned(), |u| format!("'{u}'"));
    format!(
        "id: mautrix_test\nurl: {url}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\nsender_localpart: bridgebot\n\
         rate_limited: false\nreceive_ephemeral: true\nde.sorunome.msc2409.push_ephemeral: true\n\
         io.element.msc4190: true\norg.matrix.msc3202: true\nprotocols: [fakechat]\n\
         namespaces:\n  users:\n  - exclusive: true\n    regex: '@bridge_.*:plexus\\.test'\n  aliases:\n  \
         - exclusive: true\n    regex: '#bridge_.*:plexus\\.test'\n  rooms: []\n"
    )
}

fn write_registration(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("registration.yaml");
    std::fs::write(&path, text).expect("registration file written");
    path
}

async fn start_with_registration(text: &str, port: Option<u16>) -> (TestServer, tempfile::TempDir) {
    let files = tempfile::tempdir().expect("temp dir");
    let path = write_registration(files.path(), text);
    let server = TestServer::start_with(|c| {
        c.appservice.registration_files = vec![path];
        if let Some(port) = port {
            c.server.listen = vec![format!("127.0.0.1:{port}").parse().expect("addr")];
        }
    })
    .await;
    (server, files)
}

async fn as_post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    server.post(path, Some(AS_TOKEN), body).await
}

#[tokio::test]
async fn bad_registration_files_stop_the_server_naming_the_problem() {
    let files = tempfile::tempdir().unwrap();
    let bad = registration(None).replace("'@bridge_.*:plexus\\.test'", "'@bridge_(:plexus'");
    let path = write_registration(files.path(), &bad);
    let error = TestServer::try_start_with(|c| c.appservice.registration_files = vec![path]).await.err();
    let message = error.expect("a bad regex stops the start").to_string();
    assert!(message.contains("the users regex `@bridge_(:plexus` is not valid"), "{message}");

    let path = write_registration(files.path(), &registration(None));
    let error = TestServer::try_start_with(|c| c.appservice.registration_files = vec![path.clone(), path]).await.err();
    let message = error.expect("a duplicate stops the start").to_string();
    assert!(message.contains("two appservice registrations have the id `mautrix_test`"), "{message}");
}

#[tokio::test]
async fn the_as_token_registers_and_acts_as_users_of_its_namespace_only() {
    let (server, _files) = start_with_registration(&registration(None), None).await;

    // A normal user cannot take a name of the exclusive namespace.
    let refused = server.post("/_matrix/client/v3/register", None, json!({"username": "bridge_eve"})).await;
    assert_error(&refused, 400, "M_EXCLUSIVE");
    let available = server.get("/_matrix/client/v3/register/available?username=bridge_eve", None).await;
    assert_error(&available, 400, "M_EXCLUSIVE");

    // The appservice registers its ghost without UIA, and only in its namespace.
    let body = json!({"username": "bridge_alice", "type": "m.login.application_service", "inhibit_login": true});
    let (status, resp) = as_post(&server, "/_matrix/client/v3/register", body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["user_id"], "@bridge_alice:plexus.test");
    assert!(resp.get("access_token").is_none(), "inhibit_login: {resp}");
    let outside = json!({"username": "mallory", "type": "m.login.application_service"});
    assert_error(&as_post(&server, "/_matrix/client/v3/register", outside).await, 400, "M_EXCLUSIVE");
    let no_token = json!({"username": "bridge_x", "type": "m.login.application_service"});
    assert_error(&server.post("/_matrix/client/v3/register", None, no_token).await, 401, "M_MISSING_TOKEN");

    // Identity assertion: the sender by default, `?user_id=` for its users.
    let (status, me) = server.get("/_matrix/client/v3/account/whoami", Some(AS_TOKEN)).await;
    assert_eq!((status, me["user_id"].as_str()), (200, Some("@bridgebot:plexus.test")), "{me}");
    assert!(me.get("device_id").is_none(), "no device: {me}");
    let ghost = "/_matrix/client/v3/account/whoami?user_id=%40bridge_alice%3Aplexus.test";
    let (status, me) = server.get(ghost, Some(AS_TOKEN)).await;
    assert_eq!((status, me["user_id"].as_str()), (200, Some("@bridge_alice:plexus.test")), "{me}");
    let alice = server.register("alice").await;
    let other = "/_matrix/client/v3/account/whoami?user_id=%40alice%3Aplexus.test";
    assert_error(&server.get(other, Some(AS_TOKEN)).await, 403, "M_EXCLUSIVE");
    let unregistered = "/_matrix/client/v3/account/whoami?user_id=%40bridge_nobody%3Aplexus.test";
    assert_error(&server.get(unregistered, Some(AS_TOKEN)).await, 403, "M_FORBIDDEN");

    // `m.login.application_service` login for a user of its namespace.
    let login = json!({"type": "m.login.application_service",
                       "identifier": {"type": "m.id.user", "user": "bridge_alice"}});
    let (status, resp) = as_post(&server, "/_matrix/client/v3/login", login.clone()).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["user_id"], "@bridge_alice:plexus.test");
    assert_error(&server.post("/_matrix/client/v3/login", None, login).await, 403, "M_FORBIDDEN");

    // MSC4190: the appservice creates and deletes its users' devices
    // without logins; MSC3202: it acts on one of them.
    let as_alice = |path: &str| format!("{path}?user_id=%40bridge_alice%3Aplexus.test");
    let device = as_alice("/_matrix/client/v3/devices/BRIDGEDEV");
    let (status, resp) = server.put(&device, Some(AS_TOKEN), json!({"display_name": "bridged"})).await;
    assert_eq!(status, 200, "{resp}");
    let (_, listed) = server.get(&as_alice("/_matrix/client/v3/devices"), Some(AS_TOKEN)).await;
    let names: Vec<&Value> = listed["devices"].as_array().unwrap().iter().map(|d| &d["display_name"]).collect();
    assert!(names.contains(&&json!("bridged")), "{listed}");
    let on_device = format!("{}&org.matrix.msc3202.device_id=BRIDGEDEV", as_alice("/_matrix/client/v3/account/whoami"));
    let (_, me) = server.get(&on_device, Some(AS_TOKEN)).await;
    assert_eq!(me["device_id"], "BRIDGEDEV", "{me}");
    let (status, resp) = server.request(reqwest::Method::DELETE, &device, Some(AS_TOKEN), Some(json!({}))).await;
    assert_eq!(status, 200, "no user-interactive auth: {resp}");
    assert_error(&server.get(&on_device, Some(AS_TOKEN)).await, 403, "M_FORBIDDEN");
    // Without the appservice, deleting a device still needs UIA.
    let (_, alice_devices) = server.get("/_matrix/client/v3/devices", Some(&alice.access_token)).await;
    let alice_device = alice_devices["devices"][0]["device_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/devices/{alice_device}");
    let (status, _) = server.request(reqwest::Method::DELETE, &path, Some(&alice.access_token), Some(json!({}))).await;
    assert_eq!(status, 401, "UIA is asked of alice");

    // An exclusive alias namespace is the appservice's alone.
    let room = server.create_room(&alice.access_token, json!({})).await;
    let alias = format!("/_matrix/client/v3/directory/room/{}", common::enc("#bridge_taken:plexus.test"));
    let refused = server.put(&alias, Some(&alice.access_token), json!({"room_id": room})).await;
    assert_error(&refused, 400, "M_EXCLUSIVE");
    let (status, _) = server.get(&alias, Some(&alice.access_token)).await;
    assert_eq!(status, 404, "the alias was not created");

    // Pings: only itself, and this registration has no URL.
    let ping = "/_matrix/client/v1/appservice/mautrix_test/ping";
    assert_error(&as_post(&server, ping, json!({})).await, 400, "M_URL_NOT_SET");
    let other_ping = "/_matrix/client/v1/appservice/someone_else/ping";
    assert_error(&as_post(&server, other_ping, json!({})).await, 403, "M_FORBIDDEN");
    assert_error(&server.post(ping, Some(&alice.access_token), json!({})).await, 403, "M_FORBIDDEN");

    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["fi.mau.msc2659.stable"], true);
    assert_eq!(versions["unstable_features"]["io.element.msc4190"], true);
    assert!(versions["versions"].as_array().unwrap().iter().any(|v| v == "v1.7"), "{versions}");
}

#[tokio::test]
async fn users_of_an_appservice_without_rate_limits_are_not_limited() {
    let files = tempfile::tempdir().unwrap();
    let path = write_registration(files.path(), &registration(None));
    let server = TestServer::start_with(|c| {
        c.appservice.registration_files = vec![path];
        c.rate_limits.enabled = true;
        c.rate_limits.message = plexus::config::RateLimit { per_second: 0.001, burst: 2 };
        c.rate_limits.registration = plexus::config::RateLimit { per_second: 1000.0, burst: 1000 };
    })
    .await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let as_ghost = |path: &str| format!("{path}?user_id=%40bridge_alice%3Aplexus.test");
    let body = json!({"username": "bridge_alice", "type": "m.login.application_service"});
    assert_eq!(as_post(&server, "/_matrix/client/v3/register", body).await.0, 200);
    let join = as_ghost(&format!("/_matrix/client/v3/join/{room}"));
    assert_eq!(as_post(&server, &join, json!({})).await.0, 200);
    for i in 0..5 {
        let path = as_ghost(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/g{i}"));
        let sent = server.put(&path, Some(AS_TOKEN), json!({"msgtype": "m.text", "body": "hi"})).await;
        assert_eq!(sent.0, 200, "the ghost is not limited: {sent:?}");
    }
    let mut limited = None;
    for i in 0..5 {
        let sent = server.send_text(&alice.access_token, &room, &format!("a{i}")).await;
        if sent.0 != 200 {
            limited = Some(sent);
            break;
        }
    }
    assert_error(&limited.expect("alice is limited"), 429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn a_ping_reports_why_the_appservice_cannot_be_reached() {
    // Nothing listens on this port.
    let url = format!("http://127.0.0.1:{}", free_port());
    let (server, _files) = start_with_registration(&registration(Some(&url)), None).await;
    let got = as_post(&server, "/_matrix/client/v1/appservice/mautrix_test/ping", json!({})).await;
    assert_error(&got, 502, "M_CONNECTION_FAILED");
}

#[tokio::test]
async fn a_ping_reports_the_status_and_body_of_a_failing_appservice() {
    // An appservice that answers every request with 500.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "bridge on fire") });
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let (server, _files) = start_with_registration(&registration(Some(&url)), None).await;
    let got =
        as_post(&server, "/_matrix/client/v1/appservice/mautrix_test/ping", json!({"transaction_id": "t1"})).await;
    assert_error(&got, 502, "M_BAD_STATUS");
    assert_eq!(got.1["status"], 500, "{:?}", got.1);
    assert_eq!(got.1["body"], "bridge on fire", "{:?}", got.1);
    serving.abort();
}

/// The bridge process and its report lines.
struct Bridge {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every report line read so far.
    seen: Vec<Value>,
}

impl Bridge {
    async fn next_line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the bridge reports within a minute")
            .expect("the bridge's stdout is readable")
            .expect("the bridge is still running");
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"text": line}));
        self.seen.push(value.clone());
        value
    }

    /// Reads report lines until one satisfies `pred`; returns it.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|v| pred(v)) {
            return found.clone();
        }
        for _ in 0..10_000 {
            let line = self.next_line().await;
            assert!(line.get("error").is_none(), "the bridge failed while waiting for {what}: {line}");
            if pred(&line) {
                return line;
            }
        }
        panic!("the bridge never reported {what}");
    }

    async fn command(&mut self, cmd: Value) -> Value {
        let name = cmd["cmd"].as_str().expect("cmd").to_owned();
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.expect("command sent");
        for _ in 0..10_000 {
            let line = self.next_line().await;
            assert!(line.get("error").is_none(), "bridge command {cmd} failed: {line}");
            if line["done"] == name.as_str() {
                return line;
            }
        }
        panic!("the bridge never finished {cmd}");
    }

    /// The bodies of `m.room.message` events from `sender` received so far.
    fn bodies_from(&self, sender: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|l| l["kind"] == "event" && l["type"] == "m.room.message" && l["sender"] == sender)
            .filter_map(|l| l["content"]["body"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn sync_has_message(server: &TestServer, token: &str, room: &str, sender: &str, body: &str) -> bool {
    let (_, sync) = server.get("/_matrix/client/v3/sync", Some(token)).await;
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["sender"] == sender && e["content"]["body"] == body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mautrix_bridge_receives_transactions_queries_and_acts_as_its_ghosts() {
    let Ok(python) = std::env::var("PLEXUS_MAUTRIX_PYTHON") else {
        eprintln!("PLEXUS_MAUTRIX_PYTHON is not set: skipping the mautrix bridge test (CI runs it)");
        return;
    };
    let bridge_port = free_port();
    let hs_port = free_port();
    let url = format!("http://127.0.0.1:{bridge_port}");
    let (mut server, _files) = start_with_registration(&registration(Some(&url)), Some(hs_port)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mautrix_bridge.py");
    let mut child = tokio::process::Command::new(python)
        .args([script, &server.base_url, "plexus.test", &bridge_port.to_string(), AS_TOKEN, HS_TOKEN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the bridge starts");
    let stdin = child.stdin.take().expect("stdin");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut bridge = Bridge { child, stdin, lines, seen: Vec::new() };
    bridge.wait_for("ready", |l| l["kind"] == "ready").await;

    // Ping both ways: the bridge asks Plexus, which calls the bridge.
    let ping = bridge.command(json!({"cmd": "ping"})).await;
    assert!(ping["duration_ms"].as_u64().is_some(), "{ping}");

    // The ghost registers with m.login.application_service; a normal user
    // cannot take a name of the namespace.
    let ghost = "@bridge_alice:plexus.test";
    let registered = bridge.command(json!({"cmd": "register", "localpart": "bridge_alice"})).await;
    assert_eq!(registered["user_id"], ghost);
    let refused = server.post("/_matrix/client/v3/register", None, json!({"username": "bridge_bob"})).await;
    assert_error(&refused, 400, "M_EXCLUSIVE");

    // A normal user's message in a room with the ghost reaches the bridge.
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [ghost]})).await;
    bridge.command(json!({"cmd": "join", "localpart": "bridge_alice", "room": room})).await;
    let (status, _) = server.send_text(&alice.access_token, &room, "hello bridge").await;
    assert_eq!(status, 200);
    bridge
        .wait_for("alice's message", |l| {
            l["kind"] == "event" && l["sender"] == alice.user_id.as_str() && l["content"]["body"] == "hello bridge"
        })
        .await;

    // The ghost answers with `?user_id=`; alice sees it.
    bridge.command(json!({"cmd": "send", "localpart": "bridge_alice", "room": room, "text": "hello from afar"})).await;
    common::wait_until("alice sees the ghost's reply", || {
        sync_has_message(&server, &alice.access_token, &room, ghost, "hello from afar")
    })
    .await;

    // Typing reaches the bridge as ephemeral data, under both keys.
    let typing_path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", common::enc(&alice.user_id));
    let (status, _) =
        server.put(&typing_path, Some(&alice.access_token), json!({"typing": true, "timeout": 30000})).await;
    assert_eq!(status, 200);
    bridge
        .wait_for("alice typing", |l| {
            l["kind"] == "event"
                && l["type"] == "m.typing"
                && l["content"]["user_ids"].as_array().is_some_and(|u| u.iter().any(|u| u == alice.user_id.as_str()))
        })
        .await;
    let with_ephemeral = bridge.wait_for("a transaction with ephemeral data", |l| {
        l["kind"] == "transaction" && l["ephemeral_keys"].as_array().is_some_and(|k| !k.is_empty())
    });
    let keys = with_ephemeral.await["ephemeral_keys"].clone();
    assert_eq!(keys, json!(["de.sorunome.msc2409.ephemeral", "ephemeral"]));

    // So does presence of a user sharing a room with its ghost.
    let presence_path = format!("/_matrix/client/v3/presence/{}/status", common::enc(&alice.user_id));
    let body = json!({"presence": "online", "status_msg": "bridging"});
    assert_eq!(server.put(&presence_path, Some(&alice.access_token), body).await.0, 200);
    bridge
        .wait_for("alice's presence", |l| {
            l["kind"] == "event"
                && l["type"] == "m.presence"
                && l["sender"] == alice.user_id.as_str()
                && l["content"]["status_msg"] == "bridging"
        })
        .await;

    // Inviting an unknown user of the namespace asks the bridge first,
    // which creates it: the invite then succeeds.
    let carol = "@bridge_carol:plexus.test";
    let invited = server.room_post(&alice.access_token, &room, "invite", json!({"user_id": carol})).await;
    assert_eq!(invited.0, 200, "{invited:?}");
    bridge.wait_for("the user query", |l| l["kind"] == "query_user" && l["user_id"] == carol).await;

    // So does resolving an unknown alias of its namespace: the bridge
    // creates the room behind it.
    let alias_path = format!("/_matrix/client/v3/directory/room/{}", common::enc("#bridge_lobby:plexus.test"));
    let (status, resolved) = server.get(&alias_path, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{resolved}");
    assert!(resolved["room_id"].as_str().is_some_and(|r| r.starts_with('!')), "{resolved}");
    bridge.wait_for("the alias query", |l| l["kind"] == "query_alias").await;

    // Third-party lookups are passed through to the bridge.
    let (status, protocols) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{protocols}");
    assert_eq!(protocols["fakechat"]["user_fields"], json!(["nick"]));
    assert_eq!(protocols["fakechat"]["instances"][0]["instance_id"], "mautrix_test|fakenet");
    let users = "/_matrix/client/v3/thirdparty/user/fakechat?nick=zed";
    let (status, found) = server.get(users, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found[0]["userid"], "@bridge_zed:plexus.test");
    assert_eq!(found[0]["fields"]["nick"], "zed");
    let unknown = server.get("/_matrix/client/v3/thirdparty/protocol/nochat", Some(&alice.access_token)).await;
    assert_error(&unknown, 404, "M_NOT_FOUND");

    // The bridge fails for a while, also across a restart of Plexus: every
    // message arrives once, in order, under the transaction id first tried.
    bridge.command(json!({"cmd": "fail", "on": true})).await;
    let failed_before = bridge.seen.iter().filter(|l| l["kind"] == "failed").count();
    for text in ["m1", "m2", "m3"] {
        assert_eq!(server.send_text(&alice.access_token, &room, text).await.0, 200);
    }
    bridge.wait_for("a failed transaction", |l| l["kind"] == "failed").await;
    let first_failed = bridge.seen.iter().filter(|l| l["kind"] == "failed").nth(failed_before).cloned();
    let first_failed = first_failed.expect("a failure")["txn_id"].clone();
    server.restart().await;
    let failures = bridge.seen.iter().filter(|l| l["kind"] == "failed").count();
    // After the restart the transaction in flight is sent again, same id.
    for _ in 0..10_000 {
        if bridge.seen.iter().filter(|l| l["kind"] == "failed").count() > failures {
            break;
        }
        bridge.next_line().await;
    }
    let retried = bridge.seen.iter().rfind(|l| l["kind"] == "failed").expect("a retry")["txn_id"].clone();
    assert_eq!(retried, first_failed, "a retried transaction keeps its id");
    assert_eq!(server.send_text(&alice.access_token, &room, "m4").await.0, 200);
    bridge.command(json!({"cmd": "fail", "on": false})).await;
    bridge
        .wait_for("m4", |l| {
            l["kind"] == "event" && l["content"]["body"] == "m4" && l["sender"] == alice.user_id.as_str()
        })
        .await;
    let delivered = bridge.seen.iter().find(|l| l["kind"] == "transaction" && l["txn_id"] == first_failed);
    assert!(delivered.is_some(), "the failed transaction {first_failed} was delivered under its id");
    let bodies = bridge.bodies_from(&alice.user_id);
    assert_eq!(bodies, ["hello bridge", "m1", "m2", "m3", "m4"], "every message once, in order");

    bridge.stdin.write_all(b"{\"cmd\": \"quit\"}\n").await.expect("quit sent");
    let _ = tokio::time::timeout(Duration::from_secs(10), bridge.child.wait()).await;
}

/// A bare appservice on loopback recording the body of every transaction
/// (and answering 200 to anything else).
async fn recording_appservice() -> (String, Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |uri: http::Uri, body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            if uri.path().starts_with("/_matrix/app/v1/transactions/") {
                seen.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
            }
            axum::Json(json!({}))
        }
    });
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received, serving)
}

/// Waits (bounded) until a recorded transaction satisfies `found`; returns it.
async fn transaction_with(received: &Arc<Mutex<Vec<Value>>>, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    common::wait_until(what, || async { received.lock().unwrap().iter().any(&found) }).await;
    received.lock().unwrap().iter().find(|t| found(t)).cloned().unwrap()
}

/// A device's identity keys, signed by the device, as a client uploads them.
fn signed_device_keys(user: &str, device: &str) -> Value {
    use plexus::ruma::{
        CanonicalJsonObject,
        serde::{Base64, base64::Standard},
        signatures::{Ed25519KeyPair, sign_json},
    };
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
    serde_json::to_value(obj).unwrap()
}

#[tokio::test]
async fn msc3202_transactions_carry_to_device_device_lists_and_key_counts() {
    let (url, received, serving) = recording_appservice().await;
    let (server, _files) = start_with_registration(&registration(Some(&url)), None).await;
    const GHOST: &str = "@bridge_alice:plexus.test";
    let as_ghost = |path: &str| format!("{path}?user_id=%40bridge_alice%3Aplexus.test");
    let body = json!({"username": "bridge_alice", "type": "m.login.application_service", "inhibit_login": true});
    assert_eq!(as_post(&server, "/_matrix/client/v3/register", body).await.0, 200);
    // MSC4190: the ghost's device, made without a login.
    let (status, resp) = server.put(&as_ghost("/_matrix/client/v3/devices/GHOSTDEV"), Some(AS_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{resp}");

    // A normal user shares a room with the ghost.
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [GHOST]})).await;
    let join = as_ghost(&format!("/_matrix/client/v3/join/{}", common::enc(&room)));
    assert_eq!(as_post(&server, &join, json!({})).await.0, 200);

    // MSC2409: alice's to-device message to the ghost's device reaches the
    // appservice, marked with its recipient.
    let messages = json!({"messages": {GHOST: {"GHOSTDEV": {"secret": "for the ghost"}}}});
    let (status, resp) =
        server.put("/_matrix/client/v3/sendToDevice/m.test.ping/t1", Some(&alice.access_token), messages).await;
    assert_eq!(status, 200, "{resp}");
    let txn = transaction_with(&received, "the to-device message", |t| {
        t["de.sorunome.msc2409.to_device"].as_array().is_some_and(|m| !m.is_empty())
    })
    .await;
    let to_device = &txn["de.sorunome.msc2409.to_device"];
    assert_eq!(
        *to_device,
        json!([{"type": "m.test.ping", "sender": alice.user_id, "content": {"secret": "for the ghost"},
                "to_user_id": GHOST, "to_device_id": "GHOSTDEV"}]),
        "{txn}"
    );
    // The ghost is the appservice's alone: the message counts as delivered.
    let sync = format!("{}&org.matrix.msc3202.device_id=GHOSTDEV&timeout=0", as_ghost("/_matrix/client/v3/sync"));
    let (status, synced) = server.get(&sync, Some(AS_TOKEN)).await;
    assert_eq!(status, 200, "{synced}");
    let left_for_sync = synced["to_device"]["events"].as_array().map_or(0, |e| e.len());
    assert_eq!(left_for_sync, 0, "handed to the appservice, not left for a sync: {synced}");

    // MSC3202: the ghost's device uploads keys; the counts follow, under both names.
    let upload = format!("{}&org.matrix.msc3202.device_id=GHOSTDEV", as_ghost("/_matrix/client/v3/keys/upload"));
    let keys = json!({
        "one_time_keys": {"curve25519:AAAA": "a2V5b25l", "curve25519:AAAB": "a2V5dHdv"},
        "fallback_keys": {"signed_curve25519:FB": {"key": "ZmFsbGJhY2s", "fallback": true}},
    });
    let (status, resp) = as_post(&server, &upload, keys).await;
    assert_eq!((status, &resp["one_time_key_counts"]["curve25519"]), (200, &json!(2)), "{resp}");
    let txn = transaction_with(&received, "the key counts", |t| {
        t["org.matrix.msc3202.device_one_time_keys_count"][GHOST]["GHOSTDEV"]["curve25519"] == 2
    })
    .await;
    assert_eq!(
        txn["org.matrix.msc3202.device_one_time_keys_count"],
        json!({GHOST: {"GHOSTDEV": {"curve25519": 2, "signed_curve25519": 0}}}),
        "{txn}"
    );
    assert_eq!(
        txn["org.matrix.msc3202.device_one_time_key_counts"],
        txn["org.matrix.msc3202.device_one_time_keys_count"]
    );
    assert_eq!(
        txn["org.matrix.msc3202.device_unused_fallback_key_types"],
        json!({GHOST: {"GHOSTDEV": ["signed_curve25519"]}})
    );

    // A claim by alice lowers the count, and the appservice hears of it.
    let claim = json!({"one_time_keys": {GHOST: {"GHOSTDEV": "curve25519"}}});
    let (status, resp) = server.post("/_matrix/client/v3/keys/claim", Some(&alice.access_token), claim).await;
    assert_eq!(status, 200, "{resp}");
    transaction_with(&received, "the count after a claim", |t| {
        t["org.matrix.msc3202.device_one_time_keys_count"][GHOST]["GHOSTDEV"]["curve25519"] == 1
    })
    .await;

    // Alice, who shares a room with the ghost, changes her device list.
    let (status, resp) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice.access_token),
            json!({"device_keys": signed_device_keys(&alice.user_id, &alice.device_id)}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let txn = transaction_with(&received, "alice's device list change", |t| {
        t["org.matrix.msc3202.device_lists"]["changed"].as_array().is_some_and(|c| c.contains(&json!(alice.user_id)))
    })
    .await;
    assert_eq!(txn["org.matrix.msc3202.device_lists"]["left"], json!([]), "{txn}");

    // Alice leaves the only room she shared with the ghost.
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", common::enc(&room));
    assert_eq!(server.post(&leave, Some(&alice.access_token), json!({})).await.0, 200);
    let txn = transaction_with(&received, "alice's leaving", |t| {
        t["org.matrix.msc3202.device_lists"]["left"].as_array().is_some_and(|c| c.contains(&json!(alice.user_id)))
    })
    .await;
    assert_eq!(txn["org.matrix.msc3202.device_lists"]["changed"], json!([]), "{txn}");
    serving.abort();
}
