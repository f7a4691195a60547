//! A minimal Matrix client over reqwest: registration through the standard
//! user-interactive flow, rooms, sends, and a sync loop (long-poll or the
//! Plexus WebSocket extension) that reports when each event arrives.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Cli, Transport};

static TXN: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct User {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

/// A unique prefix so that repeated runs against one server do not collide.
pub fn run_prefix() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("lg{}", now % 100_000_000)
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(2048).build().expect("an HTTP client")
}

/// Registers `name` with the standard UIA flow (dummy or registration token).
pub async fn register(cli: &Cli, http: &reqwest::Client, name: &str) -> anyhow::Result<User> {
    let url = format!("{}/_matrix/client/v3/register", cli.base_url);
    let body = json!({"username": name, "password": "load generator password", "inhibit_login": false});
    let first: Value = http.post(&url).json(&body).send().await?.json().await?;
    let session = first["session"].as_str().unwrap_or_default().to_owned();
    let flows = first["flows"].to_string();
    let auth = if flows.contains("m.login.registration_token") {
        let token =
            cli.registration_token.clone().context("the server wants a registration token (--registration-token)")?;
        json!({"type": "m.login.registration_token", "token": token, "session": session})
    } else {
        json!({"type": "m.login.dummy", "session": session})
    };
    let mut body = body;
    body["auth"] = auth;
    let resp: Value = http.post(&url).json(&body).send().await?.json().await?;
    // Some servers need a second stage (dummy after the token).
    let resp = if resp.get("access_token").is_none() && resp["flows"].is_array() {
        body["auth"] = json!({"type": "m.login.dummy", "session": session});
        http.post(&url).json(&body).send().await?.json().await?
    } else {
        resp
    };
    let token = resp["access_token"].as_str().with_context(|| format!("registration of {name} failed: {resp}"))?;
    Ok(User { http: http.clone(), base: cli.base_url.clone(), token: token.to_owned() })
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl User {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {value}");
        }
        Ok(value)
    }

    pub async fn create_room(&self, public: bool) -> anyhow::Result<String> {
        let body = if public { json!({"preset": "public_chat"}) } else { json!({}) };
        let resp = self.call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await?;
        Ok(resp["room_id"].as_str().context("room_id")?.to_owned())
    }

    pub async fn join(&self, room: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(room)), Some(json!({}))).await?;
        Ok(())
    }

    /// Sends a text message; returns its event id.
    pub async fn send(&self, room: &str, body: &str) -> anyhow::Result<String> {
        let txn = format!("lg{}", TXN.fetch_add(1, Ordering::Relaxed));
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room));
        let resp = self.call(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": body}))).await?;
        Ok(resp["event_id"].as_str().context("event_id")?.to_owned())
    }

    /// Sends an event of any type; returns its event id.
    pub async fn send_event(&self, room: &str, event_type: &str, content: Value) -> anyhow::Result<String> {
        let txn = format!("lg{}", TXN.fetch_add(1, Ordering::Relaxed));
        let path = format!("/_matrix/client/v3/rooms/{}/send/{}/{txn}", enc(room), enc(event_type));
        let resp = self.call(reqwest::Method::PUT, &path, Some(content)).await?;
        Ok(resp["event_id"].as_str().context("event_id")?.to_owned())
    }

    /// `POST /search` over room events; `order_by` is `rank` or `recent`.
    pub async fn search(&self, term: &str, order_by: &str, next_batch: Option<&str>) -> anyhow::Result<Value> {
        let mut path = "/_matrix/client/v3/search".to_owned();
        if let Some(b) = next_batch {
            path.push_str(&format!("?next_batch={}", enc(b)));
        }
        let body = json!({"search_categories": {"room_events": {"search_term": term, "order_by": order_by}}});
        self.call(reqwest::Method::POST, &path, Some(body)).await
    }

    /// `GET /relations/{event_id}[/{rel_type}]`, one page.
    pub async fn relations(
        &self,
        room: &str,
        event_id: &str,
        rel_type: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(room), enc(event_id));
        if let Some(r) = rel_type {
            path.push_str(&format!("/{}", enc(r)));
        }
        path.push_str(&format!("?limit={limit}"));
        if let Some(f) = from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `GET /rooms/{room}/event/{event_id}`.
    pub async fn event(&self, room: &str, event_id: &str) -> anyhow::Result<Value> {
        let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(event_id));
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// One `/sync` call.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64, filter: Option<&str>) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        if let Some(f) = filter {
            path.push_str(&format!("&filter={}", enc(f)));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    pub async fn messages(&self, room: &str, from: Option<&str>, limit: usize) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}", enc(room));
        if let Some(f) = from {
            path.push_str(&format!("&from={f}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// Runs a sync loop from now on, reporting `(event_id, arrival)` of
    /// every timeline event until `deadline`.
    pub async fn watch(
        &self,
        transport: Transport,
        deadline: Instant,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<(String, Instant)>> {
        // As clients do, members are loaded lazily: the first sync of a member
        // of a large room is not a copy of its member list.
        let first =
            self.sync(None, 0, Some(r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}"#)).await?;
        let since = first["next_batch"].as_str().context("next_batch")?.to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        let me = self.clone();
        match transport {
            Transport::Longpoll => {
                tokio::spawn(async move {
                    let mut since = since;
                    while Instant::now() < deadline && !tx.is_closed() {
                        let Ok(resp) = me.sync(Some(&since), 30_000, None).await else { break };
                        let now = Instant::now();
                        report(&resp, now, &tx);
                        if let Some(next) = resp["next_batch"].as_str() {
                            since = next.to_owned();
                        }
                    }
                });
            }
            Transport::Ws => {
                let url = format!(
                    "{}/_matrix/client/unstable/io.plexus.websocket/sync?since={since}&access_token={}",
                    me.base.replace("http", "ws"),
                    me.token
                );
                let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
                tokio::spawn(async move {
                    while Instant::now() < deadline && !tx.is_closed() {
                        let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), socket.next()).await
                        else {
                            break;
                        };
                        let now = Instant::now();
                        if let tokio_tungstenite::tungstenite::Message::Text(text) = message
                            && let Ok(value) = serde_json::from_str::<Value>(&text)
                        {
                            report(&value, now, &tx);
                        }
                    }
                });
            }
        }
        Ok(rx)
    }
}

/// Element X's room list request (matrix-sdk-ui's `RoomListService`):
/// one list over `range`, timeline limit 1, its required state.
pub fn room_list_request(range: (u64, u64)) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": {"all_rooms": {
            "ranges": [[range.0, range.1]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""], ["org.matrix.msc3401.call.member", "*"],
                ["m.room.join_rules", ""], ["m.room.tombstone", ""], ["m.room.create", ""],
                ["m.room.history_visibility", ""], ["io.element.functional_members", ""],
                ["m.space.parent", "*"], ["m.space.child", "*"],
            ],
        }},
        "extensions": {"account_data": {"enabled": true}, "receipts": {"enabled": true}, "typing": {"enabled": true}},
    })
}

impl User {
    /// One simplified sliding sync (MSC4186) request.
    pub async fn sliding_sync(&self, pos: Option<&str>, timeout_ms: u64, body: &Value) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout={timeout_ms}");
        if let Some(pos) = pos {
            path.push_str(&format!("&pos={}", enc(pos)));
        }
        self.call(reqwest::Method::POST, &path, Some(body.clone())).await
    }

    /// Runs a sliding sync loop (Element X's room list over the 20 most
    /// active rooms) from now on, reporting `(event_id, arrival)` of every
    /// timeline event until `deadline`.
    pub async fn watch_sliding(&self, deadline: Instant) -> anyhow::Result<mpsc::UnboundedReceiver<(String, Instant)>> {
        let body = room_list_request((0, 19));
        let first = self.sliding_sync(None, 0, &body).await?;
        let mut pos = first["pos"].as_str().context("pos")?.to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        let me = self.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline && !tx.is_closed() {
                let Ok(resp) = me.sliding_sync(Some(&pos), 30_000, &body).await else { break };
                let now = Instant::now();
                for room in resp["rooms"].as_object().into_iter().flat_map(|r| r.values()) {
                    for event in room["timeline"].as_array().into_iter().flatten() {
                        if let Some(id) = event["event_id"].as_str() {
                            let _ = tx.send((id.to_owned(), now));
                        }
                    }
                }
                if let Some(next) = resp["pos"].as_str() {
                    pos = next.to_owned();
                }
            }
        });
        Ok(rx)
    }
}

fn report(sync: &Value, at: Instant, tx: &mpsc::UnboundedSender<(String, Instant)>) {
    if let Some(rooms) = sync["rooms"]["join"].as_object() {
        for room in rooms.values() {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if let Some(id) = event["event_id"].as_str() {
                    let _ = tx.send((id.to_owned(), at));
                }
            }
        }
    }
}

/// Reads a process's memory figures (kB) from /proc: `(VmRSS, VmHWM)`.
pub fn process_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
