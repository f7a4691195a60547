//! `MediaStore`: metadata round trips, ids are stored once, a reserved
//! id is filled once, by its owner, before it expires, and the remote
//! media cache evicts the least recently used first, keeping files that
//! another cached id still names.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    media::{CompleteOutcome, EvictedMedia, MediaContent, RemoteMediaRecord},
    now_ms,
};

const ALICE: &str = "@alice:contract.test";

fn content(sha: &str) -> MediaContent {
    MediaContent {
        content_type: Some("image/png".into()),
        filename: Some("cat.png".into()),
        size: 1234,
        sha256: sha.into(),
    }
}

pub async fn media_metadata_round_trips(store: Arc<dyn Storage>) {
    let before = now_ms();
    store.insert_media("abc".into(), ALICE.into(), content("sha-1")).await.unwrap();
    let record = store.get_media("abc".into()).await.unwrap().expect("stored");
    assert_eq!(record.media_id, "abc");
    assert_eq!(record.user_id, ALICE);
    assert_eq!(record.content_type.as_deref(), Some("image/png"));
    assert_eq!(record.filename.as_deref(), Some("cat.png"));
    assert_eq!(record.size, Some(1234));
    assert_eq!(record.sha256.as_deref(), Some("sha-1"));
    assert!(record.created_ts >= before);
    assert!(record.expires_ts.is_none());
    assert!(store.get_media("nothing".into()).await.unwrap().is_none());

    // An id is stored once.
    assert!(store.insert_media("abc".into(), "@bob:contract.test".into(), content("sha-2")).await.is_err());
    assert!(store.reserve_media("abc".into(), "@bob:contract.test".into(), now_ms() + 60_000).await.is_err());
    let record = store.get_media("abc".into()).await.unwrap().unwrap();
    assert_eq!((record.user_id.as_str(), record.sha256.as_deref()), (ALICE, Some("sha-1")));
}

pub async fn reserved_media_is_filled_once(store: Arc<dyn Storage>) {
    store.reserve_media("pending".into(), ALICE.into(), now_ms() + 60_000).await.unwrap();
    store.reserve_media("expired".into(), ALICE.into(), now_ms() - 1).await.unwrap();
    assert_eq!(store.pending_media_count(ALICE.into()).await.unwrap(), 1, "an expired reservation does not count");
    let reserved = store.get_media("pending".into()).await.unwrap().unwrap();
    assert!(reserved.sha256.is_none() && reserved.expires_ts.is_some());

    let not_owner = store.complete_media("pending".into(), "@bob:contract.test".into(), content("x")).await.unwrap();
    assert_eq!(not_owner, CompleteOutcome::NotOwner);
    assert_eq!(
        store.complete_media("nothing".into(), ALICE.into(), content("x")).await.unwrap(),
        CompleteOutcome::NotFound
    );
    assert_eq!(
        store.complete_media("expired".into(), ALICE.into(), content("x")).await.unwrap(),
        CompleteOutcome::Expired
    );

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            let sha = format!("sha-{n}");
            (sha.clone(), store.complete_media("pending".into(), ALICE.into(), content(&sha)).await.unwrap())
        });
    }
    let outcomes = tasks.join_all().await;
    let done: Vec<_> = outcomes.iter().filter(|(_, o)| *o == CompleteOutcome::Done).collect();
    assert_eq!(done.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, o)| matches!(o, CompleteOutcome::Done | CompleteOutcome::AlreadyUploaded)));
    let record = store.get_media("pending".into()).await.unwrap().unwrap();
    assert_eq!(record.sha256.as_deref(), Some(done[0].0.as_str()));
    assert_eq!(record.size, Some(1234));
    assert!(record.expires_ts.is_none());
    assert_eq!(store.pending_media_count(ALICE.into()).await.unwrap(), 0);
}

fn remote(media_id: &str, sha256: &str, size: i64, last_access_ts: i64) -> RemoteMediaRecord {
    RemoteMediaRecord {
        origin: "remote.test".into(),
        media_id: media_id.into(),
        content_type: Some("image/png".into()),
        filename: None,
        size,
        sha256: sha256.into(),
        fetched_ts: last_access_ts,
        last_access_ts,
    }
}

pub async fn the_remote_cache_evicts_the_least_recently_used(store: Arc<dyn Storage>) {
    store.insert_remote_media(remote("one", "sha-a", 100, 1_000)).await.unwrap();
    store.insert_remote_media(remote("two", "sha-a", 100, 2_000)).await.unwrap();
    store.insert_remote_media(remote("three", "sha-b", 100, 3_000)).await.unwrap();
    let got = store.get_remote_media("remote.test".into(), "three".into()).await.unwrap().expect("cached");
    assert_eq!((got.size, got.sha256.as_str(), got.fetched_ts), (100, "sha-b", 3_000));
    // "one" was used last: "two" and then "three" are the oldest.
    store.touch_remote_media("remote.test".into(), "one".into(), 4_000).await.unwrap();
    // Thumbnails count: "one" now takes 150.
    store.add_remote_thumbnail_size("remote.test".into(), "one".into(), 50).await.unwrap();
    assert!(store.evict_remote_media(350).await.unwrap().is_empty(), "350 bytes fit in 350");
    let evicted = store.evict_remote_media(250).await.unwrap();
    assert_eq!(evicted, vec![EvictedMedia { sha256: "sha-a".into(), still_used: true }], "only two went");
    assert!(store.get_remote_media("remote.test".into(), "two".into()).await.unwrap().is_none());
    let evicted = store.evict_remote_media(0).await.unwrap();
    assert_eq!(
        evicted,
        vec![
            EvictedMedia { sha256: "sha-b".into(), still_used: false },
            EvictedMedia { sha256: "sha-a".into(), still_used: false },
        ]
    );
    assert!(store.get_remote_media("remote.test".into(), "one".into()).await.unwrap().is_none());
    store.insert_remote_media(remote("four", "sha-c", 10, 5_000)).await.unwrap();
    store.delete_remote_media("remote.test".into(), "four".into()).await.unwrap();
    assert!(store.get_remote_media("remote.test".into(), "four".into()).await.unwrap().is_none());
}
