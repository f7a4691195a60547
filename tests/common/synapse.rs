//! A real Synapse homeserver for interop tests: `Synapse::start` generates a
//! config with Synapse's own `--generate-config`, edits it for loopback
//! federation over TLS (SQLite, open registration, rate limits raised, no
//! trusted key servers, loopback allowed), starts it as a child process and
//! waits until its client API answers. Dropping it kills that process (by
//! its PID, through `Child::kill`); if the test is panicking, the tail of
//! Synapse's log is printed first.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Edits the generated `homeserver.yaml`. Arguments: config dir, federation
/// port, client port, cert, key, CA file.
const EDIT_CONFIG: &str = r#"
import sys, yaml
d, fed, client, cert, key, ca = sys.argv[1:7]
path = f"{d}/homeserver.yaml"
c = yaml.safe_load(open(path))
c["listeners"] = [
    {"port": int(fed), "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
     "x_forwarded": False, "resources": [{"names": ["federation"], "compress": False}]},
    {"port": int(client), "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
     "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]},
]
c["tls_certificate_path"] = cert
c["tls_private_key_path"] = key
# Plexus's certificate is signed by the test CA: verify it against that CA.
c["federation_verify_certificates"] = True
c["federation_custom_ca_list"] = [ca]
c["database"] = {"name": "sqlite3", "args": {"database": f"{d}/homeserver.db"}}
c["enable_registration"] = True
c["enable_registration_without_verification"] = True
c["bcrypt_rounds"] = 4
c["report_stats"] = False
c["suppress_key_server_warning"] = True
c["trusted_key_servers"] = []
# Outbound federation to 127.0.0.1 / ::1 is refused by default.
c["ip_range_whitelist"] = ["127.0.0.0/8", "::1/128"]
c["federation_ip_range_blacklist"] = []
c["presence"] = {"enabled": False}
fast = {"per_second": 100000, "burst_count": 1000000}
for k in ["rc_message", "rc_registration", "rc_room_creation", "rc_presence",
          "rc_delayed_event_mgmt", "rc_joins_per_room", "rc_admin_redaction"]:
    c[k] = dict(fast)
c["rc_login"] = {"address": dict(fast), "account": dict(fast), "failed_attempts": dict(fast)}
c["rc_joins"] = {"local": dict(fast), "remote": dict(fast)}
c["rc_invites"] = {"per_room": dict(fast), "per_user": dict(fast), "per_issuer": dict(fast)}
c["rc_federation"] = {"window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1,
                      "reject_limit": 1000, "concurrent": 100}
# Log to stderr (captured in a file by the test harness).
c["log_config"] = None
yaml.safe_dump(c, open(path, "w"))
"#;

pub const PASSWORD: &str = "correct horse battery";

pub struct Synapse {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `localhost:<federation port>`.
    pub server_name: String,
    /// `http://127.0.0.1:<client port>`.
    pub client_url: String,
    pub http: reqwest::Client,
    log: PathBuf,
}

/// A user registered on Synapse.
#[derive(Debug, Clone)]
pub struct SynapseUser {
    pub user_id: String,
    pub access_token: String,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Synapse {
    /// Starts Synapse named `localhost:{fed_port}`, federation over TLS on
    /// `fed_port` with `cert`/`key`, trusting `ca`; client API over plain
    /// HTTP on `client_port`.
    pub async fn start(python: &str, fed_port: u16, client_port: u16, cert: &Path, key: &Path, ca: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server_name = format!("localhost:{fed_port}");
        let config = dir.path().join("homeserver.yaml");
        run(
            Command::new(python)
                .current_dir(dir.path())
                .args(["-m", "synapse.app.homeserver", "--server-name", &server_name, "--config-path"])
                .arg(&config)
                .args(["--generate-config", "--report-stats=no"]),
            "synapse --generate-config",
        );
        run(
            Command::new(python)
                .args(["-c", EDIT_CONFIG])
                .arg(dir.path())
                .arg(fed_port.to_string())
                .arg(client_port.to_string())
                .args([cert, key, ca]),
            "editing homeserver.yaml",
        );
        let log = dir.path().join("synapse.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(python)
            .current_dir(dir.path())
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("synapse starts");
        let mut synapse = Self {
            child,
            dir,
            server_name,
            client_url: format!("http://127.0.0.1:{client_port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client"),
            log,
        };
        synapse.wait_up().await;
        synapse
    }

    async fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let url = format!("{}/_matrix/client/versions", self.client_url);
        loop {
            if let Some(status) = self.child.try_wait().expect("synapse status") {
                panic!("synapse exited with {status} before answering:\n{}", self.log_tail(80));
            }
            if let Ok(resp) = self.http.get(&url).send().await
                && resp.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "synapse did not start in time:\n{}", self.log_tail(80));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `n` lines of Synapse's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.client_url, path)
    }

    /// Sends a client-server request; returns status and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        crate::common::json_request(&self.http, method, &self.url(path), token, body).await
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

    /// Registers `name` through the dummy UIA flow.
    pub async fn register(&self, name: &str) -> SynapseUser {
        let body = json!({"username": name, "password": PASSWORD, "inhibit_login": false});
        let (status, uia) = self.post("/_matrix/client/v3/register", None, body.clone()).await;
        assert_eq!(status, 401, "synapse register, first stage: {uia}");
        let mut body = body;
        body["auth"] = json!({"type": "m.login.dummy", "session": uia["session"]});
        let (status, resp) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, 200, "synapse register: {resp}");
        SynapseUser {
            user_id: resp["user_id"].as_str().expect("user_id").to_owned(),
            access_token: resp["access_token"].as_str().expect("access_token").to_owned(),
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- synapse log (tail) ----\n{}\n---- end of synapse log ----", self.log_tail(150));
        }
        // Only the process this harness started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
