//! `E2eeStore`: one-time keys handed out once (even to concurrent
//! claimers), all-or-nothing uploads, identity keys that never change,
//! idempotent to-device transactions deleted on acknowledgement.

use std::{collections::BTreeMap, sync::Arc};

use plexus::{
    ruma::OwnedUserId,
    storage::{
        Storage,
        sync::SyncUserQuery,
        users::{NewTokens, NewUser},
    },
};

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";
const CURVE: &str = "signed_curve25519";

fn otks(ids: impl IntoIterator<Item = u32>) -> Vec<(String, String, String)> {
    ids.into_iter().map(|n| (CURVE.to_owned(), format!("{CURVE}:K{n:02}"), format!(r#"{{"key":"k{n}"}}"#))).collect()
}

pub async fn one_time_key_claims_are_atomic(store: Arc<dyn Storage>) {
    const KEYS: u32 = 20;
    const CLAIMERS: usize = 32;
    assert_eq!(store.add_one_time_keys(ALICE.into(), "PHONE".into(), otks(0..KEYS)).await.unwrap(), None);
    store
        .set_fallback_keys(
            ALICE.into(),
            "PHONE".into(),
            vec![(CURVE.into(), format!("{CURVE}:FB"), r#"{"key":"fb"}"#.into())],
        )
        .await
        .unwrap();
    assert_eq!(
        store.one_time_key_counts(ALICE.into(), "PHONE".into()).await.unwrap(),
        [(CURVE.to_owned(), KEYS as i64)]
    );

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLAIMERS {
        let store = store.clone();
        tasks.spawn(async move { store.claim_key(ALICE.into(), "PHONE".into(), CURVE.into()).await.unwrap() });
    }
    let claimed: Vec<_> = tasks.join_all().await.into_iter().map(|k| k.expect("a key or the fallback")).collect();
    let mut handed_out: BTreeMap<String, usize> = BTreeMap::new();
    for key in &claimed {
        *handed_out.entry(key.key_id.clone()).or_default() += 1;
        let n = key.key_id.trim_start_matches(&format!("{CURVE}:K"));
        if key.key_id.ends_with(":FB") {
            assert_eq!(key.json, r#"{"key":"fb"}"#);
        } else {
            assert_eq!(key.json, format!(r#"{{"key":"k{}"}}"#, n.parse::<u32>().unwrap()));
        }
    }
    for n in 0..KEYS {
        assert_eq!(handed_out.get(&format!("{CURVE}:K{n:02}")), Some(&1), "key {n} is handed out exactly once");
    }
    assert_eq!(handed_out.get(&format!("{CURVE}:FB")), Some(&(CLAIMERS - KEYS as usize)), "the rest get the fallback");
    assert!(store.one_time_key_counts(ALICE.into(), "PHONE".into()).await.unwrap().is_empty());
    let rows = store
        .sync_user_rows(SyncUserQuery {
            user_id: ALICE.into(),
            device_id: "PHONE".into(),
            since: None,
            until_events: 0,
            until_misc: 0,
            presence: false,
            to_device_after: Some(None),
        })
        .await
        .unwrap();
    assert!(rows.unused_fallback_algorithms.is_empty(), "the fallback key is marked used");
    assert!(rows.one_time_key_counts.is_empty());
    assert!(store.claim_key(ALICE.into(), "LAPTOP".into(), CURVE.into()).await.unwrap().is_none());
}

pub async fn one_time_key_uploads_are_all_or_nothing(store: Arc<dyn Storage>) {
    store.add_one_time_keys(ALICE.into(), "PHONE".into(), otks([1])).await.unwrap();
    // Uploading the same key again is fine.
    assert_eq!(store.add_one_time_keys(ALICE.into(), "PHONE".into(), otks([1, 2])).await.unwrap(), None);
    assert_eq!(store.one_time_key_counts(ALICE.into(), "PHONE".into()).await.unwrap(), [(CURVE.to_owned(), 2)]);
    // A key id reused with other content refuses the whole upload.
    let mut upload = otks([3, 4]);
    upload.push((CURVE.into(), format!("{CURVE}:K01"), r#"{"key":"other"}"#.into()));
    let refused = store.add_one_time_keys(ALICE.into(), "PHONE".into(), upload).await.unwrap();
    assert_eq!(refused, Some(format!("{CURVE}:K01")));
    assert_eq!(store.one_time_key_counts(ALICE.into(), "PHONE".into()).await.unwrap(), [(CURVE.to_owned(), 2)]);
    let first = store.claim_key(ALICE.into(), "PHONE".into(), CURVE.into()).await.unwrap().unwrap();
    let second = store.claim_key(ALICE.into(), "PHONE".into(), CURVE.into()).await.unwrap().unwrap();
    let mut claimed = [first.key_id, second.key_id];
    claimed.sort();
    assert_eq!(claimed, [format!("{CURVE}:K01"), format!("{CURVE}:K02")]);
    assert!(store.claim_key(ALICE.into(), "PHONE".into(), CURVE.into()).await.unwrap().is_none());
}

pub async fn device_identity_keys_never_change(store: Arc<dyn Storage>) {
    let keys = r#"{"keys":{"ed25519:PHONE":"A"},"signatures":{}}"#;
    let signed = r#"{"keys":{"ed25519:PHONE":"A"},"signatures":{"x":{}}}"#;
    let other = r#"{"keys":{"ed25519:PHONE":"B"},"signatures":{}}"#;
    let same = |same: bool| Box::new(move |_: &str| same);
    let outcome = store.upload_device_keys(ALICE.into(), "PHONE".into(), keys.into(), same(true)).await.unwrap();
    let plexus::storage::e2ee::DeviceKeysOutcome::Changed(first) = outcome else { panic!("{outcome:?}") };
    let outcome = store.upload_device_keys(ALICE.into(), "PHONE".into(), keys.into(), same(false)).await.unwrap();
    assert_eq!(outcome, plexus::storage::e2ee::DeviceKeysOutcome::Unchanged);
    let outcome = store.upload_device_keys(ALICE.into(), "PHONE".into(), other.into(), same(false)).await.unwrap();
    assert_eq!(outcome, plexus::storage::e2ee::DeviceKeysOutcome::Conflict);
    assert_eq!(store.device_keys_of(ALICE.into()).await.unwrap(), [("PHONE".to_owned(), keys.to_owned())]);
    let outcome = store.upload_device_keys(ALICE.into(), "PHONE".into(), signed.into(), same(true)).await.unwrap();
    let plexus::storage::e2ee::DeviceKeysOutcome::Changed(second) = outcome else { panic!("{outcome:?}") };
    assert!(second > first);
    assert_eq!(store.device_keys_of(ALICE.into()).await.unwrap(), [("PHONE".to_owned(), signed.to_owned())]);

    let replaced = store.replace_device_keys(ALICE.into(), "PHONE".into(), keys.into()).await.unwrap();
    assert!(replaced > second);
    assert_eq!(store.device_keys_of(ALICE.into()).await.unwrap(), [("PHONE".to_owned(), keys.to_owned())]);
    assert_eq!(store.device_list_changes(ALICE.into(), first - 1, replaced).await.unwrap(), [ALICE]);
    assert!(store.device_list_changes(ALICE.into(), replaced, replaced + 10).await.unwrap().is_empty());
    let remote = store.mark_remote_device_list_change("@zed:remote.test".into()).await.unwrap();
    assert!(remote > replaced);
    // Only users sharing a room with the viewer (none here) or the viewer.
    assert!(store.device_list_changes(ALICE.into(), replaced, remote).await.unwrap().is_empty());
}

async fn login(store: &dyn Storage, user: &str, device: &str) {
    let user_id: OwnedUserId = user.try_into().unwrap();
    let new = NewUser {
        user_id: user_id.clone(),
        is_guest: false,
        password_hash: None,
        is_admin: false,
        displayname: None,
        registration_token: None,
    };
    store.create_user(new).await.unwrap();
    let tokens =
        NewTokens { access_hash: format!("{user}{device}").into_bytes(), access_expires_ts: None, refresh_hash: None };
    store.login_device(user_id, device.into(), None, None, tokens).await.unwrap();
}

fn user_query(user: &str, device: &str, since_misc: Option<i64>, until_misc: i64) -> SyncUserQuery {
    SyncUserQuery {
        user_id: user.into(),
        device_id: device.into(),
        since: since_misc.map(|m| (0, m)),
        until_events: 0,
        until_misc,
        presence: false,
        to_device_after: Some(since_misc),
    }
}

pub async fn to_device_messages_are_idempotent_and_deleted_on_ack(store: Arc<dyn Storage>) {
    login(&*store, BOB, "PHONE").await;
    login(&*store, BOB, "LAPTOP").await;
    let message = |content: &str| (BOB.to_owned(), "*".to_owned(), "m.test".to_owned(), content.to_owned());
    let (position, recipients) = store
        .queue_to_device(ALICE.into(), "SENDER".into(), "txn1".into(), vec![message(r#"{"n":1}"#)])
        .await
        .unwrap()
        .expect("a new transaction");
    assert_eq!(recipients, [BOB]);
    let again = store.queue_to_device(ALICE.into(), "SENDER".into(), "txn1".into(), vec![message(r#"{"n":1}"#)]).await;
    assert!(again.unwrap().is_none(), "a transaction is queued once");

    for device in ["PHONE", "LAPTOP"] {
        let rows = store.sync_user_rows(user_query(BOB, device, None, position)).await.unwrap();
        let messages: Vec<_> =
            rows.to_device.iter().map(|m| (m.sender.as_str(), m.kind.as_str(), m.content.as_str())).collect();
        assert_eq!(messages, [(ALICE, "m.test", r#"{"n":1}"#)], "{device} has one copy");
    }

    // The phone syncs past the message: it is acknowledged, and gone.
    let (later, _) = store
        .queue_to_device(ALICE.into(), "SENDER".into(), "txn2".into(), vec![message(r#"{"n":2}"#)])
        .await
        .unwrap()
        .unwrap();
    let rows = store.sync_user_rows(user_query(BOB, "PHONE", Some(position), later)).await.unwrap();
    assert!(rows.to_device_to_ack, "messages up to the token wait to be deleted");
    assert_eq!(rows.to_device.len(), 1);
    assert_eq!(rows.to_device[0].content, r#"{"n":2}"#);
    store.ack_to_device(BOB.into(), "PHONE".into(), position).await.unwrap();
    let rows = store.sync_user_rows(user_query(BOB, "PHONE", None, later)).await.unwrap();
    let contents: Vec<_> = rows.to_device.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, [r#"{"n":2}"#]);
    let rows = store.sync_user_rows(user_query(BOB, "PHONE", Some(position), later)).await.unwrap();
    assert!(!rows.to_device_to_ack);
    // The laptop has not acknowledged anything.
    let rows = store.sync_user_rows(user_query(BOB, "LAPTOP", None, later)).await.unwrap();
    assert_eq!(rows.to_device.len(), 2);
}

pub async fn cross_signing_keys_are_replaced(store: Arc<dyn Storage>) {
    let first = store
        .set_cross_signing_keys(
            ALICE.into(),
            vec![("master".into(), "M1".into()), ("self_signing".into(), "S1".into())],
        )
        .await
        .unwrap();
    let second = store.set_cross_signing_keys(ALICE.into(), vec![("master".into(), "M2".into())]).await.unwrap();
    assert!(second > first);
    let mut keys = store.cross_signing_keys_of(ALICE.into()).await.unwrap();
    keys.sort();
    assert_eq!(keys, [("master".to_owned(), "M2".to_owned()), ("self_signing".to_owned(), "S1".to_owned())]);
    assert!(store.cross_signing_keys_of(BOB.into()).await.unwrap().is_empty());
}

pub async fn device_writes_record_device_list_changes(store: Arc<dyn Storage>) {
    assert_eq!(store.device_list_position(BOB.into()).await.unwrap(), None);
    login(&*store, BOB, "PHONE").await;
    let login_position = store.device_list_position(BOB.into()).await.unwrap().expect("a login is a change");
    let bob: OwnedUserId = BOB.try_into().unwrap();
    assert!(store.rename_device(bob.clone(), "PHONE".into(), Some("Phone".into())).await.unwrap());
    let renamed = store.device_list_position(BOB.into()).await.unwrap().unwrap();
    assert!(renamed > login_position);
    // Renaming a device that does not exist changes nothing.
    assert!(!store.rename_device(bob.clone(), "NONE".into(), Some("x".into())).await.unwrap());
    assert_eq!(store.device_list_position(BOB.into()).await.unwrap(), Some(renamed));
    store.delete_devices(bob, vec!["PHONE".into()]).await.unwrap();
    assert!(store.device_list_position(BOB.into()).await.unwrap().unwrap() > renamed);
}

pub async fn device_updates_form_one_stream_per_user(store: Arc<dyn Storage>) {
    use plexus::storage::e2ee::DeviceUpdate;
    assert_eq!(store.device_stream_id(BOB.into()).await.unwrap(), 0);
    login(&*store, BOB, "PHONE").await;
    let first = store.device_list_position(BOB.into()).await.unwrap().unwrap();
    assert_eq!(
        store.device_updates_of_change(BOB.into(), first).await.unwrap(),
        [DeviceUpdate { device_id: "PHONE".into(), stream_id: first, prev_id: None }]
    );
    login(&*store, BOB, "LAPTOP").await;
    let bob: OwnedUserId = BOB.try_into().unwrap();
    // One write deleting two devices: one update each, chained.
    store.delete_devices(bob, vec!["PHONE".into(), "LAPTOP".into()]).await.unwrap();
    let change = store.device_list_position(BOB.into()).await.unwrap().unwrap();
    let updates = store.device_updates_of_change(BOB.into(), change).await.unwrap();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1].prev_id, Some(updates[0].stream_id));
    assert!(updates[0].prev_id.is_some_and(|p| p > first));
    assert_eq!(updates[1].stream_id, change);
    assert_eq!(store.device_stream_id(BOB.into()).await.unwrap(), change);
    // Cross-signing keys move the device list, not the device stream.
    let keys = store.set_cross_signing_keys(BOB.into(), vec![("master".into(), "M".into())]).await.unwrap();
    assert!(store.device_updates_of_change(BOB.into(), keys).await.unwrap().is_empty());
    assert_eq!(store.device_stream_id(BOB.into()).await.unwrap(), change);
}

pub async fn remote_device_lists_are_replaced(store: Arc<dyn Storage>) {
    let zed = "@zed:remote.test";
    assert_eq!(store.remote_device_list(zed.into()).await.unwrap(), None);
    let first = store.set_remote_device_list(zed.into(), 7, r#"{"A":{}}"#.into()).await.unwrap();
    assert_eq!(store.device_list_position(zed.into()).await.unwrap(), Some(first));
    let second = store.set_remote_device_list(zed.into(), 9, r#"{"B":{}}"#.into()).await.unwrap();
    assert!(second > first);
    assert_eq!(store.remote_device_list(zed.into()).await.unwrap(), Some((9, r#"{"B":{}}"#.to_owned())));
    store.set_remote_cross_signing_keys(zed.into(), Some("M".into()), None).await.unwrap();
    assert_eq!(store.remote_cross_signing_keys(zed.into()).await.unwrap(), (Some("M".to_owned()), None));
    store.forget_remote_device_list(zed.into()).await.unwrap();
    assert_eq!(store.remote_device_list(zed.into()).await.unwrap(), None);
    assert_eq!(store.remote_cross_signing_keys(zed.into()).await.unwrap(), (None, None));
}
