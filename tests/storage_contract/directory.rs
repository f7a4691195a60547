//! `DirectoryStore`: an alias names one room, and public rooms are listed
//! by size.

use std::sync::Arc;

use plexus::storage::Storage;

use crate::fixtures::Room;

const ALICE: &str = "@alice:contract.test";

pub async fn an_alias_names_one_room(store: Arc<dyn Storage>) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let room = format!("!room{n}:contract.test");
            (room.clone(), store.create_alias("#home:contract.test".into(), room, ALICE.into()).await.unwrap())
        });
    }
    let outcomes = tasks.join_all().await;
    let winners: Vec<_> = outcomes.iter().filter(|(_, created)| *created).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let (room, creator) = store.resolve_alias("#home:contract.test".into()).await.unwrap().unwrap();
    assert_eq!((room.as_str(), creator.as_str()), (winners[0].0.as_str(), ALICE));

    store.create_alias("#also:contract.test".into(), room.clone(), ALICE.into()).await.unwrap();
    assert_eq!(store.room_aliases(room.clone()).await.unwrap(), ["#also:contract.test", "#home:contract.test"]);
    assert!(store.delete_alias("#home:contract.test".into()).await.unwrap());
    assert!(!store.delete_alias("#home:contract.test".into()).await.unwrap());
    assert!(store.resolve_alias("#home:contract.test".into()).await.unwrap().is_none());
    assert_eq!(store.room_aliases(room).await.unwrap(), ["#also:contract.test"]);
}

pub async fn public_rooms_are_listed_by_size(store: Arc<dyn Storage>) {
    let small = Room::create(&*store, "!small:contract.test", ALICE).await;
    let mut big = Room::create(&*store, "!big:contract.test", ALICE).await;
    big.join(&*store, "@bob:contract.test").await;
    let hidden = Room::create(&*store, "!hidden:contract.test", ALICE).await;
    for room in [&small, &big] {
        store.set_room_public(room.room_id.clone(), true).await.unwrap();
    }
    store.set_room_public(hidden.room_id.clone(), true).await.unwrap();
    store.set_room_public(hidden.room_id.clone(), false).await.unwrap();
    assert_eq!(
        store.public_rooms().await.unwrap(),
        [("!big:contract.test".to_owned(), 2), ("!small:contract.test".to_owned(), 1)]
    );
    assert!(store.room_is_public(big.room_id.clone()).await.unwrap());
    assert!(!store.room_is_public(hidden.room_id.clone()).await.unwrap());
    assert!(!store.room_is_public("!unknown:contract.test".into()).await.unwrap());
}
