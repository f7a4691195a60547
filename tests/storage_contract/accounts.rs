//! `AccountStore`: accounts created once, registration tokens bounded,
//! access tokens found and retired, devices and profiles.

use std::sync::Arc;

use plexus::{
    ruma::{OwnedDeviceId, OwnedUserId},
    storage::{
        Storage,
        users::{CreateUserOutcome, NewTokens, NewUser},
    },
};
use serde_json::json;

fn user(name: &str) -> OwnedUserId {
    format!("@{name}:contract.test").try_into().expect("a valid user id")
}

fn device(name: &str) -> OwnedDeviceId {
    name.into()
}

fn new_user(name: &str, token: Option<&[u8]>) -> NewUser {
    NewUser {
        user_id: user(name),
        is_guest: false,
        password_hash: Some(format!("hash-of-{name}")),
        is_admin: false,
        displayname: Some(format!("{name} the tester")),
        registration_token: token.map(<[u8]>::to_vec),
    }
}

fn tokens(access: &str, refresh: Option<&str>) -> NewTokens {
    NewTokens {
        access_hash: access.as_bytes().to_vec(),
        access_expires_ts: Some(4_000_000_000_000),
        refresh_hash: refresh.map(|r| r.as_bytes().to_vec()),
    }
}

pub async fn users_are_created_once(store: Arc<dyn Storage>) {
    assert_eq!(store.create_user(new_user("alice", None)).await.unwrap(), CreateUserOutcome::Created);
    assert_eq!(store.create_user(new_user("alice", None)).await.unwrap(), CreateUserOutcome::UserInUse);
    let alice = store.get_user(user("alice")).await.unwrap().expect("alice is stored");
    assert_eq!(alice.user_id, user("alice"));
    assert_eq!(alice.password_hash.as_deref(), Some("hash-of-alice"));
    assert!(!alice.is_admin && !alice.deactivated);
    let profile = store.get_profile(user("alice")).await.unwrap();
    assert_eq!(profile.get("displayname"), Some(&json!("alice the tester")));
    assert!(store.get_user(user("nobody")).await.unwrap().is_none());

    // Concurrent registrations of one id: exactly one account.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.create_user(new_user("bob", None)).await.unwrap() });
    }
    let outcomes = tasks.join_all().await;
    assert_eq!(outcomes.iter().filter(|o| **o == CreateUserOutcome::Created).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == CreateUserOutcome::UserInUse).count(), 7);

    store.set_password_hash(user("alice"), "new-hash".into()).await.unwrap();
    let alice = store.get_user(user("alice")).await.unwrap().unwrap();
    assert_eq!(alice.password_hash.as_deref(), Some("new-hash"));
}

pub async fn registration_token_uses_are_bounded(store: Arc<dyn Storage>) {
    store.insert_registration_token(b"two-uses".to_vec(), Some(2), None).await.unwrap();
    assert!(store.registration_token_valid(b"two-uses".to_vec()).await.unwrap());
    // Inserting it again leaves it as it was.
    store.insert_registration_token(b"two-uses".to_vec(), Some(100), None).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            let name = format!("user{i}");
            (name.clone(), store.create_user(new_user(&name, Some(b"two-uses"))).await.unwrap())
        });
    }
    let outcomes = tasks.join_all().await;
    let created: Vec<_> = outcomes.iter().filter(|(_, o)| *o == CreateUserOutcome::Created).collect();
    assert_eq!(created.len(), 2, "a token with two uses admits two accounts: {outcomes:?}");
    for (name, outcome) in &outcomes {
        let stored = store.get_user(user(name)).await.unwrap();
        match outcome {
            CreateUserOutcome::Created => assert!(stored.is_some()),
            // A refused registration changes nothing.
            other => {
                assert_eq!(*other, CreateUserOutcome::TokenInvalid);
                assert!(stored.is_none(), "{name} was refused but stored");
                assert!(store.get_profile(user(name)).await.unwrap().is_empty());
            }
        }
    }
    assert!(!store.registration_token_valid(b"two-uses".to_vec()).await.unwrap());

    assert_eq!(store.create_user(new_user("carol", Some(b"unknown"))).await.unwrap(), CreateUserOutcome::TokenInvalid);
    assert!(store.get_user(user("carol")).await.unwrap().is_none());

    store.insert_registration_token(b"expired".to_vec(), None, Some(1)).await.unwrap();
    assert!(!store.registration_token_valid(b"expired".to_vec()).await.unwrap());
    store.insert_registration_token(b"unlimited".to_vec(), None, None).await.unwrap();
    assert!(store.registration_token_valid(b"unlimited".to_vec()).await.unwrap());
}

pub async fn access_tokens_are_found_and_retired(store: Arc<dyn Storage>) {
    store.create_user(new_user("alice", None)).await.unwrap();
    let (alice, phone) = (user("alice"), device("PHONE"));
    store
        .login_device(alice.clone(), phone.clone(), Some("Phone".into()), None, tokens("a1", Some("r1")))
        .await
        .unwrap();
    for _ in 0..2 {
        let owner = store.find_access_token(b"a1".to_vec()).await.unwrap().expect("a1 is alice's");
        assert_eq!((owner.user_id, owner.device_id), (alice.clone(), phone.clone()));
        assert_eq!(owner.expires_ts, Some(4_000_000_000_000));
        assert!(!owner.is_admin);
    }
    assert!(store.find_access_token(b"nonsense".to_vec()).await.unwrap().is_none());

    // Logging in again on the device replaces its tokens.
    store.login_device(alice.clone(), phone.clone(), None, None, tokens("a2", Some("r2"))).await.unwrap();
    assert!(store.find_access_token(b"a1".to_vec()).await.unwrap().is_none(), "a1 is retired");
    assert!(store.find_access_token(b"a2".to_vec()).await.unwrap().is_some());
    assert!(store.rotate_refresh_token(b"r1".to_vec(), tokens("x", None)).await.unwrap().is_none());
    assert!(store.find_access_token(b"x".to_vec()).await.unwrap().is_none(), "a refused refresh stores nothing");

    // A refresh token works once, and replaces the access token.
    let owner = store.rotate_refresh_token(b"r2".to_vec(), tokens("a3", Some("r3"))).await.unwrap();
    assert_eq!(owner, Some((alice.clone(), phone.clone())));
    assert!(store.find_access_token(b"a2".to_vec()).await.unwrap().is_none(), "a2 is retired");
    assert_eq!(store.find_access_token(b"a3".to_vec()).await.unwrap().unwrap().device_id, phone);
    assert!(store.rotate_refresh_token(b"r2".to_vec(), tokens("a4", None)).await.unwrap().is_none());

    // Deleting the device retires its token.
    assert_eq!(store.delete_devices(alice.clone(), vec![phone.clone(), device("NONE")]).await.unwrap(), 1);
    assert!(store.find_access_token(b"a3".to_vec()).await.unwrap().is_none(), "a3 is retired");

    // So does deleting the other devices, and deactivating.
    store.login_device(alice.clone(), device("A"), None, None, tokens("ta", None)).await.unwrap();
    store.login_device(alice.clone(), device("B"), None, None, tokens("tb", None)).await.unwrap();
    assert!(store.find_access_token(b"tb".to_vec()).await.unwrap().is_some());
    assert_eq!(store.delete_other_devices(alice.clone(), Some(device("A"))).await.unwrap(), 1);
    assert!(store.find_access_token(b"tb".to_vec()).await.unwrap().is_none(), "tb is retired");
    assert!(store.find_access_token(b"ta".to_vec()).await.unwrap().is_some());
    store.deactivate_user(alice.clone()).await.unwrap();
    assert!(store.find_access_token(b"ta".to_vec()).await.unwrap().is_none(), "ta is retired");
    let record = store.get_user(alice.clone()).await.unwrap().unwrap();
    assert!(record.deactivated);
    assert!(record.password_hash.is_none());
    assert!(store.list_devices(alice).await.unwrap().is_empty());
}

pub async fn devices_round_trip(store: Arc<dyn Storage>) {
    store.create_user(new_user("alice", None)).await.unwrap();
    let alice = user("alice");
    store
        .login_device(
            alice.clone(),
            device("FIRST"),
            Some("Laptop".into()),
            Some("10.0.0.1".into()),
            tokens("t1", None),
        )
        .await
        .unwrap();
    store.login_device(alice.clone(), device("SECOND"), None, None, tokens("t2", None)).await.unwrap();
    // Logging in again keeps the name.
    store.login_device(alice.clone(), device("FIRST"), Some("Other".into()), None, tokens("t3", None)).await.unwrap();

    let devices = store.list_devices(alice.clone()).await.unwrap();
    let ids: Vec<_> = devices.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(ids, ["FIRST", "SECOND"]);
    assert_eq!(devices[0].display_name.as_deref(), Some("Laptop"));
    assert!(devices[0].last_seen_ts.is_some());

    assert!(store.rename_device(alice.clone(), device("SECOND"), Some("Phone".into())).await.unwrap());
    assert!(!store.rename_device(alice.clone(), device("NONE"), Some("x".into())).await.unwrap());
    let second = store.get_device(alice.clone(), device("SECOND")).await.unwrap().unwrap();
    assert_eq!(second.display_name.as_deref(), Some("Phone"));
    assert!(store.get_device(alice.clone(), device("NONE")).await.unwrap().is_none());
    assert!(store.get_device(user("bob"), device("SECOND")).await.unwrap().is_none());

    assert_eq!(store.delete_other_devices(alice.clone(), Some(device("SECOND"))).await.unwrap(), 1);
    let ids: Vec<_> = store.list_devices(alice).await.unwrap().into_iter().map(|d| d.device_id).collect();
    assert_eq!(ids, [device("SECOND")]);
}

pub async fn profile_fields_are_set_and_removed(store: Arc<dyn Storage>) {
    let alice = user("alice");
    store.create_user(new_user("alice", None)).await.unwrap();
    store.set_profile_field(alice.clone(), "avatar_url".into(), Some(json!("mxc://x/y"))).await.unwrap();
    store.set_profile_field(alice.clone(), "displayname".into(), Some(json!("Alice"))).await.unwrap();
    store.set_profile_field(alice.clone(), "m.tz".into(), Some(json!({"zone": "Europe/Paris"}))).await.unwrap();
    let profile = store.get_profile(alice.clone()).await.unwrap();
    assert_eq!(profile.get("displayname"), Some(&json!("Alice")));
    assert_eq!(profile.get("avatar_url"), Some(&json!("mxc://x/y")));
    assert_eq!(profile.get("m.tz"), Some(&json!({"zone": "Europe/Paris"})));
    store.set_profile_field(alice.clone(), "avatar_url".into(), None).await.unwrap();
    let profile = store.get_profile(alice).await.unwrap();
    assert_eq!(profile.keys().collect::<Vec<_>>(), ["displayname", "m.tz"]);
}

pub async fn openid_tokens_expire_and_go(store: Arc<dyn Storage>) {
    store.create_user(new_user("alice", None)).await.unwrap();
    store.create_user(new_user("bob", None)).await.unwrap();
    let now = plexus::storage::now_ms();
    store.insert_openid_token(b"old".to_vec(), user("alice"), now - 1_000).await.unwrap();
    store.insert_openid_token(b"alice".to_vec(), user("alice"), now + 3_600_000).await.unwrap();
    store.insert_openid_token(b"bob".to_vec(), user("bob"), now + 3_600_000).await.unwrap();
    assert_eq!(store.find_openid_token(b"alice".to_vec(), now).await.unwrap(), Some(user("alice")));
    assert_eq!(store.find_openid_token(b"bob".to_vec(), now).await.unwrap(), Some(user("bob")));
    assert_eq!(store.find_openid_token(b"nobody".to_vec(), now).await.unwrap(), None);
    // Past its expiry a token is not found, whatever is still stored.
    assert_eq!(store.find_openid_token(b"alice".to_vec(), now + 3_600_000).await.unwrap(), None);
    assert_eq!(store.find_openid_token(b"old".to_vec(), now).await.unwrap(), None);
    // A deactivated account's tokens are no longer anyone's.
    store.deactivate_user(user("bob")).await.unwrap();
    assert_eq!(store.find_openid_token(b"bob".to_vec(), now).await.unwrap(), None);
}
