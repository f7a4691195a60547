//! `SearchStore`: indexed events are found by their words (case and
//! accents ignored) only in the rooms asked for, in rank or recent order,
//! until they are taken out; the directory finds members of the rooms the
//! searcher shares, not of others.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    search::{SearchEntry, SearchOrder},
};

use crate::fixtures::Room;

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";
const CAROL: &str = "@carol:contract.test";

fn body(stream_ordering: i64, text: &str) -> SearchEntry {
    SearchEntry { stream_ordering, body: Some(text.into()), ..SearchEntry::default() }
}

async fn found(store: &dyn Storage, rooms: &[&str], matching: &str, order: SearchOrder) -> Vec<String> {
    let rooms = rooms.iter().map(|r| r.to_string()).collect();
    store.search_events(rooms, matching.into(), order, 10).await.unwrap().into_iter().map(|h| h.event_id).collect()
}

pub async fn indexed_events_are_found_in_their_rooms_until_taken_out(store: Arc<dyn Storage>) {
    let mut first = Room::create(&*store, "!search1:contract.test", ALICE).await;
    let mut second = Room::create(&*store, "!search2:contract.test", ALICE).await;
    let once = first.send(&*store, ALICE, "x").await;
    let thrice = first.send(&*store, ALICE, "x").await;
    let elsewhere = second.send(&*store, ALICE, "x").await;
    let named = first.send(&*store, ALICE, "x").await;
    store
        .index_events(vec![
            body(once.1, "Un Café crème, merci"),
            body(thrice.1, "cafe cafe cafe"),
            body(elsewhere.1, "café du coin"),
        ])
        .await
        .unwrap();
    let both = [first.room_id.as_str(), second.room_id.as_str()];
    assert_eq!(found(&*store, &both[..1], "\"cafe\"", SearchOrder::Rank).await, [thrice.0.as_str(), once.0.as_str()]);
    assert_eq!(
        found(&*store, &both, "\"CAFÉ\"", SearchOrder::Recent).await,
        [elsewhere.0.as_str(), thrice.0.as_str(), once.0.as_str()]
    );
    let hits = store.search_events(vec![first.room_id.clone()], "\"creme\"".into(), SearchOrder::Rank, 10).await;
    let hit = &hits.unwrap()[0];
    assert_eq!(
        (hit.room_id.as_str(), hit.sender.as_str(), hit.kind.as_str()),
        (&*first.room_id, ALICE, "m.room.message")
    );
    assert_eq!(hit.stream_ordering, once.1);

    store.unindex_event(thrice.0.clone()).await.unwrap();
    assert_eq!(found(&*store, &both[..1], "\"cafe\"", SearchOrder::Rank).await, [once.0.as_str()]);
    // Indexed again: the new text replaces the old.
    store.index_events(vec![body(once.1, "thé vert")]).await.unwrap();
    assert!(found(&*store, &both[..1], "\"cafe\"", SearchOrder::Rank).await.is_empty());
    assert_eq!(found(&*store, &both[..1], "\"the\"", SearchOrder::Rank).await, [once.0.as_str()]);
    // Names and topics are their own keys.
    let entry = SearchEntry { stream_ordering: named.1, name: Some("Kitchen".into()), ..SearchEntry::default() };
    store.index_events(vec![entry]).await.unwrap();
    assert_eq!(found(&*store, &both, "{name} : (\"kitchen\")", SearchOrder::Rank).await, [named.0.as_str()]);
    assert!(found(&*store, &both, "{body topic} : (\"kitchen\")", SearchOrder::Rank).await.is_empty());
}

pub async fn the_directory_finds_members_of_shared_rooms_only(store: Arc<dyn Storage>) {
    let mut shared = Room::create(&*store, "!dir1:contract.test", ALICE).await;
    shared.join(&*store, BOB).await;
    Room::create(&*store, "!dir2:contract.test", CAROL).await;
    let users = |term: &str| {
        let store = store.clone();
        let term = term.to_owned();
        async move {
            let found = store.directory_candidates(ALICE.into(), term, false, 10).await.unwrap();
            found.into_iter().map(|u| u.user_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(users("BO").await, [BOB]);
    assert!(users("carol").await.is_empty(), "carol shares no room with alice");
    assert!(users("%").await.is_empty(), "LIKE wildcards are matched as text");
}
