//! Calls against real servers: OpenID tokens resolved by the federation
//! listener's `/openid/userinfo`.

mod common;

use std::path::PathBuf;

use common::{PASSWORD, TestServer, assert_error, free_port, make_test_certs};
use serde_json::{Value, json};

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
