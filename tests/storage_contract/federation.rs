//! `FederationStore`: the outbound queue is first in, first out, resends
//! the transaction in flight unchanged and empties on acknowledgement;
//! server keys and received transactions are kept.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    federation::{QueueKind, StoredServerKey},
};
use serde_json::json;

use crate::fixtures::Room;

fn edu(n: u32) -> String {
    json!({"edu_type": "m.typing", "content": {"n": n}}).to_string()
}

fn jsons(txn: &plexus::storage::federation::OutgoingTxn) -> Vec<&str> {
    txn.items.iter().map(|i| i.json.as_str()).collect()
}

pub async fn the_queue_is_fifo_and_emptied_on_ack(store: Arc<dyn Storage>) {
    let (a, b) = ("a.test".to_owned(), "b.test".to_owned());
    store
        .enqueue_federation(vec![
            (a.clone(), QueueKind::Edu, edu(1)),
            (b.clone(), QueueKind::Edu, edu(100)),
            (a.clone(), QueueKind::Pdu, edu(2)),
            (a.clone(), QueueKind::Edu, edu(3)),
            (a.clone(), QueueKind::Edu, edu(4)),
        ])
        .await
        .unwrap();
    let mut destinations = store.queued_destinations().await.unwrap();
    destinations.sort();
    assert_eq!(destinations, [a.clone(), b.clone()]);

    // At most two EDUs: 1, then the PDU 2, then 3; 4 waits.
    let txn = store.next_federation_txn(a.clone(), 10, 2).await.unwrap().expect("something is queued");
    assert_eq!(jsons(&txn), [edu(1), edu(2), edu(3)]);
    assert_eq!(txn.items.iter().map(|i| i.kind).collect::<Vec<_>>(), [QueueKind::Edu, QueueKind::Pdu, QueueKind::Edu]);
    // Until it is acknowledged, the same transaction is sent again, even
    // with more queued and other limits.
    store.enqueue_federation(vec![(a.clone(), QueueKind::Edu, edu(5))]).await.unwrap();
    let again = store.next_federation_txn(a.clone(), 1, 1).await.unwrap().unwrap();
    assert_eq!((again.txn_id.as_str(), again.last_id), (txn.txn_id.as_str(), txn.last_id));
    assert_eq!(jsons(&again), jsons(&txn));

    store.federation_txn_done(a.clone(), txn.last_id).await.unwrap();
    let next = store.next_federation_txn(a.clone(), 10, 10).await.unwrap().unwrap();
    assert_ne!(next.txn_id, txn.txn_id);
    assert_eq!(jsons(&next), [edu(4), edu(5)]);
    store.federation_txn_done(a.clone(), next.last_id).await.unwrap();
    assert!(store.next_federation_txn(a.clone(), 10, 10).await.unwrap().is_none());
    assert_eq!(store.queued_destinations().await.unwrap(), [b.as_str()]);
    let other = store.next_federation_txn(b, 10, 10).await.unwrap().unwrap();
    assert_eq!(jsons(&other), [edu(100)]);
}

pub async fn appended_pdus_are_queued_with_their_event(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!queued:contract.test", "@alice:contract.test").await;
    let mut event = room.build("m.room.message", None, "@alice:contract.test", json!({"body": "to everyone"}));
    event.send_to = vec!["a.test".into(), "b.test".into()];
    let json = event.json.clone();
    room.append(&*store, event).await;
    for destination in ["a.test", "b.test"] {
        let txn = store.next_federation_txn(destination.into(), 50, 100).await.unwrap().expect("the PDU is queued");
        assert_eq!(txn.items.len(), 1);
        assert_eq!((txn.items[0].kind, txn.items[0].json.as_str()), (QueueKind::Pdu, json.as_str()));
    }
}

pub async fn server_keys_round_trip(store: Arc<dyn Storage>) {
    let key = |id: &str, valid: i64, expired: Option<i64>| StoredServerKey {
        key_id: id.into(),
        public_key: format!("public-{id}"),
        valid_until_ts: valid,
        expired_ts: expired,
    };
    store
        .store_server_keys("remote.test".into(), vec![key("ed25519:a", 2000, None), key("ed25519:old", 500, Some(400))])
        .await
        .unwrap();
    // An older copy does not move validity back.
    store.store_server_keys("remote.test".into(), vec![key("ed25519:a", 1000, None)]).await.unwrap();
    let mut keys = store.server_keys("remote.test".into()).await.unwrap();
    keys.sort_by(|x, y| x.key_id.cmp(&y.key_id));
    assert_eq!(keys, [key("ed25519:a", 2000, None), key("ed25519:old", 500, Some(400))]);
    assert!(store.server_keys("other.test".into()).await.unwrap().is_empty());
}

pub async fn received_transactions_are_remembered(store: Arc<dyn Storage>) {
    assert!(!store.federation_txn_seen("remote.test".into(), "t1".into()).await.unwrap());
    store.mark_federation_txn("remote.test".into(), "t1".into()).await.unwrap();
    store.mark_federation_txn("remote.test".into(), "t1".into()).await.unwrap();
    assert!(store.federation_txn_seen("remote.test".into(), "t1".into()).await.unwrap());
    assert!(!store.federation_txn_seen("other.test".into(), "t1".into()).await.unwrap());
}
