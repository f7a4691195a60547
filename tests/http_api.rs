//! The HTTP edge with plain HTTP: discovery endpoints, and every error a
//! bad request earns (status and errcode), with nothing changed by it.

mod common;

use common::{PASSWORD, TestServer, assert_error};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn discovery_endpoints_describe_the_server() {
    let server = TestServer::start().await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, 200);
    let list: Vec<&str> = versions["versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(list.contains(&"v1.11"), "{list:?}");
    let (_, client) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(client["m.homeserver"]["base_url"], "http://plexus.test");
    let (_, fed) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!(fed["m.server"], "plexus.test");

    let alice = server.register("alice").await;
    let (status, caps) = server.get("/_matrix/client/v3/capabilities", Some(&alice.access_token)).await;
    assert_eq!(status, 200);
    // Absent means enabled (spec: "Capabilities negotiation").
    assert_ne!(caps["capabilities"]["m.change_password"]["enabled"], false);
    assert!(caps["capabilities"]["m.room_versions"]["default"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_third_party_protocols_are_bridged() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let (status, protocols) = server.get("/_matrix/client/v3/thirdparty/protocols", token).await;
    assert_eq!((status, protocols), (200, json!({})));
    assert_error(&server.get("/_matrix/client/v3/thirdparty/protocol/irc", token).await, 404, "M_NOT_FOUND");
    assert_error(&server.get("/_matrix/client/v3/thirdparty/protocols", None).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_and_methods_are_unrecognized() {
    let server = TestServer::start().await;
    assert_error(&server.get("/_matrix/client/v3/no/such/endpoint", None).await, 404, "M_UNRECOGNIZED");
    assert_error(&server.get("/", None).await, 404, "M_UNRECOGNIZED");
    let wrong_method = server.request(reqwest::Method::DELETE, "/_matrix/client/v3/login", None, None).await;
    assert_error(&wrong_method, 405, "M_UNRECOGNIZED");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let send = |body: &'static str| {
        server
            .http
            .post(server.url("/_matrix/client/v3/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{not json", "{\"username\": \"x\",}", "\u{0}"] {
        let resp = send(body).await.unwrap();
        let status = resp.status().as_u16();
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_error(&(status, json), 400, "M_NOT_JSON");
    }
    // Valid JSON of the wrong shape.
    for body in [r#"{"username": 42}"#, r#"["a list"]"#, r#"{"inhibit_login": "yes"}"#] {
        let resp = send(body).await.unwrap();
        let status = resp.status().as_u16();
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_error(&(status, json), 400, "M_BAD_JSON");
    }
    let (status, _) = server.get("/_matrix/client/v3/register/available?username=x", None).await;
    assert_eq!(status, 200, "no account was created by the bad requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_too_large() {
    let server = TestServer::start_with(|c| c.server.max_request_bytes = 65_536).await;
    let alice = server.register("alice").await;
    let big = "x".repeat(70_000);
    let got = server
        .put(
            "/_matrix/client/v3/profile/@alice:plexus.test/displayname",
            Some(&alice.access_token),
            json!({"displayname": big}),
        )
        .await;
    assert_error(&got, 413, "M_TOO_LARGE");
    // Also without a Content-Length header (chunked upload).
    let stream = futures_stream(vec![bytes::Bytes::from(format!("{{\"displayname\": \"{big}\"}}"))]);
    let resp = server
        .http
        .put(server.url("/_matrix/client/v3/profile/@alice:plexus.test/displayname"))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_error(&(status, resp.json().await.unwrap()), 413, "M_TOO_LARGE");
    let (_, name) = server.get("/_matrix/client/v3/profile/@alice:plexus.test/displayname", None).await;
    assert_eq!(name["displayname"], "alice", "unchanged");
}

fn futures_stream(chunks: Vec<bytes::Bytes>) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_missing_bad_or_in_the_query_string() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_error(&server.get("/_matrix/client/v3/account/whoami", None).await, 401, "M_MISSING_TOKEN");
    let bad = server.get("/_matrix/client/v3/account/whoami", Some("px_not_a_real_token")).await;
    assert_error(&bad, 401, "M_UNKNOWN_TOKEN");
    assert_ne!(bad.1["soft_logout"], true, "an unknown token is a hard logout");
    let resp = server
        .http
        .get(server.url("/_matrix/client/v3/account/whoami"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let (status, me) =
        server.get(&format!("/_matrix/client/v3/account/whoami?access_token={}", alice.access_token), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["user_id"], "@alice:plexus.test");
    assert_eq!(me["device_id"], alice.device_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_met_liberally_trailing_slash_empty_body_and_r0_paths() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, me) = server.get("/_matrix/client/v3/account/whoami/", Some(&alice.access_token)).await;
    assert_eq!((status, me["user_id"].as_str()), (200, Some("@alice:plexus.test")));
    let (status, _) = server.get("/_matrix/client/r0/account/whoami", Some(&alice.access_token)).await;
    assert_eq!(status, 200);
    // An empty body where every field is optional.
    let resp = server
        .http
        .post(server.url("/_matrix/client/v3/logout"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&alice.access_token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_allows_web_clients() {
    let server = TestServer::start().await;
    let resp = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/_matrix/client/v3/login"))
        .header("origin", "https://app.element.io")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let methods = resp.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("POST") && methods.contains("PUT"), "{methods}");
    let headers = resp.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let resp = server
        .http
        .get(server.url("/_matrix/client/versions"))
        .header("origin", "https://x.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn usernames_follow_the_user_id_grammar() {
    let server = TestServer::start().await;
    for name in ["Alice Smith", "al:ice", "émile", "", "a".repeat(260).as_str()] {
        let path = format!("/_matrix/client/v3/register/available?username={}", urlencode(name));
        assert_error(&server.get(&path, None).await, 400, "M_INVALID_USERNAME");
    }
    let bad = server.register_with("bad name", json!({"type": "m.login.dummy"})).await.unwrap_err();
    assert_error(&bad, 400, "M_INVALID_USERNAME");
    // Upper case is folded to lower case, as Synapse does.
    let user = server.register("Zed").await;
    assert_eq!(user.user_id, "@zed:plexus.test");
    let taken = server.register_with("zed", json!({"type": "m.login.dummy"})).await.unwrap_err();
    assert_error(&taken, 400, "M_USER_IN_USE");
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=free.name_1", None).await;
    assert_eq!((status, body), (200, json!({"available": true})));
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_and_registration_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.enabled = true;
        c.rate_limits.login = plexus::config::RateLimit { per_second: 0.01, burst: 2 };
        c.rate_limits.registration = plexus::config::RateLimit { per_second: 0.01, burst: 2 };
    })
    .await;
    server.register("alice").await; // two registration requests: the burst
    let limited =
        server.post("/_matrix/client/v3/register", None, json!({"username": "bob", "password": PASSWORD})).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);

    assert_eq!(server.login("alice", PASSWORD).await.0, 200);
    assert_eq!(server.login("alice", "wrong").await.0, 403);
    let limited = server.login("alice", PASSWORD).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
}
