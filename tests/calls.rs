//! Calls against real servers: TURN credentials from `/voip/turnServer`
//! checked by a real coturn (an allocation with them succeeds, one with
//! expired or forged ones is refused), MatrixRTC transport discovery
//! (MSC4143) from the configuration, and OpenID tokens resolved by the
//! federation listener's `/openid/userinfo`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::{PASSWORD, TestServer, assert_error, free_port, make_test_certs};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const TURN_SERVER: &str = "/_matrix/client/v3/voip/turnServer";

// ---------------------------------------------------------------- TURN ---

/// The coturn binaries, if installed. Without them the coturn test skips,
/// unless `PLEXUS_REQUIRE_COTURN` is set (CI sets it), when it fails.
fn coturn() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    let found = find("turnserver").zip(find("turnutils_uclient"));
    if found.is_none() {
        let required = std::env::var_os("PLEXUS_REQUIRE_COTURN").is_some_and(|v| !v.is_empty());
        assert!(!required, "PLEXUS_REQUIRE_COTURN is set but turnserver or turnutils_uclient is not installed");
        eprintln!("skipping: coturn (turnserver, turnutils_uclient) is not installed; `apt-get install coturn`");
    }
    found
}

/// A coturn on loopback checking TURN REST API credentials made with
/// `secret`; killed (by its PID) when dropped.
struct Coturn {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

const REALM: &str = "plexus.test";

impl Coturn {
    async fn start(turnserver: &Path, secret: &str) -> Self {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_udp_and_tcp_port();
            let log = std::fs::File::create(dir.path().join("turnserver.log")).unwrap();
            let child = tokio::process::Command::new(turnserver)
                // `-n`: no configuration file, so nothing from /etc leaks in.
                .arg("-n")
                .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
                .args(["--listening-port", &port.to_string()])
                .arg("--use-auth-secret")
                .args(["--static-auth-secret", secret])
                .args(["--realm", REALM])
                .args(["--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780"])
                // The test's client and its peer are both on loopback.
                .arg("--allow-loopback-peers")
                .arg("--pidfile")
                .arg(dir.path().join("turnserver.pid"))
                .arg("--userdb")
                .arg(dir.path().join("turndb"))
                .args(["--log-file", "stdout", "--simple-log"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("turnserver starts");
            let mut coturn = Self { child, port, dir };
            if coturn.wait_listening().await {
                return coturn;
            }
            // The port was taken between choosing and binding it: again.
            coturn.stop().await;
        }
        panic!("coturn did not start on any of 10 ports");
    }

    /// Whether coturn accepts TCP connections on its port before it exits.
    async fn wait_listening(&mut self) -> bool {
        for _ in 0..200 {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("coturn is not listening after 10 s; its log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("turnserver.log")).unwrap_or_default()
    }

    /// Kills coturn (SIGKILL to the PID it was started with) and reaps it.
    async fn stop(mut self) {
        self.child.kill().await.expect("coturn is killed");
    }

    /// Allocates a relay with `turnutils_uclient` and sends a few packets
    /// through it; returns whether that worked, and the client's output.
    async fn allocate(&self, uclient: &Path, username: &str, password: &str) -> (bool, String) {
        let run = tokio::process::Command::new(uclient)
            .args(["-p", &self.port.to_string(), "-u", username, "-w", password])
            // Client-to-client through two allocations, 2 messages, 1 client, no RTCP.
            .args(["-y", "-n", "2", "-m", "1", "-c", "127.0.0.1"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("turnutils_uclient finishes within a minute")
            .expect("turnutils_uclient runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

/// A loopback port free for both UDP and TCP (coturn listens on both).
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// The TURN REST API password, computed here independently of Plexus.
fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn coturn_accepts_credentials_from_turn_server_and_refuses_expired_ones() {
    let Some((turnserver, uclient)) = coturn() else { return };
    let secret = "a secret shared by plexus and coturn";
    let coturn = Coturn::start(&turnserver, secret).await;
    let uri = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let server = TestServer::start_with(|c| {
        c.voip.turn_uris = vec![uri.clone()];
        c.voip.turn_shared_secret = Some(secret.to_owned());
        c.voip.turn_ttl = Duration::from_secs(600);
    })
    .await;
    let alice = server.register("alice").await;

    let before = unix_now();
    let (status, creds) = server.get(TURN_SERVER, Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["uris"], json!([uri]));
    assert_eq!(creds["ttl"], 600);
    let username = creds["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let expiry: u64 = expiry.parse().unwrap();
    assert!((before + 600..=unix_now() + 600).contains(&expiry), "expiry {expiry} is now + ttl");
    let password = creds["password"].as_str().unwrap();
    assert_eq!(password, rest_password(secret, username));

    let (allocated, output) = coturn.allocate(&uclient, username, password).await;
    assert!(allocated, "coturn refused Plexus's credentials:\n{output}\ncoturn's log:\n{}", coturn.log());
    assert!(output.contains("tot_recv_msgs"), "packets went through the relay:\n{output}");

    // The same scheme with an expiry a minute ago: refused.
    let expired = format!("{}:{}", unix_now() - 60, alice.user_id);
    let (allocated, output) = coturn.allocate(&uclient, &expired, &rest_password(secret, &expired)).await;
    assert!(!allocated, "coturn accepted expired credentials:\n{output}");
    assert!(output.contains("Cannot complete Allocation"), "{output}");
    // A valid expiry signed with another secret: refused too.
    let (allocated, output) = coturn.allocate(&uclient, username, &rest_password("another secret", username)).await;
    assert!(!allocated, "coturn accepted a forged password:\n{output}");

    coturn.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn turn_server_without_turn_and_with_fixed_credentials() {
    // No TURN configured: `{}`, as Synapse answers.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_eq!(server.get(TURN_SERVER, Some(&alice.access_token)).await, (200, json!({})));
    assert_eq!(server.get("/_matrix/client/r0/voip/turnServer", Some(&alice.access_token)).await, (200, json!({})));
    assert_error(&server.get(TURN_SERVER, None).await, 401, "M_MISSING_TOKEN");
    assert_error(&server.get(TURN_SERVER, Some("not-a-token")).await, 401, "M_UNKNOWN_TOKEN");

    let uris = vec!["turn:turn.plexus.test:3478?transport=udp".to_owned(), "turns:turn.plexus.test:5349".to_owned()];
    let server = TestServer::start_with(|c| {
        c.voip.turn_uris = uris.clone();
        c.voip.turn_username = Some("plexus".into());
        c.voip.turn_password = Some("fixed password".into());
    })
    .await;
    let bob = server.register("bob").await;
    let (status, creds) = server.get(TURN_SERVER, Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds, json!({"username": "plexus", "password": "fixed password", "uris": uris, "ttl": 3600}));
}

// ---------------------------------------------------------- MatrixRTC ---

const RTC_UNSTABLE: &str = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports";
const RTC_STABLE: &str = "/_matrix/client/v1/rtc/transports";

async fn unstable_features(server: &TestServer) -> Value {
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, 200);
    versions["unstable_features"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn rtc_transports_are_offered_as_configured() {
    let transports = json!([
        {"type": "livekit", "livekit_service_url": "https://livekit-jwt.plexus.test"},
        {"type": "org.plexus.test.mesh", "relays": ["a", "b"], "options": {"max": 8, "audio_only": false}},
    ]);
    let server = TestServer::start_with(|c| {
        c.rtc.transports = serde_json::from_value(transports.clone()).unwrap();
    })
    .await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());

    assert_eq!(server.get(RTC_UNSTABLE, token).await, (200, json!({"rtc_transports": transports})));
    assert_eq!(server.get(RTC_STABLE, token).await, (200, json!({"transports": transports})));
    assert_eq!(unstable_features(&server).await["org.matrix.msc4143"], true);
    assert_error(&server.get(RTC_UNSTABLE, None).await, 401, "M_MISSING_TOKEN");
    assert_error(&server.get(RTC_STABLE, None).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rtc_transports_msc4143_is_not_offered() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());
    assert_error(&server.get(RTC_UNSTABLE, token).await, 404, "M_UNRECOGNIZED");
    assert_error(&server.get(RTC_STABLE, token).await, 404, "M_UNRECOGNIZED");
    let features = unstable_features(&server).await;
    assert!(features.get("org.matrix.msc4143").is_none(), "{features}");
}

// ------------------------------------------------------------- OpenID ---

/// A server with a federation listener on a free port, and its port.
async fn federating_server(certs: &(PathBuf, PathBuf, PathBuf)) -> (TestServer, u16) {
    for _ in 0..20 {
        let port = free_port();
        let (ca, cert, key) = certs.clone();
        let started = TestServer::try_start_with(move |c| {
            c.server.server_name = format!("localhost:{port}").try_into().unwrap();
            c.federation.enabled = true;
            c.federation.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
            c.federation.tls_cert = Some(cert);
            c.federation.tls_key = Some(key);
            c.federation.extra_ca_files = vec![ca];
            c.federation.allow_loopback = true;
        })
        .await;
        match started {
            Ok(server) => return (server, port),
            Err(plexus::StartError::Listen { .. }) => continue,
            Err(e) => panic!("server starts: {e}"),
        }
    }
    panic!("no free port for a federation listener");
}

/// `GET /_matrix/federation/v1/openid/userinfo`, unsigned, as a third
/// party asks it.
async fn userinfo(port: u16, access_token: &str) -> (u16, Value) {
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let query: String =
        form_urlencoded::Serializer::new(String::new()).append_pair("access_token", access_token).finish();
    let url = format!("https://127.0.0.1:{port}/_matrix/federation/v1/openid/userinfo?{query}");
    common::json_request(&http, reqwest::Method::GET, &url, None, None).await
}

fn request_token_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/user/{}/openid/request_token", common::enc(user_id))
}

#[tokio::test(flavor = "multi_thread")]
async fn openid_tokens_resolve_on_the_federation_listener_until_they_expire() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = make_test_certs(certs_dir.path());
    let (server, port) = federating_server(&certs).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let token = Some(alice.access_token.as_str());

    let (status, openid) = server.post(&request_token_path(&alice.user_id), token, json!({})).await;
    assert_eq!(status, 200, "{openid}");
    assert_eq!(openid["token_type"], "Bearer");
    assert_eq!(openid["matrix_server_name"], format!("localhost:{port}"));
    assert_eq!(openid["expires_in"], 3600);
    let openid_token = openid["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(port, &openid_token).await, (200, json!({"sub": alice.user_id})));

    // Only for oneself: not for another user of this server or of another.
    assert_error(&server.post(&request_token_path(&bob.user_id), token, json!({})).await, 403, "M_FORBIDDEN");
    let (status, _) = server.post(&request_token_path("@alice:elsewhere.test"), token, json!({})).await;
    assert_eq!(status, 403);
    assert_error(&server.post(&request_token_path(&alice.user_id), None, json!({})).await, 401, "M_MISSING_TOKEN");

    // An OpenID token is no access token, and an access token no OpenID token.
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&openid_token)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&userinfo(port, &alice.access_token).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&userinfo(port, "pxo_unknown").await, 401, "M_UNKNOWN_TOKEN");
    // Sytest "Requests to userinfo without access tokens are rejected":
    // no token is an unknown one, not a malformed request.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let url = format!("https://127.0.0.1:{port}/_matrix/federation/v1/openid/userinfo");
    assert_error(&common::json_request(&http, reqwest::Method::GET, &url, None, None).await, 401, "M_UNKNOWN_TOKEN");

    // An expired token, stored as the server stores tokens: refused, and
    // deleted by the next token's write.
    let db = &server.services().db;
    let expired = "pxo_expired_token_of_alice";
    let expired_hash = plexus::users::token::hash(expired);
    let expired_at = plexus::storage::now_ms() - 1_000;
    db.insert_openid_token(expired_hash.clone(), alice.user_id.clone().try_into().unwrap(), expired_at).await.unwrap();
    assert_error(&userinfo(port, expired).await, 401, "M_UNKNOWN_TOKEN");
    let (status, _) = server.post(&request_token_path(&alice.user_id), token, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(db.find_openid_token(expired_hash, expired_at - 1).await.unwrap(), None, "the expired row is gone");
    assert_eq!(userinfo(port, &openid_token).await, (200, json!({"sub": alice.user_id})), "valid ones stay");

    // A deactivated account's tokens resolve no more.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/deactivate",
            token,
            json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&userinfo(port, &openid_token).await, 401, "M_UNKNOWN_TOKEN");
}
