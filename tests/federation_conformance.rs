//! Federation as other servers see Plexus, and as Plexus sees servers that
//! are older or laxer than itself. Requests are made as a remote server
//! would make them (signed with another server's key), or an intercepting
//! proxy stands in front of a server to make it answer as such servers do:
//! `/send` answered without `pdus`, errors from `make_join`, no v2
//! membership endpoints.

#![recursion_limit = "256"]

mod common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use common::{TestServer, TestUser, assert_error, enc, free_port, make_test_certs};
use plexus::ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, RoomVersionId,
    api::{
        auth_scheme::AuthScheme,
        federation::authentication::{ServerSignatures, ServerSignaturesInput},
    },
    signatures::{Ed25519KeyPair, hash_and_sign_event, reference_hash},
};
use serde_json::{Value, json};

type Certs = (PathBuf, PathBuf, PathBuf);

/// A federating server named `name`, its federation listener on `port`.
async fn try_start(certs: &Certs, name: &str, port: u16) -> Result<TestServer, plexus::StartError> {
    let (ca, cert, key) = certs.clone();
    let name = name.to_owned();
    TestServer::try_start_with(move |c| {
        c.server.server_name = name.as_str().try_into().unwrap();
        c.federation.enabled = true;
        c.federation.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
        c.federation.tls_cert = Some(cert);
        c.federation.tls_key = Some(key);
        c.federation.extra_ca_files = vec![ca];
        c.federation.allow_loopback = true;
    })
    .await
}

/// A federating server named `HOST:PORT` on a free port.
async fn start_server(certs: &Certs, host: &str) -> (TestServer, String) {
    for _ in 0..20 {
        let port = free_port();
        let name = format!("{host}:{port}");
        match try_start(certs, &name, port).await {
            Ok(server) => return (server, name),
            Err(plexus::StartError::Listen { .. }) => continue,
            Err(e) => panic!("server starts: {e}"),
        }
    }
    panic!("no free port for a federation listener");
}

fn certs() -> (Certs, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (make_test_certs(dir.path()), dir)
}

/// The federation base URL of a server named `HOST:PORT` listening on it.
fn fed_url(name: &str) -> String {
    format!("https://127.0.0.1:{}", name.rsplit(':').next().unwrap())
}

fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Syncs until `found` holds for a sync response, or panics.
async fn sync_until(server: &TestServer, user: &TestUser, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    let mut since: Option<String> = None;
    for _ in 0..60 {
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

mod proxy {
    //! An HTTPS proxy in front of a server's federation listener. The
    //! server is named after the proxy's port, so other servers reach it
    //! through the proxy, which passes requests on or answers them itself,
    //! and keeps what it answered.

    use std::net::TcpListener;

    use axum::{body::Bytes, extract::Request, response::Response};

    use super::*;

    /// What the proxy does with a request.
    pub enum Action {
        /// Passes it on and answers what the server answered.
        Forward,
        /// Answers this (status, body) without passing it on.
        Answer(u16, String),
        /// Passes it on, then answers this instead of the server's answer.
        ForwardThenAnswer(u16, String),
    }

    pub type Rule = Arc<dyn Fn(&http::Method, &str) -> Action + Send + Sync>;

    /// A request the proxy saw and what it answered.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        pub status: u16,
        pub body: String,
    }

    pub struct Proxy {
        pub seen: Arc<Mutex<Vec<Seen>>>,
        handle: axum_server::Handle<std::net::SocketAddr>,
    }

    impl Proxy {
        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.handle.shutdown();
        }
    }

    /// A server behind a proxy that applies `rule`; returns the server, its
    /// name (`localhost:PROXY_PORT`) and the proxy.
    pub async fn server_behind_proxy(certs: &Certs, rule: Rule) -> (TestServer, String, Proxy) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let name = format!("localhost:{}", listener.local_addr().unwrap().port());
        let mut started = None;
        for _ in 0..20 {
            let port = free_port();
            match try_start(certs, &name, port).await {
                Ok(server) => {
                    started = Some((server, port));
                    break;
                }
                Err(plexus::StartError::Listen { .. }) => continue,
                Err(e) => panic!("server starts: {e}"),
            }
        }
        let (server, port) = started.expect("a free port for the server behind the proxy");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target = format!("https://127.0.0.1:{port}");
        let http = insecure_client();
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let (rule, http, target, log) = (rule.clone(), http.clone(), target.clone(), log.clone());
            async move { pass(req, &rule, &http, &target, &log).await }
        });
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&certs.1, &certs.2).await.unwrap();
        let handle = axum_server::Handle::new();
        let serving = axum_server::from_tcp_rustls(listener, tls).unwrap().handle(handle.clone());
        tokio::spawn(async move { serving.serve(app.into_make_service()).await });
        (server, name, Proxy { seen, handle })
    }

    async fn pass(req: Request, rule: &Rule, http: &reqwest::Client, target: &str, log: &Mutex<Vec<Seen>>) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
        let action = rule(&parts.method, parts.uri.path());
        let (status, answer) = match action {
            Action::Answer(status, body) => (status, Bytes::from(body)),
            Action::Forward | Action::ForwardThenAnswer(..) => {
                let mut forwarded = http.request(parts.method.clone(), format!("{target}{path}")).body(body);
                for (name, value) in &parts.headers {
                    if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                        forwarded = forwarded.header(name, value);
                    }
                }
                let response = forwarded.send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap();
                match action {
                    Action::ForwardThenAnswer(status, body) => (status, Bytes::from(body)),
                    _ => (status, body),
                }
            }
        };
        log.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            path,
            status,
            body: String::from_utf8_lossy(&answer).into_owned(),
        });
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(answer))
            .unwrap()
    }
}

use proxy::{Action, server_behind_proxy};

/// Requests and PDUs made as if by the server of `dir` (signed with its
/// key) for the server named `destination`.
struct AsServer {
    key: Ed25519KeyPair,
    name: String,
    destination: String,
    url: String,
    http: reqwest::Client,
}

impl AsServer {
    fn new(server: &TestServer, name: &str, destination: &str) -> Self {
        Self {
            key: plexus::server_key::ServerKey::load_or_create(server.dir.path()).unwrap().keypair,
            name: name.to_owned(),
            destination: destination.to_owned(),
            url: fed_url(destination),
            http: insecure_client(),
        }
    }

    /// A signed request with a JSON body; returns status and body.
    async fn signed(&self, method: http::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .unwrap();
        let input = ServerSignaturesInput::new(
            self.name.as_str().try_into().unwrap(),
            self.destination.as_str().try_into().unwrap(),
            &self.key,
        );
        ServerSignatures::add_authentication(&mut request, input).unwrap();
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from)).unwrap();
        answer_of(self.http.execute(request).await.unwrap()).await
    }

    /// A transaction of `pdus` (any JSON) and `edus`.
    async fn transaction(&self, pdus: Vec<Value>, edus: Vec<Value>) -> (u16, Value) {
        let txn = format!("t{}", MilliSecondsSinceUnixEpoch::now().get());
        let now = MilliSecondsSinceUnixEpoch::now();
        let body = json!({"origin": self.name, "origin_server_ts": now, "pdus": pdus, "edus": edus});
        self.signed(http::Method::PUT, &format!("/_matrix/federation/v1/send/{txn}"), Some(body)).await
    }

    /// A message PDU of a version 12 room, hashed and signed; and its id.
    fn message(&self, room: &str, sender: &str, auth: Vec<String>, prev: Vec<String>, body: &str) -> (Value, String) {
        let value = json!({
            "room_id": room, "sender": sender, "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body},
            "auth_events": auth, "prev_events": prev, "depth": 1000,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        });
        let mut obj: CanonicalJsonObject = serde_json::from_value(value).unwrap();
        let rules = RoomVersionId::V12.rules().unwrap();
        hash_and_sign_event(&self.name, &self.key, &mut obj, &rules.redaction).unwrap();
        let id = format!("${}", reference_hash(&obj, &rules).unwrap());
        (serde_json::to_value(&obj).unwrap(), id)
    }
}

/// A public room of `alice` on A that `bob` of B joined; returns its id.
async fn shared_room(a: &TestServer, a_name: &str, b: &TestServer, alice: &TestUser, bob: &TestUser) -> String {
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(a_name)),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    room
}

/// The id of the state event (`kind`, `key`) of a room, read by `user`.
async fn state_id(server: &TestServer, user: &TestUser, room: &str, kind: &str, key: &str) -> String {
    let (_, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room)), Some(&user.access_token)).await;
    state.as_array().unwrap().iter().find(|e| e["type"] == kind && e["state_key"] == key).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Item: a `/send` answered 200 without `pdus` (`{}`, or no body at all,
/// as servers implementing MSC3618 may answer) was delivered: it is not
/// sent again, and what comes after it goes out.
#[tokio::test]
async fn a_send_answered_without_pdus_counts_as_delivered() {
    let (certs, _dir) = certs();
    let (a, a_name) = start_server(&certs, "localhost").await;
    let answers = Arc::new(Mutex::new(vec!["", "{}"]));
    let pick = answers.clone();
    let rule: proxy::Rule = Arc::new(move |method, path| {
        if method == http::Method::PUT && path.starts_with("/_matrix/federation/v1/send/") {
            let body = pick.lock().unwrap().pop().unwrap_or("{}");
            return Action::ForwardThenAnswer(200, body.to_owned());
        }
        Action::Forward
    });
    let (b, _b_name, proxy) = server_behind_proxy(&certs, rule).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = shared_room(&a, &a_name, &b, &alice, &bob).await;

    for text in ["one", "two", "three"] {
        let (status, body) = a.send_text(&alice.access_token, &room, text).await;
        assert_eq!(status, 200, "{body}");
        sync_until(&b, &bob, text, |s| timeline_has(s, &room, text)).await;
    }
    // Every transaction went once: none was taken for undelivered. (The
    // proxy notes an answer once it is given, after the server behind it
    // committed what the sync above saw.)
    let sends = || -> Vec<String> {
        proxy
            .seen()
            .into_iter()
            .filter(|s| s.path.starts_with("/_matrix/federation/v1/send/"))
            .map(|s| s.path)
            .collect()
    };
    common::wait_until("the third transaction's answer", || {
        let n = sends().len();
        async move { n >= 3 }
    })
    .await;
    let sends = sends();
    let mut unique = sends.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sends.len(), "a transaction was sent again: {sends:?}");
    assert!(answers.lock().unwrap().is_empty(), "both lax answers were given");
}

/// Item: a transaction is accepted (200) whatever its PDUs are; each
/// refused PDU is reported in `pdus`, and the others are applied.
#[tokio::test]
async fn a_transaction_is_accepted_whatever_its_pdus() {
    let (certs, _dir) = certs();
    let (a, a_name) = start_server(&certs, "localhost").await;
    let (b, b_name) = start_server(&certs, "localhost").await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = shared_room(&a, &a_name, &b, &alice, &bob).await;
    let as_b = AsServer::new(&b, &b_name, &a_name);
    let power = state_id(&a, &alice, &room, "m.room.power_levels", "").await;
    let member = state_id(&a, &alice, &room, "m.room.member", &bob.user_id).await;
    let (_, last) = a.messages(&alice.access_token, &room, "dir=b&limit=1").await;
    let prev = last["chunk"][0]["event_id"].as_str().unwrap().to_owned();

    // A message of someone not in the room fails auth; one whose prev event
    // nobody has cannot be placed; one of a room A does not know; and PDUs
    // that are not events at all.
    let mallory = format!("@mallory:{b_name}");
    let (intruder, intruder_id) = as_b.message(&room, &mallory, vec![power.clone()], vec![prev.clone()], "let me in");
    let missing_prev = "$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned();
    let (orphan, orphan_id) =
        as_b.message(&room, &bob.user_id, vec![power.clone(), member.clone()], vec![missing_prev], "orphan");
    let elsewhere = format!("!elsewhere:{b_name}");
    let (stray, _) = as_b.message(&elsewhere, &bob.user_id, vec![], vec![prev.clone()], "stray");
    let (good, good_id) = as_b.message(&room, &bob.user_id, vec![power, member], vec![prev], "genuine");
    let pdus = vec![intruder, orphan, stray, json!(42), json!({"type": "m.room.message"}), good];
    let (status, body) = as_b.transaction(pdus, vec![]).await;
    assert_eq!(status, 200, "{body}");
    // Rejected by the auth rules is processed: `{}`, as Synapse answers.
    assert_eq!(body["pdus"][&intruder_id], json!({}), "{body}");
    assert!(body["pdus"].get(&orphan_id).is_some(), "{body}");
    assert_eq!(body["pdus"][&good_id], json!({}), "{body}");
    let (status, event) = a
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&good_id)), Some(&alice.access_token))
        .await;
    assert_eq!((status, event["content"]["body"].as_str()), (200, Some("genuine")), "{event}");
    let (status, _) = a
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&intruder_id)), Some(&alice.access_token))
        .await;
    assert_eq!(status, 404);

    // EDUs alone.
    let typing = json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob.user_id, "typing": true}});
    let (status, body) = as_b.transaction(vec![], vec![typing]).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&a, &alice, "bob typing", |s| {
        s["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|ev| ev.iter().any(|e| e["content"]["user_ids"] == json!([bob.user_id])))
    })
    .await;
}

/// Item: errors of the resident server's `make_join` about the join itself
/// reach the client as the resident server gave them; its own failures
/// are a 502.
#[tokio::test]
async fn make_join_errors_reach_the_client_as_given() {
    let (certs, _dir) = certs();
    let (a, _a_name) = start_server(&certs, "localhost").await;
    let answer = Arc::new(Mutex::new((0u16, String::new())));
    let current = answer.clone();
    let rule: proxy::Rule = Arc::new(move |_, path| {
        if path.starts_with("/_matrix/federation/v1/make_join/") {
            let (status, body) = current.lock().unwrap().clone();
            return Action::Answer(status, body);
        }
        Action::Forward
    });
    let (_b, b_name, _proxy) = server_behind_proxy(&certs, rule).await;
    let alice = a.register("alice").await;
    let room = format!("!somewhere:{b_name}");
    // B is asked first; a server that cannot be reached comes after it.
    let join = || async {
        a.post(
            &format!("/_matrix/client/v3/join/{}?server_name={}&server_name=localhost%3A1", enc(&room), enc(&b_name)),
            Some(&alice.access_token),
            json!({}),
        )
        .await
    };

    *answer.lock().unwrap() = (
        400,
        json!({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "too new", "room_version": "org.example.future"})
            .to_string(),
    );
    let got = join().await;
    assert_error(&got, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(got.1["room_version"], "org.example.future", "{:?}", got.1);

    *answer.lock().unwrap() = (403, json!({"errcode": "M_FORBIDDEN", "error": "not invited"}).to_string());
    let got = join().await;
    assert_error(&got, 403, "M_FORBIDDEN");
    assert!(got.1["error"].as_str().unwrap().contains("not invited"), "{:?}", got.1);

    *answer.lock().unwrap() = (404, json!({"errcode": "M_NOT_FOUND", "error": "no such room"}).to_string());
    assert_error(&join().await, 404, "M_NOT_FOUND");

    *answer.lock().unwrap() = (500, json!({"errcode": "M_UNKNOWN", "error": "oops"}).to_string());
    assert_error(&join().await, 502, "M_UNKNOWN");

    // Nothing was joined.
    let (_, rooms) = a.get("/_matrix/client/v3/joined_rooms", Some(&alice.access_token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
}

/// Item: with a server that knows only the v1 `send_join`, `send_leave`
/// and `invite`, joins, declined invites and invites (of a version 1 room)
/// go through their v1 forms, and Plexus answers those forms as
/// `[200, {...}]`.
#[tokio::test]
async fn membership_falls_back_to_v1_and_v1_is_served() {
    let (certs, _dir) = certs();
    let (a, a_name) = start_server(&certs, "localhost").await;
    let rule: proxy::Rule = Arc::new(|method, path| {
        let v2 = ["send_join", "send_leave", "invite"]
            .iter()
            .any(|e| path.starts_with(&format!("/_matrix/federation/v2/{e}/")));
        if method != http::Method::PUT || !v2 {
            return Action::Forward;
        }
        // Synapse's answer to an endpoint it does not know, and older servers'.
        let status = if path.contains("/invite/") { 404 } else { 400 };
        Action::Answer(status, json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}).to_string())
    });
    let (b, b_name, proxy) = server_behind_proxy(&certs, rule).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = b.register("carol").await;

    // alice of A joins bob's room on B: v1 send_join.
    let room = b.create_room(&bob.access_token, json!({"preset": "public_chat"})).await;
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&b_name)),
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = a.send_text(&alice.access_token, &room, "hello over v1").await;
    assert_eq!(status, 200, "{body}");
    sync_until(&b, &bob, "alice's message", |s| timeline_has(s, &room, "hello over v1")).await;

    // alice declines an invite to another room of B's: v1 send_leave.
    let other = b.create_room(&bob.access_token, json!({"preset": "private_chat"})).await;
    let (status, body) = b.room_post(&bob.access_token, &other, "invite", json!({"user_id": alice.user_id})).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&a, &alice, "the invite", |s| s["rooms"]["invite"][&other].is_object()).await;
    let (status, body) = a.room_post(&alice.access_token, &other, "leave", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, member) = b.get_state(&bob.access_token, &other, "m.room.member", &alice.user_id).await;
    assert_eq!((status, member["membership"].as_str()), (200, Some("leave")), "{member}");

    // alice invites carol of B to a version 1 room of A's: v1 invite.
    let old = a.create_room(&alice.access_token, json!({"preset": "private_chat", "room_version": "1"})).await;
    let (status, body) = a.room_post(&alice.access_token, &old, "invite", json!({"user_id": carol.user_id})).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&b, &carol, "the invite", |s| s["rooms"]["invite"][&old].is_object()).await;
    let (status, body) = b.join(&carol.access_token, &old).await;
    assert_eq!(status, 200, "{body}");
    sync_until(&a, &alice, "carol's join", |s| {
        s["rooms"]["join"][&old]["timeline"]["events"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| e["state_key"] == carol.user_id && e["content"]["membership"] == "join")
        })
    })
    .await;

    // What B answered to the v1 forms.
    let v1 = |endpoint: &str| {
        proxy
            .seen()
            .into_iter()
            .find(|s| s.method == "PUT" && s.path.starts_with(&format!("/_matrix/federation/v1/{endpoint}/")))
            .unwrap_or_else(|| panic!("no v1 {endpoint} in {:?}", proxy.seen()))
    };
    let join = v1("send_join");
    let answer: Value = serde_json::from_str(&join.body).unwrap();
    assert_eq!((join.status, &answer[0]), (200, &json!(200)), "{answer}");
    assert_eq!(answer[1]["origin"], b_name, "{answer}");
    assert!(answer[1]["state"].as_array().is_some_and(|s| s.iter().any(|e| e["type"] == "m.room.create")), "{answer}");
    assert!(answer[1]["auth_chain"].is_array(), "{answer}");
    let leave = v1("send_leave");
    assert_eq!((leave.status, serde_json::from_str::<Value>(&leave.body).unwrap()), (200, json!([200, {}])));
    let invite = v1("invite");
    let answer: Value = serde_json::from_str(&invite.body).unwrap();
    assert_eq!((invite.status, &answer[0]), (200, &json!(200)), "{answer}");
    assert_eq!(answer[1]["event"]["state_key"], carol.user_id, "{answer}");
    assert!(answer[1]["event"]["signatures"][&b_name].is_object(), "B signed the invite: {answer}");
    assert!(answer[1]["event"]["signatures"][&a_name].is_object(), "{answer}");
}

/// Item: the notary's `GET` forms, for one server and for one key of it,
/// countersigned; the same documents as its `POST` form.
#[tokio::test]
async fn notary_get_forms_answer_like_post() {
    let (certs, _dir) = certs();
    let (_a, a_name) = start_server(&certs, "localhost").await;
    let (_b, b_name) = start_server(&certs, "localhost").await;
    let http = insecure_client();
    let url = fed_url(&a_name);
    let get = |path: String| {
        let http = http.clone();
        async move { answer_of(http.get(path).send().await.unwrap()).await }
    };

    let (status, by_server) = get(format!("{url}/_matrix/key/v2/query/{b_name}")).await;
    assert_eq!(status, 200, "{by_server}");
    let docs = by_server["server_keys"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{by_server}");
    assert_eq!(docs[0]["server_name"], b_name);
    assert!(docs[0]["signatures"][&b_name].is_object() && docs[0]["signatures"][&a_name].is_object(), "{by_server}");
    let key_id = docs[0]["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();

    let (status, by_key) = get(format!("{url}/_matrix/key/v2/query/{b_name}/{}", enc(&key_id))).await;
    assert_eq!(status, 200, "{by_key}");
    assert_eq!(by_key["server_keys"][0]["verify_keys"], docs[0]["verify_keys"], "{by_key}");
    assert!(by_key["server_keys"][0]["signatures"][&a_name].is_object(), "{by_key}");
    let (status, none) = get(format!("{url}/_matrix/key/v2/query/{b_name}/ed25519%3Anope")).await;
    assert_eq!((status, none), (200, json!({"server_keys": []})));

    // The notary vouches for itself too, and the POST form agrees.
    let (status, own) = get(format!("{url}/_matrix/key/v2/query/{a_name}?minimum_valid_until_ts=1")).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["server_keys"][0]["server_name"], a_name, "{own}");
    let (status, posted) = answer_of(
        http.post(format!("{url}/_matrix/key/v2/query"))
            .json(&json!({"server_keys": {b_name.clone(): {key_id.clone(): {}}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!(posted["server_keys"][0]["verify_keys"], docs[0]["verify_keys"], "{posted}");
}

/// Item: what a malformed request is told: a body that is not JSON is
/// 400 `M_NOT_JSON` (signed or not), one that is not an object 400
/// `M_BAD_JSON`, a malformed X-Matrix header 400, and only a missing or
/// wrong signature 401 `M_UNAUTHORIZED`.
#[tokio::test]
async fn malformed_federation_requests_are_bad_requests() {
    let (certs, _dir) = certs();
    let (_a, a_name) = start_server(&certs, "localhost").await;
    let (b, b_name) = start_server(&certs, "localhost").await;
    let http = insecure_client();
    let url = format!("{}/_matrix/federation/v1/send/t1", fed_url(&a_name));
    let put = |body: &'static str, auth: Option<String>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut req = http.put(url).header("Content-Type", "application/json").body(body);
            if let Some(auth) = auth {
                req = req.header("Authorization", auth);
            }
            answer_of(req.send().await.unwrap()).await
        }
    };
    let header = |origin: &str, sig: &str| {
        format!("X-Matrix origin=\"{origin}\",destination=\"{a_name}\",key=\"ed25519:a_1\",sig=\"{sig}\"")
    };
    let valid_looking = header(&b_name, &"A".repeat(86));

    assert_error(&put("{\"origin\": ", None).await, 400, "M_NOT_JSON");
    assert_error(&put("not json at all", Some(valid_looking.clone())).await, 400, "M_NOT_JSON");
    assert_error(&put("[1, 2]", Some(valid_looking.clone())).await, 400, "M_BAD_JSON");
    let body = "{\"origin\": \"x\", \"origin_server_ts\": 1, \"pdus\": []}";
    // Malformed headers: not parameters, an origin that is no server name,
    // a signature that is not base64.
    for malformed in
        ["X-Matrix garbage".to_owned(), header("not a server name!", "AAAA"), header(&b_name, "***not base64***")]
    {
        let got = put(body, Some(malformed.clone())).await;
        assert_eq!(got.0, 400, "{malformed}: {:?}", got.1);
        assert_eq!(got.1["errcode"], "M_UNAUTHORIZED", "{malformed}: {:?}", got.1);
    }
    // Missing, of another scheme, or a signature that does not verify: 401.
    assert_error(&put(body, None).await, 401, "M_UNAUTHORIZED");
    assert_error(&put(body, Some("Bearer abc".into())).await, 401, "M_UNAUTHORIZED");
    assert_error(&put(body, Some(valid_looking)).await, 401, "M_UNAUTHORIZED");

    // A well-signed request still works.
    let as_b = AsServer::new(&b, &b_name, &a_name);
    let (status, answer) = as_b.transaction(vec![], vec![]).await;
    assert_eq!((status, answer), (200, json!({"pdus": {}})));
}

/// Item: a server the room's server ACL denies is refused (403
/// `M_FORBIDDEN`) by every endpoint about the room, before its body is
/// parsed: a `send_join` with nonsense for a body is refused as denied,
/// not as bad JSON.
#[tokio::test]
async fn server_acls_are_checked_before_the_body() {
    let (certs, _dir) = certs();
    let (a, a_name) = start_server(&certs, "localhost").await;
    // Named by IP so that the ACL can tell it from A.
    let (b, b_name) = start_server(&certs, "127.0.0.1").await;
    let alice = a.register("alice").await;
    let acl = json!({"type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": ["127.0.0.1"]}});
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat", "initial_state": [acl]})).await;
    let open = a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let create = state_id(&a, &alice, &room, "m.room.create", "").await;
    let as_b = AsServer::new(&b, &b_name, &a_name);
    let bob = format!("@bob:{b_name}");

    let nonsense = json!({"this": "is not an event"});
    let event = enc("$whatever");
    for (method, path, body) in [
        (http::Method::PUT, format!("/_matrix/federation/v2/send_join/{}/{event}", enc(&room)), Some(nonsense.clone())),
        (http::Method::PUT, format!("/_matrix/federation/v1/send_join/{}/{event}", enc(&room)), Some(nonsense.clone())),
        (http::Method::PUT, format!("/_matrix/federation/v2/invite/{}/{event}", enc(&room)), Some(nonsense.clone())),
        (http::Method::PUT, format!("/_matrix/federation/v1/invite/{}/{event}", enc(&room)), Some(nonsense.clone())),
        (http::Method::GET, format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(&bob)), None),
        (http::Method::GET, format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(&room), enc(&create)), None),
        (
            http::Method::GET,
            format!("/_matrix/federation/v1/backfill/{}?v={}&limit=10", enc(&room), enc(&create)),
            None,
        ),
    ] {
        let got = as_b.signed(method, &path, body).await;
        assert_eq!(got.0, 403, "{path}: {:?}", got.1);
        assert_eq!(got.1["errcode"], "M_FORBIDDEN", "{path}: {:?}", got.1);
    }
    // The same nonsense for a room without an ACL is a bad request.
    let got = as_b
        .signed(http::Method::PUT, &format!("/_matrix/federation/v2/send_join/{}/{event}", enc(&open)), Some(nonsense))
        .await;
    assert_eq!(got.0, 400, "{:?}", got.1);
    // And B may still ask for a template of the open room.
    let (status, template) = as_b
        .signed(
            http::Method::GET,
            &format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&open), enc(&bob)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{template}");
    assert_eq!(template["event"]["state_key"], bob, "{template}");
}

/// Sytest "Inbound /make_join rejects attempts to join rooms where all
/// users have left": a server none of whose users is in the room any more
/// answers `make_join` 404 `M_NOT_FOUND`.
#[tokio::test]
async fn make_join_of_a_room_every_local_user_left_is_not_found() {
    let (certs, _dir) = certs();
    let (a, a_name) = start_server(&certs, "localhost").await;
    let (b, b_name) = start_server(&certs, "127.0.0.1").await;
    let alice = a.register("alice").await;
    let room = a.create_room(&alice.access_token, json!({"preset": "public_chat"})).await;
    let as_b = AsServer::new(&b, &b_name, &a_name);
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(&format!("@bob:{b_name}")));
    let (status, template) = as_b.signed(http::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{template}");
    assert_eq!(a.room_post(&alice.access_token, &room, "leave", json!({})).await.0, 200);
    assert_error(&as_b.signed(http::Method::GET, &path, None).await, 404, "M_NOT_FOUND");
}
