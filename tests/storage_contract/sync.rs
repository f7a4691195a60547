//! `SyncStore`: the batched reads of a sync stay within the ranges asked
//! for, and report what changed since a token.

use std::{collections::BTreeSet, sync::Arc};

use plexus::storage::{
    Storage,
    push::PushActionRow,
    streams::ReceiptRow,
    sync::{NotificationCounts, RoomDetailsQuery, SyncRoomQuery, SyncUserQuery},
};

use crate::fixtures::{Room, content_of};

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";

pub async fn room_reads_stay_within_their_ranges(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!sync:contract.test", ALICE).await;
    let (_, bob_joined) = room.join(&*store, BOB).await;
    let mut sent = Vec::new();
    for n in 1..=5 {
        sent.push(room.send(&*store, ALICE, &format!("m{n}")).await);
    }
    // What push evaluation stores for bob: each message notifies, m5 highlights.
    let rows = sent.iter().enumerate().map(|(i, s)| notifies(&room.room_id, s, i == 4)).collect();
    store.add_push_actions(rows).await.unwrap();
    let misc = store.misc_position().await.unwrap();
    let query = SyncRoomQuery {
        room_id: room.room_id.clone(),
        timeline: Some((sent[0].1, sent[3].1, 2)),
        receipts: (misc, misc),
        unread: Some(None),
        members: true,
    };
    let rows = store.sync_room_rows(BOB.into(), vec![query.clone()]).await.unwrap();
    assert_eq!(rows.len(), 1);
    let bodies: Vec<_> =
        rows[0].events.iter().map(|e| content_of(&e.json)["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, ["m4", "m3"], "the newest two in (m1, m4], newest first");
    assert!(rows[0].receipts.is_empty());
    let details = rows[0].details.as_ref().expect("details were asked for");
    let members = details.members.as_ref().unwrap();
    assert_eq!((members.joined_count, members.invited_count), (2, 0));
    assert_eq!(members.heroes, [ALICE, BOB]);
    let unread = details.unread.clone().unwrap();
    assert_eq!(unread.total(), NotificationCounts { notifications: 5, highlights: 1 });
    assert_eq!(unread.receipts, [(String::new(), bob_joined)], "joining counts as reading");
    assert_eq!(unread.counted_until, sent[4].1);

    // Bob reads up to m3: two unread, then three once m6 arrives (counted
    // on from the earlier count).
    let read = store
        .set_receipt(ReceiptRow {
            room_id: room.room_id.clone(),
            user_id: BOB.into(),
            receipt_type: "m.read".into(),
            thread_id: "".into(),
            event_id: sent[2].0.clone(),
            ts: 1,
        })
        .await
        .unwrap();
    let rows = store
        .sync_room_rows(
            BOB.into(),
            vec![SyncRoomQuery { receipts: (misc, read), unread: None, members: false, ..query }],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].receipts.len(), 1);
    assert_eq!((rows[0].receipts[0].user_id.as_str(), rows[0].receipts[0].event_id.as_str()), (BOB, &*sent[2].0));
    assert!(rows[0].details.is_none());

    let room_id = room.room_id.clone();
    let details_query = |unread| RoomDetailsQuery {
        room_id: room_id.clone(),
        state_at: vec![bob_joined - 1, sent[4].1, 0],
        unread: Some(unread),
        members: false,
    };
    let details = store.sync_room_details(BOB.into(), vec![details_query(Some(unread))]).await.unwrap();
    let counted = details[0].unread.clone().unwrap();
    assert_eq!(counted.receipts, [(String::new(), sent[2].1)]);
    assert_eq!(counted.total(), NotificationCounts { notifications: 2, highlights: 1 });
    assert!(details[0].members.is_none());
    let create_group = store.get_event(room.create_id.clone()).await.unwrap().unwrap().state_group;
    let before_bob =
        store.room_events(room.room_id.clone(), bob_joined - 1, None, plexus::storage::rooms::Direction::Backward, 1);
    let before_bob = before_bob.await.unwrap()[0].state_group;
    assert_ne!(before_bob, room.group);
    assert!(create_group > 0);
    assert_eq!(details[0].state_groups, [Some(before_bob), Some(room.group), None]);

    let m6 = room.send(&*store, ALICE, "m6").await;
    room.send(&*store, BOB, "bob's own message does not notify him").await;
    store.add_push_actions(vec![notifies(&room.room_id, &m6, false)]).await.unwrap();
    let details = store.sync_room_details(BOB.into(), vec![details_query(Some(counted.clone()))]).await.unwrap();
    let again = details[0].unread.clone().unwrap();
    assert_eq!(again.total(), NotificationCounts { notifications: 3, highlights: 1 });
    assert!(again.counted_seq > counted.counted_seq);
    // Counting afresh gives the same.
    let afresh = store.sync_room_details(BOB.into(), vec![details_query(None)]).await.unwrap();
    assert_eq!(afresh[0].unread.as_ref().unwrap().total(), again.total());
    assert!(store.sync_room_details(BOB.into(), vec![]).await.unwrap().is_empty());
}

/// Bob's push actions for a message that notifies him.
fn notifies(room_id: &str, (event_id, stream): &(String, i64), highlight: bool) -> PushActionRow {
    PushActionRow {
        user_id: BOB.into(),
        room_id: room_id.into(),
        event_id: event_id.clone(),
        stream_ordering: *stream,
        thread_id: None,
        highlight,
        actions: r#"["notify"]"#.into(),
        ts: 1,
    }
}

pub async fn user_reads_report_what_changed(store: Arc<dyn Storage>) {
    let mut first = Room::create(&*store, "!first:contract.test", ALICE).await;
    let token = (store.events_position().await.unwrap(), store.misc_position().await.unwrap());
    let second = Room::create(&*store, "!second:contract.test", ALICE).await;
    let joined_second = store.get_event(second.head[0].clone()).await.unwrap().unwrap().stream_ordering;
    let (_, message) = first.send(&*store, ALICE, "after the token").await;

    let query = |since: Option<(i64, i64)>, until_events| SyncUserQuery {
        user_id: ALICE.into(),
        device_id: "PHONE".into(),
        since,
        until_events,
        until_misc: token.1,
        presence: false,
        to_device_after: Some(since.map(|(_, misc)| misc)),
    };
    // Initial: every membership.
    let rows = store.sync_user_rows(query(None, message)).await.unwrap();
    let rooms: BTreeSet<_> = rows.memberships_changed.iter().map(|(room, m, _)| (room.as_str(), m.as_str())).collect();
    assert_eq!(rooms, BTreeSet::from([("!first:contract.test", "join"), ("!second:contract.test", "join")]));

    // A stale `until` is raised to the newest membership change, and no further.
    let rows = store.sync_user_rows(query(Some(token), token.0)).await.unwrap();
    assert_eq!(rows.until_events, joined_second);
    assert_eq!(rows.memberships_changed, [("!second:contract.test".to_owned(), "join".to_owned(), joined_second)]);
    assert_eq!(rows.rooms_changed, ["!second:contract.test"], "the message after the bound is not seen");
    assert_eq!(rows.memberships.len(), 2);

    let rows = store.sync_user_rows(query(Some(token), message)).await.unwrap();
    assert_eq!(rows.until_events, message);
    let changed: BTreeSet<_> = rows.rooms_changed.iter().map(String::as_str).collect();
    assert_eq!(changed, BTreeSet::from(["!first:contract.test", "!second:contract.test"]));
    assert!(rows.membership_changes_seen.iter().any(|(user, m)| user == ALICE && m == "join"));

    // Bob joining is a membership change Alice sees, with who shares a room.
    let after = (message, token.1);
    let (_, bob_joined) = first.join(&*store, BOB).await;
    let rows = store.sync_user_rows(query(Some(after), bob_joined)).await.unwrap();
    assert_eq!(rows.membership_changes_seen, [(BOB.to_owned(), "join".to_owned())]);
    let sharing: BTreeSet<_> = rows.users_sharing_rooms.iter().map(String::as_str).collect();
    assert_eq!(sharing, BTreeSet::from([ALICE, BOB]));
    assert_eq!(rows.rooms_changed, ["!first:contract.test"]);
}
