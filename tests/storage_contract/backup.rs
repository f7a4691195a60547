//! `KeyBackupStore`: version numbers never reused, writes to an old
//! version refused, and only a better session key replaces a stored one.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    e2ee::{BackupError, BackupKeyRow},
};

const ALICE: &str = "@alice:contract.test";

fn key(session: &str, verified: bool, first_message_index: i64, json: &str) -> BackupKeyRow {
    BackupKeyRow {
        room_id: "!room:contract.test".into(),
        session_id: session.into(),
        json: json.into(),
        first_message_index,
        forwarded_count: 0,
        is_verified: verified,
    }
}

pub async fn backup_versions_are_never_reused(store: Arc<dyn Storage>) {
    assert!(store.backup_version(ALICE.into(), None).await.unwrap().is_none());
    assert_eq!(store.create_backup_version(ALICE.into(), "alg-1".into()).await.unwrap(), 1);
    assert_eq!(store.create_backup_version(ALICE.into(), "alg-2".into()).await.unwrap(), 2);
    let current = store.backup_version(ALICE.into(), None).await.unwrap().unwrap();
    assert_eq!((current.version, current.algorithm.as_str(), current.count), (2, "alg-2", 0));

    // Writing to the old version is refused and changes nothing.
    let refused = store.put_backup_keys(ALICE.into(), 1, vec![key("s", false, 0, "{}")]).await.unwrap();
    assert_eq!(refused, Err(BackupError::WrongVersion(Some(2))));
    assert!(store.backup_keys(ALICE.into(), 1, None, None).await.unwrap().is_empty());
    let refused = store.delete_backup_keys(ALICE.into(), 1, None, None).await.unwrap();
    assert_eq!(refused, Err(BackupError::WrongVersion(Some(2))));

    assert!(store.update_backup_version(ALICE.into(), 2, "alg-2b".into()).await.unwrap());
    assert!(!store.update_backup_version(ALICE.into(), 9, "x".into()).await.unwrap());
    assert_eq!(store.backup_version(ALICE.into(), Some(2)).await.unwrap().unwrap().algorithm, "alg-2b");

    assert!(store.delete_backup_version(ALICE.into(), 2).await.unwrap());
    assert!(!store.delete_backup_version(ALICE.into(), 2).await.unwrap());
    assert!(store.backup_version(ALICE.into(), Some(2)).await.unwrap().is_none());
    assert_eq!(store.backup_version(ALICE.into(), None).await.unwrap().unwrap().version, 1);
    assert_eq!(store.create_backup_version(ALICE.into(), "alg-3".into()).await.unwrap(), 3, "2 is not reused");
    assert_eq!(store.create_backup_version("@bob:contract.test".into(), "alg".into()).await.unwrap(), 1);
}

pub async fn the_better_backup_key_wins(store: Arc<dyn Storage>) {
    let version = store.create_backup_version(ALICE.into(), "alg".into()).await.unwrap();
    let (etag, count) =
        store.put_backup_keys(ALICE.into(), version, vec![key("s1", false, 5, "first")]).await.unwrap().unwrap();
    assert_eq!(count, 1);
    // A worse key (a later first message) changes nothing, etag included.
    let worse = store.put_backup_keys(ALICE.into(), version, vec![key("s1", false, 6, "worse")]).await.unwrap();
    assert_eq!(worse, Ok((etag, 1)));
    // A verified key beats an unverified one.
    let better = store.put_backup_keys(ALICE.into(), version, vec![key("s1", true, 9, "verified")]).await.unwrap();
    let (etag2, _) = better.unwrap();
    assert!(etag2 > etag);
    let stored = store.backup_keys(ALICE.into(), version, None, None).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].json.as_str(), stored[0].is_verified, stored[0].first_message_index), ("verified", true, 9));

    store.put_backup_keys(ALICE.into(), version, vec![key("s2", false, 0, "second")]).await.unwrap().unwrap();
    let one = store.backup_keys(ALICE.into(), version, None, Some("s2".into())).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].json, "second");
    let (etag3, count) =
        store.delete_backup_keys(ALICE.into(), version, None, Some("s1".into())).await.unwrap().unwrap();
    assert!(etag3 > etag2);
    assert_eq!(count, 1);
    assert_eq!(store.backup_version(ALICE.into(), None).await.unwrap().unwrap().count, 1);
}
