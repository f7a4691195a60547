//! The push transports of sync: the WebSocket extension and Server-Sent
//! Events (docs/websocket.md), driven by a WebSocket client library and a
//! streaming HTTP client.

mod common;

use std::time::Duration;

use common::{TestServer, TestUser};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

/// A client connection that keeps frames read out of turn, so waiting for a
/// reply never loses a sync frame and vice versa.
struct Socket {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    syncs: std::collections::VecDeque<Value>,
    replies: Vec<Value>,
}

impl Socket {
    async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    }
}

const WS_PATH: &str = "/_matrix/client/unstable/io.plexus.websocket/sync";
const SSE_PATH: &str = "/_matrix/client/unstable/org.matrix.msc2108/sync/sse";

async fn connect(server: &TestServer, user: &TestUser, query: &str) -> (Socket, Option<String>) {
    let url = format!("{}{WS_PATH}?{query}", server.base_url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", user.access_token).parse().unwrap());
    request.headers_mut().insert("sec-websocket-protocol", "m.json".parse().unwrap());
    let (ws, response) = connect_async(request).await.expect("websocket connects");
    let protocol = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    (Socket { ws, syncs: Default::default(), replies: vec![] }, protocol)
}

/// The next JSON text frame (bounded wait).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.ws.next())
            .await
            .expect("a frame arrives")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next sync frame; replies read meanwhile are kept.
async fn next_sync(socket: &mut Socket) -> Value {
    loop {
        if let Some(frame) = socket.syncs.pop_front() {
            return frame;
        }
        let frame = next_json(socket).await;
        if frame.get("id").is_some() { socket.replies.push(frame) } else { socket.syncs.push_back(frame) }
    }
}

/// The reply whose `id` is `id`; sync frames read meanwhile are kept.
async fn reply(socket: &mut Socket, id: Value) -> Value {
    loop {
        if let Some(i) = socket.replies.iter().position(|r| r["id"] == id) {
            return socket.replies.remove(i);
        }
        let frame = next_json(socket).await;
        if frame.get("id").is_some() { socket.replies.push(frame) } else { socket.syncs.push_back(frame) }
    }
}

fn bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_pushes_sync_frames_answers_requests_and_resumes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id], "name": "Socket room"})).await;
    server.join(&bob.access_token, &room).await;

    let (mut socket, protocol) = connect(&server, &bob, "").await;
    assert_eq!(protocol.as_deref(), Some("m.json"), "the subprotocol is echoed");
    let first = next_sync(&mut socket).await;
    assert!(first["next_batch"].is_string());
    assert!(first["rooms"]["join"][&room]["timeline"]["events"].is_array(), "the first frame is an initial sync");

    // A message from alice arrives as its own frame.
    server.send_text(&alice.access_token, &room, "over the socket").await;
    let frame = next_sync(&mut socket).await;
    assert_eq!(bodies(&frame, &room), vec!["over the socket"]);

    // Bob sends over the socket; the id is the transaction id.
    let send = json!({"id": "req-1", "method": "send", "params": {
        "room_id": room, "event_type": "m.room.message", "content": {"msgtype": "m.text", "body": "from bob"}}});
    socket.send(send.clone()).await;
    let answered = reply(&mut socket, json!("req-1")).await;
    let event_id = answered["result"]["event_id"].as_str().expect("an event id").to_owned();
    socket.send(send).await;
    let again = reply(&mut socket, json!("req-1")).await;
    assert_eq!(again["result"]["event_id"], event_id.as_str(), "a resent request is idempotent");

    socket.send(json!({"id": 7, "method": "ping"})).await;
    assert_eq!(reply(&mut socket, json!(7)).await["result"], json!({}));
    socket.send(json!({"id": "x", "method": "fly"})).await;
    assert_eq!(reply(&mut socket, json!("x")).await["error"]["errcode"], "M_UNRECOGNIZED");
    socket.send(json!({"id": "y", "method": "send", "params": {"room_id": room}})).await;
    assert_eq!(reply(&mut socket, json!("y")).await["error"]["errcode"], "M_BAD_JSON");
    socket.ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(reply(&mut socket, Value::Null).await["error"]["errcode"], "M_NOT_JSON");
    let forbidden = json!({"id": "z", "method": "state", "params": {"room_id": room, "event_type": "m.room.power_levels", "content": {}}});
    socket.send(forbidden).await;
    assert_eq!(reply(&mut socket, json!("z")).await["error"]["errcode"], "M_FORBIDDEN");

    // Drain until bob's own message has been seen in a sync frame; keep its token.
    let mut last_batch;
    loop {
        let frame = next_sync(&mut socket).await;
        last_batch = frame["next_batch"].as_str().unwrap().to_owned();
        if bodies(&frame, &room).contains(&"from bob".to_owned()) {
            let own = frame["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event_id"] == event_id.as_str())
                .cloned()
                .unwrap();
            assert_eq!(own["unsigned"]["transaction_id"], "req-1");
            break;
        }
    }

    // Forced disconnect; messages sent meanwhile arrive on reconnect, once.
    drop(socket);
    server.send_text(&alice.access_token, &room, "while away 1").await;
    server.send_text(&alice.access_token, &room, "while away 2").await;
    let (mut socket, _) = connect(&server, &bob, &format!("since={last_batch}")).await;
    let resumed = next_sync(&mut socket).await;
    assert_eq!(bodies(&resumed, &room), vec!["while away 1", "while away 2"]);

    // A request frame much larger than the socket's 1 KiB read buffer.
    let long_body = "long ".repeat(4_000);
    let long = json!({"id": "req-long", "method": "send", "params": {
        "room_id": room, "event_type": "m.room.message", "content": {"msgtype": "m.text", "body": long_body}}});
    socket.send(long).await;
    let long_id = reply(&mut socket, json!("req-long")).await["result"]["event_id"]
        .as_str()
        .expect("the long message is accepted")
        .to_owned();
    let (status, stored) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{long_id}"), Some(&alice.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(stored["content"]["body"], long_body.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_frames_leave_out_ignored_users() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice.access_token, json!({"invite": [bob.user_id]})).await;
    server.join(&bob.access_token, &room).await;
    let (mut socket, _) = connect(&server, &bob, "").await;
    next_sync(&mut socket).await;

    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", common::enc(&bob.user_id));
    let list = json!({"ignored_users": {alice.user_id.clone(): {}}});
    assert_eq!(server.put(&path, Some(&bob.access_token), list).await.0, 200);
    server.send_text(&alice.access_token, &room, "from someone ignored").await;
    server.send_text(&bob.access_token, &room, "heard").await;

    // Frames until bob's own message: alice's never comes before it.
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.extend(bodies(&next_sync(&mut socket).await, &room));
        if seen.iter().any(|b| b == "heard") {
            break;
        }
    }
    assert_eq!(seen, ["heard"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_errors_before_the_upgrade_are_matrix_errors() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let url = server.url(WS_PATH);
    let upgrade = |req: reqwest::RequestBuilder| {
        req.header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let resp = upgrade(server.http.get(&url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_MISSING_TOKEN");
    let resp = upgrade(server.http.get(format!("{url}?access_token=nope"))).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_UNKNOWN_TOKEN");
    let resp =
        upgrade(server.http.get(format!("{url}?since=bogus")).bearer_auth(&bob.access_token)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_INVALID_PARAM");
    // The token in the query string works for browsers.
    let url = format!("{}{WS_PATH}?access_token={}", server.base_url.replace("http://", "ws://"), bob.access_token);
    let (ws, _) = connect_async(url).await.expect("query token accepted");
    let mut socket = Socket { ws, syncs: Default::default(), replies: vec![] };
    assert!(next_sync(&mut socket).await["next_batch"].is_string());
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["io.plexus.websocket"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frames_close_the_socket() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let (mut socket, _) = connect(&server, &bob, "").await;
    next_sync(&mut socket).await;
    let big = json!({"id": "big", "method": "ping", "params": {"pad": "x".repeat(100_000)}});
    let _ = socket.ws.send(Message::Text(big.to_string().into())).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), socket.ws.next()).await.expect("the server reacts") {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(closed, Some(CloseCode::Size), "closed with 1009 (message too big)");
}

/// Reads SSE events (`id`, `data`) from a streaming response until `n` arrive.
async fn read_events(resp: &mut reqwest::Response, buffer: &mut String, n: usize) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while events.len() < n {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
        if events.len() >= n {
            break;
        }
        let chunk =
            tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.expect("an event arrives").unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("the stream is open")));
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_resume_with_last_event_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice.access_token, json!({})).await;

    let mut resp = server.http.get(server.url(SSE_PATH)).bearer_auth(&alice.access_token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut buffer = String::new();
    let first = read_events(&mut resp, &mut buffer, 1).await;
    assert_eq!(first[0].0, first[0].1["next_batch"].as_str().unwrap(), "the event id is the next_batch");

    server.send_text(&alice.access_token, &room, "streamed").await;
    let second = read_events(&mut resp, &mut buffer, 1).await;
    assert_eq!(bodies(&second[0].1, &room), vec!["streamed"]);
    let last_id = second[0].0.clone();
    drop(resp);

    server.send_text(&alice.access_token, &room, "missed 1").await;
    server.send_text(&alice.access_token, &room, "missed 2").await;
    let mut resp = server
        .http
        .get(server.url(SSE_PATH))
        .bearer_auth(&alice.access_token)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let resumed = read_events(&mut resp, &mut buffer, 1).await;
    assert_eq!(bodies(&resumed[0].1, &room), vec!["missed 1", "missed 2"], "no gap, no repeat");

    let unauthenticated = server.get(SSE_PATH, None).await;
    assert_eq!(unauthenticated.0, 401);
}
