//! The `plexus` binary: first start, offline user creation, config errors.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

const PLEXUS: &str = env!("CARGO_BIN_EXE_plexus");

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("plexus.toml");
    let text = format!(
        "[server]\nserver_name = \"cli.test\"\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"{}\"\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Kills the child process when dropped, so a failed test leaves none.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `plexus --config FILE` and reads its log until it is listening;
/// returns the process, the base URL and every log line seen so far.
fn start_binary(config: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = Child(
        Command::new(PLEXUS)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("plexus starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs that it listens");
        let bound = line.split("bound=").nth(1).map(|rest| rest.split_whitespace().next().unwrap().to_owned());
        lines.push(line);
        if let Some(addr) = bound {
            return (child, format!("http://{}", strip_ansi(&addr)), lines);
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_in_token_mode_prints_a_working_registration_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[registration]\nmode = \"token\"\n[rate_limits]\nenabled = false\n");
    let (child, base, lines) = start_binary(&config);
    let token = lines
        .iter()
        .find_map(|l| l.split("registration_token=").nth(1))
        .map(|rest| strip_ansi(rest.split_whitespace().next().unwrap()))
        .expect("the first start logs a registration token");
    let http = reqwest::Client::new();
    let register = |auth: serde_json::Value| {
        http.post(format!("{base}/_matrix/client/v3/register"))
            .json(&json!({"username": "first", "password": common::PASSWORD, "auth": auth}))
            .send()
    };
    let first: serde_json::Value = register(json!(null)).await.unwrap().json().await.unwrap();
    let resp = register(json!({"type": "m.login.registration_token", "token": token, "session": first["session"]}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["user_id"], "@first:cli.test");
    drop(child);

    // The token is announced only once.
    let (_child, _, lines) = start_binary(&config);
    assert!(!lines.iter().any(|l| l.contains("registration_token=")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_add_creates_an_account_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[registration]\nmode = \"closed\"\n[rate_limits]\nenabled = false\n");
    let out = Command::new(PLEXUS)
        .args(["user", "add", "root", "--password", "an admin password", "--admin", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("@root:cli.test"));
    let again = Command::new(PLEXUS).args(["user", "add", "root", "--config"]).arg(&config).output().unwrap();
    assert!(!again.status.success(), "a taken name is refused");

    let (_child, base, _) = start_binary(&config);
    let resp = reqwest::Client::new()
        .post(format!("{base}/_matrix/client/v3/login"))
        .json(&json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"}, "password": "an admin password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn bad_config_fails_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("[registration]\nmoed = \"open\"\n", "moed"),
        ("[registration]\nmode = \"sometimes\"\n", "mode"),
        ("[storage]\nreaders = 0\n", "storage.readers"),
        ("[logging]\nlevel = \"[[[\"\n", "logging.level"),
        ("[appservice]\nregistration_files = [\"/nonexistent/bridge.yaml\"]\n", "/nonexistent/bridge.yaml"),
    ] {
        let config = write_config(dir.path(), extra);
        let out = Command::new(PLEXUS).arg("check-config").arg("--config").arg(&config).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let config = write_config(dir.path(), "");
    let out = Command::new(PLEXUS).arg("check-config").arg("--config").arg(&config).output().unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn self_signed_pair_serves_federation() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls = dir.path().join("tls");
    let extra = format!(
        "[federation]\nenabled = true\nlisten = [\"127.0.0.1:{port}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        tls.join("federation.crt").display(),
        tls.join("federation.key").display()
    );
    let config = write_config(dir.path(), &extra);
    let out = Command::new(PLEXUS)
        .args(["tls", "self-signed", "--out"])
        .arg(&tls)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = std::fs::read_to_string(tls.join("federation.crt")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls.join("federation.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (_child, _, _) = start_binary(&config);
    // The certificate is for `cli.test`; trust it as the only root and
    // resolve that name to the listener.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("cli.test", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let mut keys = serde_json::Value::Null;
    for _ in 0..50 {
        if let Ok(resp) = http.get(format!("https://cli.test:{port}/_matrix/key/v2/server")).send().await {
            keys = resp.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys["server_name"], "cli.test", "{keys}");
    assert!(keys["verify_keys"].as_object().is_some_and(|k| !k.is_empty()));
}
