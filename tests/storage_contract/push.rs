//! `PushStore`: push actions are listed newest first with their read
//! flag, paged by position, forgotten when redacted, and totalled over the
//! rooms a user is joined to.

use std::sync::Arc;

use plexus::storage::{Storage, push::PushActionRow, streams::ReceiptRow};

use crate::fixtures::Room;

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";

fn row(room_id: &str, (event_id, stream): &(String, i64), thread: Option<&str>, highlight: bool) -> PushActionRow {
    PushActionRow {
        user_id: BOB.into(),
        room_id: room_id.into(),
        event_id: event_id.clone(),
        stream_ordering: *stream,
        thread_id: thread.map(str::to_owned),
        highlight,
        actions: r#"["notify"]"#.into(),
        ts: *stream,
    }
}

pub async fn notifications_page_newest_first_with_their_read_flag(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!push:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let mut sent = Vec::new();
    for n in 1..=4 {
        sent.push(room.send(&*store, ALICE, &format!("m{n}")).await);
    }
    let rows: Vec<_> = sent.iter().enumerate().map(|(i, s)| row(&room.room_id, s, None, i % 2 == 1)).collect();
    store.add_push_actions(rows.clone()).await.unwrap();
    store
        .set_receipt(ReceiptRow {
            room_id: room.room_id.clone(),
            user_id: BOB.into(),
            receipt_type: "m.read".into(),
            thread_id: "".into(),
            event_id: sent[1].0.clone(),
            ts: 1,
        })
        .await
        .unwrap();

    let all = store.notifications(BOB.into(), None, 10, false).await.unwrap();
    let listed: Vec<_> = all.iter().map(|n| (n.action.event_id.as_str(), n.read)).collect();
    assert_eq!(
        listed,
        [(&*sent[3].0, false), (&*sent[2].0, false), (&*sent[1].0, true), (&*sent[0].0, true)],
        "newest first; read up to the receipt"
    );
    assert_eq!(all[0].action, rows[3]);
    let page = store.notifications(BOB.into(), Some(sent[2].1), 1, false).await.unwrap();
    assert_eq!(page[0].action.event_id, sent[1].0, "strictly before the position, at most the limit");
    let highlights = store.notifications(BOB.into(), None, 10, true).await.unwrap();
    assert_eq!(highlights.iter().map(|n| n.action.stream_ordering).collect::<Vec<_>>(), [sent[3].1, sent[1].1]);
    assert!(store.notifications(ALICE.into(), None, 10, false).await.unwrap().is_empty());

    assert_eq!(store.unread_notification_total(BOB.into()).await.unwrap(), 2);
    store.remove_push_actions(sent[3].0.clone()).await.unwrap();
    assert_eq!(store.unread_notification_total(BOB.into()).await.unwrap(), 1);
    assert_eq!(store.notifications(BOB.into(), None, 10, false).await.unwrap().len(), 3);
}

pub async fn threaded_receipts_read_only_their_thread(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!threads:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let root = room.send(&*store, ALICE, "root").await;
    let reply = room.send(&*store, ALICE, "reply").await;
    let main = room.send(&*store, ALICE, "main").await;
    store
        .add_push_actions(vec![
            row(&room.room_id, &root, None, false),
            row(&room.room_id, &reply, Some(&root.0), false),
            row(&room.room_id, &main, None, false),
        ])
        .await
        .unwrap();
    store
        .set_receipt(ReceiptRow {
            room_id: room.room_id.clone(),
            user_id: BOB.into(),
            receipt_type: "m.read".into(),
            thread_id: root.0.clone(),
            event_id: reply.0.clone(),
            ts: 1,
        })
        .await
        .unwrap();
    let listed = store.notifications(BOB.into(), None, 10, false).await.unwrap();
    let read: Vec<_> = listed.iter().map(|n| n.read).collect();
    assert_eq!(read, [false, true, false], "the thread's receipt reads the reply only");
    assert_eq!(store.unread_notification_total(BOB.into()).await.unwrap(), 2);
}
