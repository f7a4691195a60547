//! `StreamStore`: account data overwritten, `misc` positions never seen
//! out of order, receipts per type and thread, presence, filter ids.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use plexus::storage::{
    Storage,
    streams::{PresenceRow, ReceiptRow},
    sync::{SyncRoomQuery, SyncUserQuery},
};

const ALICE: &str = "@alice:contract.test";

/// An initial sync's user reads, up to `until_misc`.
fn initial(user: &str, until_misc: i64) -> SyncUserQuery {
    SyncUserQuery {
        user_id: user.into(),
        device_id: "DEVICE".into(),
        since: None,
        until_events: 0,
        until_misc,
        presence: true,
        to_device_after: Some(None),
    }
}

pub async fn account_data_is_overwritten(store: Arc<dyn Storage>) {
    let first = store.set_account_data(ALICE.into(), "".into(), "m.direct".into(), r#"{"v":1}"#.into()).await.unwrap();
    let room = store.set_account_data(ALICE.into(), "!r:x".into(), "m.tag".into(), r#"{"tags":{}}"#.into()).await;
    let room = room.unwrap();
    let second = store.set_account_data(ALICE.into(), "".into(), "m.direct".into(), r#"{"v":2}"#.into()).await.unwrap();
    assert!(first < room && room < second);
    assert_eq!(
        store.get_account_data(ALICE.into(), "".into(), "m.direct".into()).await.unwrap().as_deref(),
        Some(r#"{"v":2}"#)
    );
    assert_eq!(
        store.get_account_data(ALICE.into(), "!r:x".into(), "m.tag".into()).await.unwrap().as_deref(),
        Some(r#"{"tags":{}}"#)
    );
    assert!(store.get_account_data(ALICE.into(), "!r:x".into(), "m.direct".into()).await.unwrap().is_none());
    assert!(store.get_account_data("@bob:x".into(), "".into(), "m.direct".into()).await.unwrap().is_none());

    // A sync sees one entry per key, with its latest content, at its new position.
    let rows = store.sync_user_rows(initial(ALICE, second)).await.unwrap().account_data;
    let rows: Vec<_> = rows.iter().map(|r| (r.room_id.as_str(), r.kind.as_str(), r.content.as_str())).collect();
    assert_eq!(rows, [("!r:x", "m.tag", r#"{"tags":{}}"#), ("", "m.direct", r#"{"v":2}"#)]);
    let since_room = SyncUserQuery { since: Some((0, room)), ..initial(ALICE, second) };
    let rows = store.sync_user_rows(since_room).await.unwrap().account_data;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].content, r#"{"v":2}"#);
    assert_eq!(store.misc_position().await.unwrap(), second);
}

pub async fn misc_positions_are_never_seen_out_of_order(store: Arc<dyn Storage>) {
    const WRITERS: usize = 6;
    const EACH: usize = 15;
    let start = store.misc_position().await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The writers start once the reader has read once, and the reader
    // reads at least twice, so it reads while they write even on a loaded
    // machine.
    let reading = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (store, done, reading) = (store.clone(), done.clone(), reading.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 2 || !done.load(std::sync::atomic::Ordering::Acquire) {
                let position = store.misc_position().await.unwrap();
                let rows = store.sync_user_rows(initial(ALICE, position)).await.unwrap().account_data;
                seen.push((position, rows.into_iter().map(|r| r.kind).collect::<BTreeSet<_>>()));
                reading.notify_one();
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    reading.notified().await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            let mut written = Vec::new();
            for n in 0..EACH {
                let kind = format!("test.{w}.{n}");
                let position =
                    store.set_account_data(ALICE.into(), "".into(), kind.clone(), "{}".into()).await.unwrap();
                written.push((position, kind));
            }
            written
        });
    }
    let mut by_position = BTreeMap::new();
    for written in writers.join_all().await {
        assert!(written.windows(2).all(|w| w[0].0 < w[1].0), "one writer's positions grow");
        by_position.extend(written);
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.await.unwrap();
    assert_eq!(by_position.len(), WRITERS * EACH, "positions are distinct");
    assert!(*by_position.keys().next().unwrap() > start);
    assert!(seen.len() > 1, "the reader read more than once");
    for (position, visible) in &seen {
        let expected: BTreeSet<String> = by_position.range(..=*position).map(|(_, kind)| kind.clone()).collect();
        assert_eq!(visible, &expected, "at position {position} a reader saw a gap");
    }
    assert_eq!(store.misc_position().await.unwrap(), *by_position.keys().last().unwrap());
}

fn receipt(user: &str, receipt_type: &str, thread: &str, event: &str, ts: i64) -> ReceiptRow {
    ReceiptRow {
        room_id: "!receipts:contract.test".into(),
        user_id: user.into(),
        receipt_type: receipt_type.into(),
        thread_id: thread.into(),
        event_id: event.into(),
        ts,
    }
}

pub async fn receipts_replace_per_type_and_thread(store: Arc<dyn Storage>) {
    let start = store.misc_position().await.unwrap();
    store.set_receipt(receipt(ALICE, "m.read", "", "$one", 1)).await.unwrap();
    store.set_receipt(receipt(ALICE, "m.read", "$thread", "$two", 2)).await.unwrap();
    store.set_receipt(receipt(ALICE, "m.read.private", "", "$two", 3)).await.unwrap();
    let last = store.set_receipt(receipt(ALICE, "m.read", "", "$three", 4)).await.unwrap();
    let rows = store
        .sync_room_rows(
            ALICE.into(),
            vec![SyncRoomQuery {
                room_id: "!receipts:contract.test".into(),
                timeline: None,
                receipts: (start, last),
                unread: None,
                members: false,
            }],
        )
        .await
        .unwrap();
    let receipts: Vec<_> = rows[0]
        .receipts
        .iter()
        .map(|r| (r.receipt_type.as_str(), r.thread_id.as_str(), r.event_id.as_str(), r.ts))
        .collect();
    assert_eq!(
        receipts,
        [("m.read", "$thread", "$two", 2), ("m.read.private", "", "$two", 3), ("m.read", "", "$three", 4)]
    );
}

pub async fn presence_is_overwritten(store: Arc<dyn Storage>) {
    assert!(store.get_presence(ALICE.into()).await.unwrap().is_none());
    let row = |state: &str, msg: Option<&str>, ts| PresenceRow {
        user_id: ALICE.into(),
        state: state.into(),
        status_msg: msg.map(str::to_owned),
        last_active_ts: ts,
    };
    let first = store.set_presence(row("online", Some("hi"), 10)).await.unwrap();
    let second = store.set_presence(row("unavailable", None, 20)).await.unwrap();
    assert!(first < second);
    let stored = store.get_presence(ALICE.into()).await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.status_msg, stored.last_active_ts), ("unavailable", None, 20));
    let presence = store.sync_user_rows(initial(ALICE, second)).await.unwrap().presence;
    assert_eq!(presence.len(), 1);
    assert_eq!(presence[0].state, "unavailable");
}

pub async fn filter_ids_are_distinct(store: Arc<dyn Storage>) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            let json = format!(r#"{{"n":{n}}}"#);
            (store.create_filter(ALICE.into(), json.clone()).await.unwrap(), json)
        });
    }
    let created = tasks.join_all().await;
    let ids: BTreeSet<i64> = created.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..10).collect(), "ten distinct ids, from 0");
    for (id, json) in &created {
        assert_eq!(store.get_filter(ALICE.into(), *id).await.unwrap().as_ref(), Some(json));
    }
    assert_eq!(store.create_filter("@bob:contract.test".into(), "{}".into()).await.unwrap(), 0);
    assert!(store.get_filter("@bob:contract.test".into(), 1).await.unwrap().is_none());
    assert!(store.get_filter(ALICE.into(), 10).await.unwrap().is_none());
}
