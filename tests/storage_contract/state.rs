//! `StateStore`: state groups resolve through their deltas to the right
//! state, and the current state follows appends.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    rooms::{CurrentStateWrite, StateWrite, StoredState},
};
use ruma::events::room::member::MembershipState;
use serde_json::json;

use crate::fixtures::Room;

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";

fn key(kind: &str, state_key: &str) -> (String, String) {
    (kind.to_owned(), state_key.to_owned())
}

pub async fn state_group_deltas_resolve(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!state:contract.test", ALICE).await;
    let mut expected = vec![(room.group, room.state.clone())];
    let (topic1, _) = room.set_state(&*store, "m.room.topic", "", ALICE, json!({"topic": "one"})).await;
    expected.push((room.group, room.state.clone()));
    let (bob_join, _) = room.join(&*store, BOB).await;
    expected.push((room.group, room.state.clone()));
    let (topic2, _) = room.set_state(&*store, "m.room.topic", "", ALICE, json!({"topic": "two"})).await;
    expected.push((room.group, room.state.clone()));
    // A message does not make a group.
    room.send(&*store, ALICE, "hello").await;
    assert_eq!(room.group, expected.last().unwrap().0);

    let latest: StoredState = [
        (key("m.room.create", ""), room.create_id.clone()),
        (key("m.room.member", ALICE), room.state[&key("m.room.member", ALICE)].clone()),
        (key("m.room.member", BOB), bob_join.clone()),
        (key("m.room.topic", ""), topic2.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(room.state, latest, "the fixture tracks the state");

    // Each group resolves to the state as it was after its event.
    for (group, state) in &expected {
        assert_eq!(&store.state_group(*group).await.unwrap(), state, "group {group}");
    }
    let topic_at_second = &expected[1].1[&key("m.room.topic", "")];
    assert_eq!(topic_at_second, &topic1, "the later delta does not change an earlier group");
    let groups: Vec<i64> = expected.iter().map(|(g, _)| *g).collect();
    let resolved = store.state_groups(groups).await.unwrap();
    for (group, state) in &expected {
        assert_eq!(&resolved[group], state);
    }
    assert!(store.state_group(i64::MAX).await.unwrap().is_empty());
    assert_eq!(store.current_state(room.room_id.clone()).await.unwrap(), latest);

    // A full snapshot starts afresh: it holds exactly what it lists.
    let mut event = room.build("m.room.topic", Some(""), ALICE, json!({"topic": "three"}));
    let mut snapshot = latest.clone();
    snapshot.remove(&key("m.room.member", BOB));
    snapshot.insert(key("m.room.topic", ""), event.event_id.clone());
    event.state = StateWrite::Full { state: snapshot.clone() };
    let appended = store.append_event(event).await.unwrap();
    assert_eq!(store.state_group(appended.state_group).await.unwrap(), snapshot);
    // A delta on it.
    let mut next = room.build("m.room.name", Some(""), ALICE, json!({"name": "Room"}));
    next.state = StateWrite::Delta {
        prev_group: appended.state_group,
        delta_depth: 1,
        key: key("m.room.name", ""),
        event_id: next.event_id.clone(),
    };
    let name_id = next.event_id.clone();
    let after = store.append_event(next).await.unwrap();
    let mut with_name = snapshot.clone();
    with_name.insert(key("m.room.name", ""), name_id);
    assert_eq!(store.state_group(after.state_group).await.unwrap(), with_name);

    let (groups, entries) = store.state_storage_counts(room.room_id.clone()).await.unwrap();
    // Create, alice, topic, bob, topic (one entry each), the snapshot
    // (three), the name (one).
    assert_eq!((groups, entries), (7, 9));
}

pub async fn current_state_follows_appends(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!current:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let before = store.current_state(room.room_id.clone()).await.unwrap();

    // A soft-failed event changes nothing.
    let mut soft_failed = room.build("m.room.topic", Some(""), BOB, json!({"topic": "rejected"}));
    soft_failed.current_state = CurrentStateWrite::Unchanged;
    store.append_event(soft_failed).await.unwrap();
    assert_eq!(store.current_state(room.room_id.clone()).await.unwrap(), before);

    // A resolved state replaces it, and memberships follow.
    let mut resolved = before.clone();
    let leave = room.build("m.room.member", Some(BOB), BOB, json!({"membership": "leave"}));
    let leave_id = leave.event_id.clone();
    let mut leave = leave;
    leave.current_state = CurrentStateWrite::Unchanged;
    leave.membership = None;
    store.append_event(leave).await.unwrap();
    resolved.insert(key("m.room.member", BOB), leave_id.clone());
    let mut event = room.build("m.room.topic", Some(""), ALICE, json!({"topic": "after resolution"}));
    resolved.insert(key("m.room.topic", ""), event.event_id.clone());
    event.current_state = CurrentStateWrite::Replace(resolved.clone());
    let position = store.append_event(event).await.unwrap().stream_ordering;
    assert_eq!(store.current_state(room.room_id.clone()).await.unwrap(), resolved);
    assert_eq!(
        store.membership(room.room_id.clone(), BOB.into()).await.unwrap(),
        Some((MembershipState::Leave, position))
    );
    assert_eq!(store.room_members_with(room.room_id.clone(), MembershipState::Join).await.unwrap(), [ALICE]);
    assert_eq!(store.room_head(room.room_id.clone()).await.unwrap().unwrap().current_state_group, {
        let head = store.get_event(resolved[&key("m.room.topic", "")].clone()).await.unwrap().unwrap();
        head.state_group
    });
}
