//! `MediaStore`: metadata round trips, ids are stored once, and a
//! reserved id is filled once, by its owner, before it expires.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    media::{CompleteOutcome, MediaContent},
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
