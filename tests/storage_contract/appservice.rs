//! `AppserviceStore`: queues first in, first out per appservice; a
//! transaction keeps its id and items until completed, also when items
//! are queued meanwhile; transaction ids are never reused.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    appservice::{AppserviceItem, AppserviceItemKind},
};

fn item(appservice: &str, kind: AppserviceItemKind, json: &str) -> AppserviceItem {
    AppserviceItem { appservice_id: appservice.to_owned(), kind, json: json.to_owned() }
}

fn jsons(txn: &plexus::storage::appservice::AppserviceTransaction) -> Vec<&str> {
    txn.items.iter().map(|(_, json)| json.as_str()).collect()
}

pub async fn transactions_keep_their_id_and_items_until_completed(store: Arc<dyn Storage>) {
    assert_eq!(store.appservice_transaction("bridge".into(), 10).await.unwrap(), None);
    store
        .queue_appservice_items(vec![
            item("bridge", AppserviceItemKind::Event, "1"),
            item("other", AppserviceItemKind::Event, "x"),
            item("bridge", AppserviceItemKind::Ephemeral, "2"),
            item("bridge", AppserviceItemKind::Event, "3"),
        ])
        .await
        .unwrap();
    assert_eq!(store.queued_appservices().await.unwrap(), ["bridge", "other"]);

    let first = store.appservice_transaction("bridge".into(), 2).await.unwrap().expect("a transaction");
    assert_eq!(jsons(&first), ["1", "2"]);
    assert_eq!(first.items[1].0, AppserviceItemKind::Ephemeral);
    // Asked again (a retry, a restart) with more queued: the same one.
    store.queue_appservice_items(vec![item("bridge", AppserviceItemKind::Event, "4")]).await.unwrap();
    let again = store.appservice_transaction("bridge".into(), 10).await.unwrap().expect("a transaction");
    assert_eq!(again, first);

    store.complete_appservice_transaction("bridge".into(), first.txn_id).await.unwrap();
    let second = store.appservice_transaction("bridge".into(), 10).await.unwrap().expect("the rest");
    assert_eq!(jsons(&second), ["3", "4"]);
    assert!(second.txn_id > first.txn_id, "ids only grow");
    store.complete_appservice_transaction("bridge".into(), second.txn_id).await.unwrap();
    assert_eq!(store.appservice_transaction("bridge".into(), 10).await.unwrap(), None);

    // Another appservice's queue was left alone, and a new item after an
    // emptied queue gets a new id.
    let other = store.appservice_transaction("other".into(), 10).await.unwrap().expect("its own");
    assert_eq!(jsons(&other), ["x"]);
    store.queue_appservice_items(vec![item("bridge", AppserviceItemKind::Event, "5")]).await.unwrap();
    let third = store.appservice_transaction("bridge".into(), 10).await.unwrap().expect("a new one");
    assert!(third.txn_id > second.txn_id, "ids are never reused");
}
