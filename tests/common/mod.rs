//! Test harness: `TestServer` starts a real Plexus server on an ephemeral
//! loopback port with its own temporary data dir, and helpers talk to it as
//! a client would (plain HTTP with reqwest, or matrix-sdk).

#![allow(dead_code)]

use std::time::Duration;

use plexus::{
    Server,
    config::{Config, RegistrationMode},
};
use serde_json::{Value, json};

/// A running server and everything needed to restart it on the same data.
pub struct TestServer {
    server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub base_url: String,
    pub http: reqwest::Client,
}

/// A registered user with a logged-in device.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    pub password: String,
}

pub const PASSWORD: &str = "correct horse battery";

impl TestServer {
    /// Open registration, rate limits off.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults, then `adjust` applied.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::try_start_with(adjust).await.expect("server starts")
    }

    /// Like `start_with`, returning the error when the server cannot start
    /// (a port chosen in advance may have been taken meanwhile).
    pub async fn try_start_with(adjust: impl FnOnce(&mut Config)) -> Result<Self, plexus::StartError> {
        // Server logs for a failing test: PLEXUS_TEST_LOG=debug cargo test ...
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("PLEXUS_TEST_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.server.server_name = "plexus.test".try_into().expect("valid server name");
        config.server.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.server.data_dir = dir.path().to_owned();
        config.registration.mode = RegistrationMode::Open;
        config.rate_limits.enabled = false;
        config.logging.level = "warn".into();
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let server = Server::start(config.clone()).await?;
        let base_url = format!("http://{}", server.addrs[0]);
        Ok(Self { server: Some(server), dir, config, base_url, http: reqwest::Client::new() })
    }

    /// Stops the server and starts it again on the same data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Stops the server (its data stays).
    pub async fn stop(&mut self) {
        self.server.take().expect("running").shutdown().await;
    }

    /// Starts a stopped server again on the same data dir and config.
    pub async fn start_again(&mut self) {
        let server = Server::start(self.config.clone()).await.expect("server restarts");
        self.base_url = format!("http://{}", server.addrs[0]);
        self.server = Some(server);
    }

    pub fn services(&self) -> &plexus::AppState {
        &self.server.as_ref().expect("running").services
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends a request and returns the status and JSON body (Null if none).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        json_request(&self.http, method, &self.url(path), token, body).await
    }

    /// A matrix-sdk client logged in as `name` (registered with `PASSWORD`).
    pub async fn sdk_logged_in(&self, name: &str) -> matrix_sdk::Client {
        let client = self.sdk_client().await;
        client.matrix_auth().login_username(name, PASSWORD).await.expect("login");
        client
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, token, Some(body)).await
    }

    /// Registers `name` through the UIA flow of an open server.
    pub async fn register(&self, name: &str) -> TestUser {
        self.register_with(name, json!({"type": "m.login.dummy"})).await.expect("registration succeeds")
    }

    /// Registers `name`, answering the UIA flow's stage with `auth`
    /// (the session is filled in). Returns the final error body on failure.
    pub async fn register_with(&self, name: &str, mut auth: Value) -> Result<TestUser, (u16, Value)> {
        let body = json!({"username": name, "password": PASSWORD});
        let (status, uia) = self.post("/_matrix/client/v3/register", None, body.clone()).await;
        if status != 401 {
            return Err((status, uia));
        }
        auth["session"] = uia["session"].clone();
        let mut body = body;
        body["auth"] = auth;
        let (status, resp) = self.post("/_matrix/client/v3/register", None, body).await;
        if status != 200 {
            return Err((status, resp));
        }
        Ok(TestUser {
            user_id: resp["user_id"].as_str().expect("user_id").to_owned(),
            device_id: resp["device_id"].as_str().expect("device_id").to_owned(),
            access_token: resp["access_token"].as_str().expect("access_token").to_owned(),
            password: PASSWORD.to_owned(),
        })
    }

    /// Logs in with a password and returns the new device's tokens.
    pub async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
        )
        .await
    }

    /// A matrix-sdk client pointed at this server, with in-memory stores.
    pub async fn sdk_client(&self) -> matrix_sdk::Client {
        matrix_sdk::Client::builder()
            .homeserver_url(&self.base_url)
            .request_config(matrix_sdk::config::RequestConfig::new().timeout(Duration::from_secs(30)).disable_retry())
            .build()
            .await
            .expect("matrix-sdk client builds")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Stop the writer thread cleanly even when a test panics.
            server.services.db.close();
        }
    }
}

/// Sends a JSON request to any server; returns the status and JSON body
/// (Null if none, the text as a string if it is not JSON).
pub async fn json_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request is sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body is read");
    let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, json)
}

/// Polls `check` every 50 ms until it holds, for at most a minute.
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port (for listeners whose port must be known first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A test CA and a certificate for `localhost` signed by it, as PEM files
/// in `dir`: `(ca, cert, key)`. Servers named `localhost:PORT` share it.
pub fn make_test_certs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Plexus test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("fed.crt"), dir.join("fed.key"));
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca, cert, key)
}

/// Asserts a Matrix error: status and errcode.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, errcode: &str) {
    assert_eq!(got.0, status, "status of {:?}", got.1);
    assert_eq!(got.1["errcode"], errcode, "errcode of {:?}", got.1);
    assert!(got.1["error"].is_string(), "error message present in {:?}", got.1);
}

/// Room helpers over plain HTTP, so tests read like client stories.
impl TestServer {
    /// `POST /createRoom`; panics unless it succeeds.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, resp) = self.post("/_matrix/client/v3/createRoom", Some(token), body).await;
        assert_eq!(status, 200, "createRoom failed: {resp}");
        resp["room_id"].as_str().expect("room_id").to_owned()
    }

    /// Sends an `m.text` message; returns status and body.
    pub async fn send_text(&self, token: &str, room: &str, text: &str) -> (u16, Value) {
        let txn = format!("t{}", rand_suffix());
        self.put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
            Some(token),
            json!({"msgtype": "m.text", "body": text}),
        )
        .await
    }

    /// Joins by room id or alias; returns status and body.
    pub async fn join(&self, token: &str, room: &str) -> (u16, Value) {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room)), Some(token), json!({})).await
    }

    pub async fn room_post(&self, token: &str, room: &str, action: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/_matrix/client/v3/rooms/{}/{action}", enc(room)), Some(token), body).await
    }

    pub async fn get_state(&self, token: &str, room: &str, kind: &str, key: &str) -> (u16, Value) {
        self.get(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/{}", enc(room), enc(key)), Some(token)).await
    }

    pub async fn put_state(&self, token: &str, room: &str, kind: &str, key: &str, content: Value) -> (u16, Value) {
        self.put(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/{}", enc(room), enc(key)), Some(token), content)
            .await
    }

    /// `/messages` with the given query string (`dir=b&limit=10...`).
    pub async fn messages(&self, token: &str, room: &str, query: &str) -> (u16, Value) {
        self.get(&format!("/_matrix/client/v3/rooms/{}/messages?{query}", enc(room)), Some(token)).await
    }
}

/// Percent-encodes a path segment (room ids, aliases, state keys).
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Bodies of the `m.room.message` events of a matrix-sdk `/messages` page
/// (newest first, as the server returns them), reordered oldest first.
/// Encrypted events that the client decrypted count too.
pub fn page_bodies(page: &matrix_sdk::room::Messages) -> Vec<String> {
    use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent};
    let mut out: Vec<String> = page
        .chunk
        .iter()
        .filter_map(|e| match e.raw().deserialize().ok()? {
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(m)) => {
                Some(m.as_original()?.content.body().to_owned())
            }
            _ => None,
        })
        .collect();
    out.reverse();
    out
}
