//! Accounts, login sessions, devices and profiles, driven the way clients
//! drive them: matrix-sdk for the main story, plain HTTP for the details.

mod common;

use common::{PASSWORD, TestServer, assert_error};
use matrix_sdk::ruma::{
    api::client::{account::register, uiaa},
    assign,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn sdk_register_login_whoami_logout() {
    let server = TestServer::start().await;

    // Registration: the first attempt answers with the UIA flows.
    let client = server.sdk_client().await;
    let request = assign!(register::v3::Request::new(), {
        username: Some("alice".to_owned()),
        password: Some(PASSWORD.to_owned()),
    });
    let err = client.matrix_auth().register(request.clone()).await.expect_err("UIA is needed first");
    let info = err.as_uiaa_response().expect("a UIA response");
    assert_eq!(info.flows[0].stages, vec![uiaa::AuthType::Dummy]);
    let mut dummy = uiaa::Dummy::new();
    dummy.session = info.session.clone();
    let response = client
        .matrix_auth()
        .register(assign!(request, { auth: Some(uiaa::AuthData::Dummy(dummy)) }))
        .await
        .expect("registration completes");
    assert_eq!(response.user_id, "@alice:plexus.test");
    assert!(response.access_token.is_some());

    // A second client logs in with the password and finds itself.
    let second = server.sdk_client().await;
    second
        .matrix_auth()
        .login_username("alice", PASSWORD)
        .initial_device_display_name("second device")
        .await
        .expect("login succeeds");
    let whoami = second.whoami().await.expect("whoami");
    assert_eq!(whoami.user_id, "@alice:plexus.test");
    let device_id = whoami.device_id.expect("a device id");
    assert_eq!(Some(&*device_id), second.device_id());

    // The registration device and the login device are both listed.
    let devices = second.devices().await.expect("device list").devices;
    assert_eq!(devices.len(), 2);
    let named = devices.iter().find(|d| d.device_id == device_id).expect("the login device is listed");
    assert_eq!(named.display_name.as_deref(), Some("second device"));

    // Logging out invalidates the token and removes the device.
    let token = second.access_token().expect("logged in");
    second.matrix_auth().logout().await.expect("logout");
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&token)).await, 401, "M_UNKNOWN_TOKEN");
    let devices = client.devices().await.expect("device list").devices;
    assert_eq!(devices.len(), 1, "the logged-out device is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_accepts_full_user_id_legacy_user_field_and_rejects_bad_password() {
    let server = TestServer::start().await;
    server.register("bob").await;
    let (status, body) = server.login("@bob:plexus.test", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@bob:plexus.test");
    let (status, body) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "user": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&server.login("bob", "wrong password").await, 403, "M_FORBIDDEN");
    assert_error(&server.login("nobody", PASSWORD).await, 403, "M_FORBIDDEN");
    let (status, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, 200);
    assert_eq!(flows["flows"][0]["type"], "m.login.password");
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_in_again_with_a_device_id_replaces_its_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": PASSWORD, "device_id": alice.device_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], alice.device_id.as_str());
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&alice.access_token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let new_token = body["access_token"].as_str().unwrap();
    let (status, me) = server.get("/_matrix/client/v3/account/whoami", Some(new_token)).await;
    assert_eq!((status, me["device_id"].as_str()), (200, Some(alice.device_id.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_ends_every_session() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, other) = server.login("alice", PASSWORD).await;
    let other = other["access_token"].as_str().unwrap().to_owned();
    let (status, _) = server.post("/_matrix/client/v3/logout/all", Some(&alice.access_token), json!({})).await;
    assert_eq!(status, 200);
    for token in [&alice.access_token, &other] {
        assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(token)).await, 401, "M_UNKNOWN_TOKEN");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_can_be_renamed_and_deleted_with_password_uia() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, login) = server.login("alice", PASSWORD).await;
    let phone = login["device_id"].as_str().unwrap().to_owned();
    let phone_token = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&phone_token)).await.0, 200);
    let token = Some(alice.access_token.as_str());

    let (status, _) =
        server.put(&format!("/_matrix/client/v3/devices/{phone}"), token, json!({"display_name": "Phone"})).await;
    assert_eq!(status, 200);
    let (status, device) = server.get(&format!("/_matrix/client/v3/devices/{phone}"), token).await;
    assert_eq!(status, 200);
    assert_eq!(device["display_name"], "Phone");
    assert!(device["last_seen_ts"].as_u64().is_some());
    assert_error(&server.get("/_matrix/client/v3/devices/NOSUCHDEVICE", token).await, 404, "M_NOT_FOUND");

    // Deleting needs the password: first the flows, then a wrong password,
    // then the right one.
    let path = format!("/_matrix/client/v3/devices/{phone}");
    let (status, uia) = server.request(reqwest::Method::DELETE, &path, token, Some(json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(uia["flows"][0]["stages"][0], "m.login.password");
    let session = uia["session"].clone();
    let auth = |password: &str| {
        json!({"auth": {"type": "m.login.password", "session": session,
                         "identifier": {"type": "m.id.user", "user": "alice"}, "password": password}})
    };
    let (status, failed) = server.request(reqwest::Method::DELETE, &path, token, Some(auth("wrong"))).await;
    assert_eq!(status, 401);
    assert_eq!(failed["errcode"], "M_FORBIDDEN");
    let (status, _) = server.get(&path, token).await;
    assert_eq!(status, 200, "a failed UIA changes nothing");
    let (status, body) = server.request(reqwest::Method::DELETE, &path, token, Some(auth(PASSWORD))).await;
    assert_eq!(status, 200, "{body}");
    assert_error(&server.get(&path, token).await, 404, "M_NOT_FOUND");
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&phone_token)).await, 401, "M_UNKNOWN_TOKEN");

    // Another user's password does not authenticate alice.
    server.register("mallory").await;
    let (_, uia) = server.post("/_matrix/client/v3/delete_devices", token, json!({"devices": [alice.device_id]})).await;
    let (status, failed) = server
        .post(
            "/_matrix/client/v3/delete_devices",
            token,
            json!({"devices": [alice.device_id], "auth": {"type": "m.login.password", "session": uia["session"],
                   "identifier": {"type": "m.id.user", "user": "mallory"}, "password": PASSWORD}}),
        )
        .await;
    // Refused outright, as Synapse does: 403, not another UIA round.
    assert_eq!((status, failed["errcode"].as_str()), (403, Some("M_FORBIDDEN")));

    // A session started to delete one device cannot delete another.
    let (_, tablet) = server.login("alice", PASSWORD).await;
    let tablet = tablet["device_id"].as_str().unwrap().to_owned();
    let (_, uia) = server.post("/_matrix/client/v3/delete_devices", token, json!({"devices": [alice.device_id]})).await;
    assert_eq!(uia["completed"], json!([]), "`completed` is sent even when empty: {uia}");
    let (status, failed) = server
        .post(
            "/_matrix/client/v3/delete_devices",
            token,
            json!({"devices": [tablet], "auth": {"type": "m.login.password", "session": uia["session"],
                   "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD}}),
        )
        .await;
    assert_eq!((status, failed["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{failed}");
    let (status, _) = server.get(&format!("/_matrix/client/v3/devices/{tablet}"), token).await;
    assert_eq!(status, 200, "the other device is still there");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_logs_out_other_devices_unless_asked_not_to() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, other) = server.login("alice", PASSWORD).await;
    let other = other["access_token"].as_str().unwrap().to_owned();
    let token = Some(alice.access_token.as_str());
    let auth =
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD});

    // Too short a password is refused before anything changes.
    let weak =
        server.post("/_matrix/client/v3/account/password", token, json!({"new_password": "short", "auth": auth})).await;
    assert_error(&weak, 400, "M_WEAK_PASSWORD");

    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/password",
            token,
            json!({"new_password": "a brand new password", "auth": auth, "logout_devices": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&other)).await.0, 200, "kept when asked");
    assert_error(&server.login("alice", PASSWORD).await, 403, "M_FORBIDDEN");

    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "a brand new password"});
    let (status, _) = server
        .post("/_matrix/client/v3/account/password", token, json!({"new_password": "third password!", "auth": auth}))
        .await;
    assert_eq!(status, 200);
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&other)).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", token).await.0, 200, "the caller stays logged in");
    assert_eq!(server.login("alice", "third password!").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivated_accounts_cannot_log_in_and_keep_their_name() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let (status, _) = server.post("/_matrix/client/v3/account/deactivate", token, json!({})).await;
    assert_eq!(status, 401, "deactivation needs UIA");
    let (status, body) = server
        .post(
            "/_matrix/client/v3/account/deactivate",
            token,
            json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_error(&server.get("/_matrix/client/v3/account/whoami", token).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&server.login("alice", PASSWORD).await, 403, "M_USER_DEACTIVATED");
    assert_error(&server.get("/_matrix/client/v3/register/available?username=alice", None).await, 400, "M_USER_IN_USE");
    let again = server.register_with("alice", json!({"type": "m.login.dummy"})).await.unwrap_err();
    assert_error(&again, 400, "M_USER_IN_USE");
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_have_no_third_party_ids_and_cannot_add_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let (status, threepids) = server.get("/_matrix/client/v3/account/3pid", token).await;
    assert_eq!(status, 200);
    // `threepids` is optional (ruma leaves an empty list out).
    assert!(threepids.get("threepids").is_none_or(|list| list == &json!([])), "{threepids}");
    let (_, caps) = server.get("/_matrix/client/v3/capabilities", token).await;
    assert_eq!(caps["capabilities"]["m.3pid_changes"]["enabled"], false);
    assert_error(&server.get("/_matrix/client/v3/account/3pid", None).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_are_readable_by_others_and_writable_by_their_owner() {
    let server = TestServer::start().await;
    let client = server.sdk_client().await;
    server.register("alice").await;
    client.matrix_auth().login_username("alice", PASSWORD).await.expect("login");
    assert_eq!(
        client.account().get_display_name().await.unwrap().as_deref(),
        Some("alice"),
        "defaults to the localpart"
    );
    client.account().set_display_name(Some("Alice Liddell")).await.expect("set display name");
    let avatar = matrix_sdk::ruma::mxc_uri!("mxc://plexus.test/abcdef");
    client.account().set_avatar_url(Some(avatar)).await.expect("set avatar");

    let bob = server.register("bob").await;
    let (status, profile) = server.get("/_matrix/client/v3/profile/@alice:plexus.test", Some(&bob.access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(profile, json!({"displayname": "Alice Liddell", "avatar_url": "mxc://plexus.test/abcdef"}));
    let (status, name) = server.get("/_matrix/client/v3/profile/@alice:plexus.test/displayname", None).await;
    assert_eq!((status, name), (200, json!({"displayname": "Alice Liddell"})));

    let forged = server
        .put(
            "/_matrix/client/v3/profile/@alice:plexus.test/displayname",
            Some(&bob.access_token),
            json!({"displayname": "Bob was here"}),
        )
        .await;
    assert_error(&forged, 403, "M_FORBIDDEN");
    assert_eq!(client.account().get_display_name().await.unwrap().as_deref(), Some("Alice Liddell"));

    client.account().set_avatar_url(None).await.expect("remove avatar");
    assert_error(
        &server.get("/_matrix/client/v3/profile/@alice:plexus.test/avatar_url", None).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&server.get("/_matrix/client/v3/profile/@nobody:plexus.test", None).await, 404, "M_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let (status, login) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD, "refresh_token": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(login["expires_in_ms"], 300_000);
    let refresh = login["refresh_token"].as_str().expect("a refresh token").to_owned();
    let old_access = login["access_token"].as_str().unwrap().to_owned();
    // Used once, so the server has it cached when the refresh retires it.
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&old_access)).await.0, 200);

    let (status, fresh) = server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "{fresh}");
    let new_access = fresh["access_token"].as_str().unwrap();
    assert_ne!(new_access, old_access);
    assert!(fresh["refresh_token"].is_string());
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(new_access)).await.0, 200);
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&old_access)).await, 401, "M_UNKNOWN_TOKEN");
    let reused = server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": refresh})).await;
    assert_error(&reused, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_access_tokens_are_soft_logged_out() {
    let server =
        TestServer::start_with(|c| c.auth.refreshable_access_token_lifetime = std::time::Duration::from_secs(1)).await;
    server.register("alice").await;
    let (_, login) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD, "refresh_token": true}),
        )
        .await;
    let access = login["access_token"].as_str().unwrap();
    // Wait for the expiry condition itself, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let expired = loop {
        let got = server.get("/_matrix/client/v3/account/whoami", Some(access)).await;
        if got.0 == 401 || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_error(&expired, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_mode_registration_needs_a_valid_token() {
    let server = TestServer::start_with(|c| {
        c.registration.mode = plexus::config::RegistrationMode::Token;
        c.registration.token = Some("let-me-in".into());
    })
    .await;
    let (status, uia) =
        server.post("/_matrix/client/v3/register", None, json!({"username": "carol", "password": PASSWORD})).await;
    assert_eq!(status, 401);
    assert_eq!(uia["flows"], json!([{"stages": ["m.login.registration_token"]}]));

    let wrong = server
        .register_with("carol", json!({"type": "m.login.registration_token", "token": "guess"}))
        .await
        .unwrap_err();
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.1["errcode"], "M_FORBIDDEN");
    let dummy = server.register_with("carol", json!({"type": "m.login.dummy"})).await.unwrap_err();
    assert_eq!(dummy.0, 401, "dummy is not offered in token mode: {:?}", dummy.1);
    assert_eq!(
        server.get("/_matrix/client/v3/register/available?username=carol", None).await.0,
        200,
        "nothing was created"
    );

    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    assert_eq!(server.get(&format!("{validity}?token=let-me-in"), None).await.1, json!({"valid": true}));
    assert_eq!(server.get(&format!("{validity}?token=guess"), None).await.1, json!({"valid": false}));

    let carol = server
        .register_with("carol", json!({"type": "m.login.registration_token", "token": "let-me-in"}))
        .await
        .expect("registers");
    assert_eq!(carol.user_id, "@carol:plexus.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_registration_is_forbidden_and_guests_are_refused() {
    let server = TestServer::start_with(|c| c.registration.mode = plexus::config::RegistrationMode::Closed).await;
    let closed =
        server.post("/_matrix/client/v3/register", None, json!({"username": "dave", "password": PASSWORD})).await;
    assert_error(&closed, 403, "M_FORBIDDEN");

    let open = TestServer::start().await;
    let guest = open.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_error(&guest, 403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_users_devices_tokens_and_the_signing_key() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let key_before = std::fs::read_to_string(server.dir.path().join("signing.key")).unwrap();
    let key_id_before = server.services().server_key.key_id();

    server.restart().await;

    let (status, me) = server.get("/_matrix/client/v3/account/whoami", Some(&alice.access_token)).await;
    assert_eq!(status, 200, "the token survives");
    assert_eq!(me["user_id"], alice.user_id);
    assert_eq!(me["device_id"], alice.device_id);
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&alice.access_token)).await;
    assert_eq!(devices["devices"][0]["device_id"], alice.device_id);
    assert_eq!(server.login("alice", PASSWORD).await.0, 200, "the password survives");
    assert_eq!(std::fs::read_to_string(server.dir.path().join("signing.key")).unwrap(), key_before);
    assert_eq!(server.services().server_key.key_id(), key_id_before);
}

/// Sytest 11register.pl, "registration is idempotent" and "registration
/// remembers parameters": a UIA session remembers the first request's
/// parameters, and once it made an account, the same request again answers
/// the same account (new tokens for the same device), not an error.
#[tokio::test(flavor = "multi_thread")]
async fn registration_sessions_remember_parameters_and_are_idempotent() {
    let server = TestServer::start().await;
    let register = "/_matrix/client/v3/register";

    // Parameters given only with the first request are those registered.
    let first = json!({
        "username": "remembered", "password": PASSWORD,
        "device_id": "XYZZY", "initial_device_display_name": "display_name",
    });
    let (status, uia) = server.post(register, None, first).await;
    assert_eq!(status, 401, "{uia}");
    let session = uia["session"].as_str().expect("a session").to_owned();
    let only_auth = json!({"auth": {"type": "m.login.dummy", "session": session}});
    let (status, body) = server.post(register, None, only_auth.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@remembered:plexus.test");
    assert_eq!(body["device_id"], "XYZZY");
    let token = body["access_token"].as_str().expect("an access token").to_owned();
    let (status, device) = server.get("/_matrix/client/v3/devices/XYZZY", Some(&token)).await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(device["display_name"], "display_name");
    assert_eq!(server.login("remembered", PASSWORD).await.0, 200, "the remembered password was set");

    // The same request again: the same account and device, a new token.
    let (status, again) = server.post(register, None, only_auth).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user_id"], "@remembered:plexus.test");
    assert_eq!(again["device_id"], "XYZZY");
    let new_token = again["access_token"].as_str().expect("an access token");
    assert_ne!(new_token, token);
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(new_token)).await;
    assert_eq!((status, &whoami["user_id"]), (200, &json!("@remembered:plexus.test")));

    // Without a username: the random id is made once.
    let (status, uia) = server.post(register, None, json!({"password": PASSWORD})).await;
    assert_eq!(status, 401, "{uia}");
    let complete = json!({"password": PASSWORD, "auth": {"type": "m.login.dummy", "session": uia["session"]}});
    let (status, first) = server.post(register, None, complete.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = server.post(register, None, complete).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["user_id"], first["user_id"]);
    assert_eq!(second["device_id"], first["device_id"]);
    assert!(second["access_token"].is_string());

    // `inhibit_login` is remembered too: no device, and none on a retry.
    let (status, uia) =
        server.post(register, None, json!({"username": "quiet", "password": PASSWORD, "inhibit_login": true})).await;
    assert_eq!(status, 401, "{uia}");
    let only_auth = json!({"auth": {"type": "m.login.dummy", "session": uia["session"]}});
    for _ in 0..2 {
        let (status, body) = server.post(register, None, only_auth.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], "@quiet:plexus.test");
        assert!(body.get("access_token").is_none() && body.get("device_id").is_none(), "{body}");
    }

    // A session serves registration only: it cannot register another name.
    let (status, uia) = server.post(register, None, json!({"username": "one", "password": PASSWORD})).await;
    assert_eq!(status, 401);
    let auth = json!({"type": "m.login.dummy", "session": uia["session"]});
    let (status, _) = server.post(register, None, json!({"username": "one", "password": PASSWORD, "auth": auth})).await;
    assert_eq!(status, 200);
    let other = json!({"username": "two", "password": PASSWORD, "auth": auth});
    let (status, body) = server.post(register, None, other).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@one:plexus.test", "a completed session answers its own account");
}

/// `GET /admin/whois/{userId}` (client-server API, "Server
/// administration"; Sytest 48admin.pl "/whois"): each device as a session
/// with one connection (last address and time, `user_agent` present);
/// for the user themself or a server admin, others refused.
#[tokio::test(flavor = "multi_thread")]
async fn whois_lists_devices_for_the_user_and_admins_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    server.services().users.create_user_directly("root", Some(PASSWORD.to_owned()), true).await.expect("admin made");
    let (status, root) = server.login("root", PASSWORD).await;
    assert_eq!(status, 200, "{root}");
    let root_token = root["access_token"].as_str().unwrap();
    let path = format!("/_matrix/client/v3/admin/whois/{}", common::enc(&alice.user_id));

    for token in [alice.access_token.as_str(), root_token] {
        let (status, body) = server.get(&path, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], alice.user_id.as_str());
        let devices = body["devices"].as_object().expect("devices");
        assert_eq!(devices.keys().collect::<Vec<_>>(), [&alice.device_id]);
        let connection = &devices[&alice.device_id]["sessions"][0]["connections"][0];
        assert_eq!(connection["ip"], "127.0.0.1", "{body}");
        assert!(connection["last_seen"].as_u64().is_some_and(|ts| ts > 0), "{body}");
        assert!(connection.as_object().unwrap().contains_key("user_agent"), "{body}");
    }
    assert_error(&server.get(&path, Some(&bob.access_token)).await, 403, "M_FORBIDDEN");
    let nobody = format!("/_matrix/client/v3/admin/whois/{}", common::enc("@nobody:plexus.test"));
    assert_error(&server.get(&nobody, Some(root_token)).await, 404, "M_NOT_FOUND");
}
