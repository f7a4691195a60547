//! `EventStore`: the timeline in stream order, idempotent transaction
//! ids, ordered queued appends, outliers, backfill and atomic appends.

use std::{collections::BTreeSet, sync::Arc};

use plexus::storage::{
    Storage,
    rooms::{AppendOutcome, Direction},
};
use serde_json::json;
use tokio::sync::oneshot;

use crate::fixtures::{Room, content_of};

const ALICE: &str = "@alice:contract.test";

fn ids(events: &[plexus::storage::rooms::StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

pub async fn timeline_reads_follow_positions(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!timeline:contract.test", ALICE).await;
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(room.send(&*store, ALICE, &format!("message {n}")).await);
    }
    let positions: Vec<i64> = sent.iter().map(|(_, pos)| *pos).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions grow: {positions:?}");

    let all = store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 100).await.unwrap();
    assert_eq!(all.len(), 7, "create, join and five messages");
    assert_eq!(all[0].event_id, room.create_id);
    let sent_ids: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids(&all[2..]), sent_ids);
    assert_eq!(content_of(&all[6].json)["body"], "message 4");

    // Backward from the newest, two at a time, newest first.
    let newest = positions[4];
    let page = store.room_events(room.room_id.clone(), newest, None, Direction::Backward, 2).await.unwrap();
    assert_eq!(ids(&page), [sent_ids[4], sent_ids[3]]);
    // Forward in (from, to], backward in (to, from].
    let page = store.room_events(room.room_id.clone(), positions[0], Some(positions[2]), Direction::Forward, 10).await;
    assert_eq!(ids(&page.unwrap()), [sent_ids[1], sent_ids[2]]);
    let page = store.room_events(room.room_id.clone(), positions[3], Some(positions[1]), Direction::Backward, 10).await;
    assert_eq!(ids(&page.unwrap()), [sent_ids[3], sent_ids[2]]);

    let event = store.get_event(sent_ids[1].to_owned()).await.unwrap().expect("stored");
    assert_eq!(event.stream_ordering, positions[1]);
    assert_eq!(event.room_id, room.room_id);
    assert_eq!(content_of(&event.json)["body"], "message 1");
    assert!(event.redacted_by.is_none() && !event.rejected && event.txn.is_none());
    let some = store.get_events(vec![sent_ids[3].into(), "$unknown".into(), sent_ids[0].into()]).await.unwrap();
    assert_eq!(ids(&some), [sent_ids[3], sent_ids[0]]);
    assert!(store.get_event("$unknown".into()).await.unwrap().is_none());

    let head = store.room_head(room.room_id.clone()).await.unwrap().expect("the room is stored");
    assert_eq!(head.room_version, "10");
    assert_eq!(head.forward_extremities, [sent_ids[4]]);
    assert_eq!(head.max_depth, 7);
    assert_eq!(head.current_state_group, room.group);
    assert!(store.room_head("!unknown:contract.test".into()).await.unwrap().is_none());
    assert_eq!(store.room_version(room.room_id.clone()).await.unwrap().as_deref(), Some("10"));
    assert_eq!(store.room_max_stream(room.room_id.clone()).await.unwrap(), newest);
    assert_eq!(store.oldest_timeline_event(room.room_id.clone()).await.unwrap().unwrap().event_id, room.create_id);
    assert!(store.events_position().await.unwrap() >= newest);

    for (id, position) in &sent {
        assert_eq!(store.get_event(id.clone()).await.unwrap().unwrap().stream_ordering, *position);
    }
}

pub async fn transaction_ids_are_idempotent(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!txn:contract.test", ALICE).await;
    // A client retrying: several appends under one transaction id, all
    // queued before any commits, each built on the same head.
    let mut queued = Vec::new();
    for copy in 0..5 {
        let mut event = room.build("m.room.message", None, ALICE, json!({"body": format!("copy {copy}")}));
        event.txn = Some((ALICE.into(), "PHONE".into(), "txn1".into()));
        let id = event.event_id.clone();
        queued.push((id, store.queue_local_append(event, Box::new(|_| {})).unwrap()));
    }
    let mut stored = None;
    let mut outcomes = Vec::new();
    for (id, future) in queued {
        match future.await.unwrap() {
            AppendOutcome::Stored(_) => {
                assert!(stored.is_none(), "one event per transaction id");
                stored = Some(id);
            }
            outcome => outcomes.push(outcome),
        }
    }
    let stored = stored.expect("the first append is stored");
    for outcome in outcomes {
        assert!(matches!(&outcome, AppendOutcome::AlreadySent(id) if *id == stored), "{outcome:?}");
    }
    assert_eq!(store.find_txn(ALICE.into(), "PHONE".into(), "txn1".into()).await.unwrap().as_deref(), Some(&*stored));
    let event = store.get_event(stored.clone()).await.unwrap().unwrap();
    assert_eq!(event.txn, Some(("PHONE".to_owned(), "txn1".to_owned())));
    let timeline = store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 100).await.unwrap();
    assert_eq!(timeline.len(), 3, "create, join and one message");
    room.head = vec![stored.clone()];

    // Concurrent senders, from other tasks: still one event.
    let mut tasks = tokio::task::JoinSet::new();
    for copy in 0..8 {
        let mut event = room.build("m.room.message", None, ALICE, json!({"body": format!("again {copy}")}));
        event.txn = Some((ALICE.into(), "PHONE".into(), "txn2".into()));
        let store = store.clone();
        tasks.spawn(async move {
            let id = event.event_id.clone();
            (id, store.queue_local_append(event, Box::new(|_| {})).unwrap().await.unwrap())
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<&String> =
        results.iter().filter(|(_, o)| matches!(o, AppendOutcome::Stored(_))).map(|(id, _)| id).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, outcome) in &results {
        match outcome {
            AppendOutcome::Stored(_) => {}
            AppendOutcome::AlreadySent(id) => assert_eq!(id, winners[0]),
            AppendOutcome::StaleHead => panic!("every event was built on a stored head"),
        }
    }

    // The same transaction id from another device is another transaction.
    let mut event = room.build("m.room.message", None, ALICE, json!({"body": "from the laptop"}));
    event.prev_events = vec![winners[0].clone()];
    event.txn = Some((ALICE.into(), "LAPTOP".into(), "txn1".into()));
    let outcome = store.queue_local_append(event, Box::new(|_| {})).unwrap().await.unwrap();
    assert!(matches!(outcome, AppendOutcome::Stored(_)));
    assert!(store.find_txn(ALICE.into(), "TABLET".into(), "txn1".into()).await.unwrap().is_none());
}

pub async fn queued_appends_keep_order(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!queue:contract.test", ALICE).await;
    // Each event is built on the one queued before it, without waiting.
    let mut futures = Vec::new();
    let mut told = Vec::new();
    for n in 0..10 {
        let event = room.build("m.room.message", None, ALICE, json!({"body": format!("pipelined {n}")}));
        let (tx, rx) = oneshot::channel();
        let future = store
            .queue_local_append(
                event.clone(),
                Box::new(move |stored| {
                    let _ = tx.send(stored);
                }),
            )
            .unwrap();
        room.head = vec![event.event_id.clone()];
        room.depth = event.depth;
        futures.push((event.event_id, future));
        told.push(rx);
    }
    let mut positions = Vec::new();
    for ((id, future), mut rx) in futures.into_iter().zip(told) {
        let AppendOutcome::Stored(appended) = future.await.unwrap() else { panic!("{id} is stored") };
        // `then` has been told before the future resolved.
        assert_eq!(rx.try_recv(), Ok(true));
        positions.push((appended.stream_ordering, id));
    }
    assert!(positions.windows(2).all(|w| w[0].0 < w[1].0), "stored in the order queued: {positions:?}");
    let timeline = store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 100).await.unwrap();
    let expected: Vec<&str> = positions.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids(&timeline[2..]), expected);

    // `then` is told even when nobody waits for the outcome.
    let event = room.build("m.room.message", None, ALICE, json!({"body": "fire and forget"}));
    let (tx, rx) = oneshot::channel();
    let future = store
        .queue_local_append(
            event.clone(),
            Box::new(move |stored| {
                let _ = tx.send(stored);
            }),
        )
        .unwrap();
    drop(future);
    assert_eq!(rx.await, Ok(true));
    assert!(store.get_event(event.event_id).await.unwrap().is_some());
}

pub async fn stale_heads_are_refused(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!stale:contract.test", ALICE).await;
    let (last, _) = room.send(&*store, ALICE, "before").await;
    let counts = store.state_storage_counts(room.room_id.clone()).await.unwrap();

    // Built on an event that was never stored (it failed).
    room.head = vec!["$never-stored".into()];
    let event = room.build("m.room.topic", Some(""), ALICE, json!({"topic": "on a stale head"}));
    let (tx, rx) = oneshot::channel();
    let outcome = store
        .queue_local_append(
            event.clone(),
            Box::new(move |stored| {
                let _ = tx.send(stored);
            }),
        )
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(outcome, AppendOutcome::StaleHead), "{outcome:?}");
    assert_eq!(rx.await, Ok(false));
    assert!(store.get_event(event.event_id).await.unwrap().is_none());
    let head = store.room_head(room.room_id.clone()).await.unwrap().unwrap();
    assert_eq!(head.forward_extremities, [last]);
    assert_eq!(store.state_storage_counts(room.room_id.clone()).await.unwrap(), counts, "no state group");
    assert!(
        !store.current_state(room.room_id.clone()).await.unwrap().contains_key(&("m.room.topic".into(), "".into()))
    );
}

pub async fn event_positions_are_never_seen_out_of_order(store: Arc<dyn Storage>) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let mut rooms = Vec::new();
    for w in 0..WRITERS {
        rooms.push(Room::create(&*store, &format!("!order{w}:contract.test"), ALICE).await);
    }
    let room_ids: Vec<String> = rooms.iter().map(|r| r.room_id.clone()).collect();
    let start = store.events_position().await.unwrap();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done, room_ids) = (store.clone(), done.clone(), room_ids.clone());
        tokio::spawn(async move {
            // What a reader saw: a position, then every event up to it.
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let position = store.events_position().await.unwrap();
                let mut visible = BTreeSet::new();
                for room in &room_ids {
                    let events = store
                        .room_events(room.clone(), start, Some(position), Direction::Forward, 10_000)
                        .await
                        .unwrap();
                    visible.extend(events.iter().map(|e| e.stream_ordering));
                }
                seen.push((position, visible));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for mut room in rooms {
        let store = store.clone();
        writers.spawn(async move {
            let mut positions = Vec::new();
            for n in 0..EACH {
                positions.push(room.send(&*store, ALICE, &format!("{n}")).await.1);
            }
            positions
        });
    }
    let mut written = BTreeSet::new();
    for positions in writers.join_all().await {
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "a room's events take growing positions");
        written.extend(positions);
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.await.unwrap();
    assert_eq!(written.len(), WRITERS * EACH, "positions are distinct");
    assert!(seen.len() > 1, "the reader ran while the writers did");
    for (position, visible) in &seen {
        let expected: BTreeSet<i64> = written.range(..=*position).copied().collect();
        assert_eq!(visible, &expected, "at position {position} a reader saw a gap");
    }
    assert_eq!(store.events_position().await.unwrap(), *written.last().unwrap());
}

pub async fn outliers_stay_out_of_the_timeline(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!outliers:contract.test", ALICE).await;
    let power = room.outlier("m.room.power_levels", Some(""), ALICE, json!({"users": {ALICE: 100}}));
    let mut member =
        room.outlier("m.room.member", Some("@bob:remote.test"), "@bob:remote.test", json!({"membership": "join"}));
    member.auth_events = vec![power.event_id.clone()];
    store.store_outliers(vec![power.clone(), member.clone()]).await.unwrap();
    // Storing again leaves them as they are.
    let mut changed = power.clone();
    changed.json = "{\"changed\":true}".into();
    store.store_outliers(vec![changed]).await.unwrap();

    assert_eq!(store.event_outlier(power.event_id.clone()).await.unwrap(), Some(true));
    assert_eq!(store.event_outlier(room.create_id.clone()).await.unwrap(), Some(false));
    assert_eq!(store.event_outlier("$unknown".into()).await.unwrap(), None);
    let stored = store.get_event(power.event_id.clone()).await.unwrap().unwrap();
    assert_eq!(stored.json, power.json);
    let timeline = store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 100).await.unwrap();
    assert!(timeline.iter().all(|e| e.event_id != power.event_id && e.event_id != member.event_id));

    assert_eq!(store.auth_event_ids(member.event_id.clone()).await.unwrap(), [power.event_id.as_str()]);
    let chain: BTreeSet<String> = store.auth_chain(vec![member.event_id.clone()]).await.unwrap().into_iter().collect();
    assert_eq!(chain, BTreeSet::from([power.event_id.clone(), room.create_id.clone()]));

    // An outlier appended to the timeline joins it.
    let mut event = room.build("m.room.power_levels", Some(""), ALICE, json!({"users": {ALICE: 100}}));
    event.event_id = power.event_id.clone();
    event.json = power.json.clone();
    if let plexus::storage::rooms::StateWrite::Delta { event_id, .. } = &mut event.state {
        *event_id = power.event_id.clone();
    }
    event.forward_extremities = vec![power.event_id.clone()];
    room.append(&*store, event).await;
    assert_eq!(store.event_outlier(power.event_id.clone()).await.unwrap(), Some(false));
    let timeline = store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 100).await.unwrap();
    assert_eq!(timeline.last().unwrap().event_id, power.event_id);
}

pub async fn backfill_goes_below_every_position(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!backfill:contract.test", ALICE).await;
    room.send(&*store, ALICE, "now").await;
    let lowest =
        store.room_events(room.room_id.clone(), 0, None, Direction::Forward, 1).await.unwrap()[0].stream_ordering;

    // Oldest first, each with its prev events; one of them known as an outlier.
    let older = room.outlier("m.room.message", None, "@bob:remote.test", json!({"body": "older"}));
    let old = room.outlier("m.room.message", None, "@bob:remote.test", json!({"body": "old"}));
    store.store_outliers(vec![old.clone()]).await.unwrap();
    let history = vec![(older.clone(), vec![]), (old.clone(), vec![older.event_id.clone()])];
    assert_eq!(store.store_backfilled(history.clone(), room.group).await.unwrap(), 2);
    assert_eq!(store.store_backfilled(history, room.group).await.unwrap(), 0, "already in the timeline");

    let older_pos = store.get_event(older.event_id.clone()).await.unwrap().unwrap().stream_ordering;
    let old_pos = store.get_event(old.event_id.clone()).await.unwrap().unwrap().stream_ordering;
    assert!(older_pos < old_pos && old_pos < lowest, "{older_pos} < {old_pos} < {lowest}");
    assert_eq!(store.event_outlier(old.event_id.clone()).await.unwrap(), Some(false));
    // Backward pagination runs on into them.
    let page = store.room_events(room.room_id.clone(), lowest, None, Direction::Backward, 10).await.unwrap();
    assert_eq!(ids(&page), [room.create_id.as_str(), &old.event_id, &older.event_id]);
    assert_eq!(store.oldest_timeline_event(room.room_id.clone()).await.unwrap().unwrap().event_id, older.event_id);
}

pub async fn redactions_rewrite_their_target(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!redact:contract.test", ALICE).await;
    let (target, _) = room.send(&*store, ALICE, "oops").await;
    let mut redaction = room.build("m.room.redaction", None, ALICE, json!({"redacts": target}));
    let redacted = json!({"event_id": target, "type": "m.room.message", "content": {}}).to_string();
    redaction.redaction = Some((target.clone(), redacted.clone()));
    let redaction_id = redaction.event_id.clone();
    room.append(&*store, redaction).await;
    let stored = store.get_event(target).await.unwrap().unwrap();
    assert_eq!(stored.json, redacted);
    assert_eq!(stored.redacted_by, Some(redaction_id));
}

pub async fn a_failing_append_changes_nothing(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!atomic:contract.test", ALICE).await;
    let (first, position) = room.set_state(&*store, "m.room.topic", "", ALICE, json!({"topic": "first"})).await;
    let counts = store.state_storage_counts(room.room_id.clone()).await.unwrap();
    let state = store.current_state(room.room_id.clone()).await.unwrap();

    // The same event id again, with a new state group, memberships, an
    // extremity and queued PDUs: the event cannot be stored twice, so none
    // of it may be.
    let mut again = room.build("m.room.member", Some("@bob:contract.test"), ALICE, json!({"membership": "invite"}));
    again.event_id = first.clone();
    again.send_to = vec!["remote.test".into()];
    again.forward_extremities = vec!["$other".into()];
    assert!(store.append_event(again).await.is_err());

    assert_eq!(store.state_storage_counts(room.room_id.clone()).await.unwrap(), counts);
    assert_eq!(store.current_state(room.room_id.clone()).await.unwrap(), state);
    assert_eq!(store.room_head(room.room_id.clone()).await.unwrap().unwrap().forward_extremities, [first.as_str()]);
    assert!(store.membership(room.room_id.clone(), "@bob:contract.test".into()).await.unwrap().is_none());
    assert!(store.next_federation_txn("remote.test".into(), 10, 10).await.unwrap().is_none());
    let stored = store.get_event(first).await.unwrap().unwrap();
    assert_eq!(stored.stream_ordering, position);
    assert_eq!(content_of(&stored.json)["topic"], "first");
}
