//! `DelayedEventStore`: a retried transaction and the per-user cap are
//! checked with the insert; a scheduled row is claimed at most once, even
//! by concurrent claimers; restart and cancel touch only scheduled rows.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    delayed_events::{DelayedQuery, DelayedStatus, Finalised, NewDelayedEvent, ScheduleOutcome},
};

fn event(delay_id: &str, txn: Option<&str>, now: i64) -> NewDelayedEvent {
    NewDelayedEvent {
        delay_id: delay_id.to_owned(),
        user_id: "@alice:contract".to_owned(),
        device_id: "DEV".to_owned(),
        txn_id: txn.map(str::to_owned),
        room_id: "!room:contract".to_owned(),
        kind: "m.call.member".to_owned(),
        state_key: Some("@alice:contract_DEV".to_owned()),
        content: "{}".to_owned(),
        delay_ms: 1000,
        now,
    }
}

pub async fn schedules_respect_transactions_and_the_cap(store: Arc<dyn Storage>) {
    assert_eq!(store.schedule_delayed_event(event("a", Some("t1"), 100), 2).await.unwrap(), ScheduleOutcome::Scheduled);
    let retried = store.schedule_delayed_event(event("b", Some("t1"), 200), 2).await.unwrap();
    assert_eq!(retried, ScheduleOutcome::AlreadyScheduled("a".into()));
    assert_eq!(store.schedule_delayed_event(event("c", None, 300), 2).await.unwrap(), ScheduleOutcome::Scheduled);
    let capped = store.schedule_delayed_event(event("d", None, 400), 2).await.unwrap();
    assert_eq!(capped, ScheduleOutcome::LimitReached { next_send_ts: 1100 });
    let all = store.delayed_events_of("@alice:contract".into(), DelayedQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.delay_id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(store.next_delayed_send_ts().await.unwrap(), Some(1100));
}

pub async fn a_scheduled_event_is_claimed_once(store: Arc<dyn Storage>) {
    for i in 0..8 {
        store.schedule_delayed_event(event(&format!("e{i}"), None, i), 100).await.unwrap();
    }
    // Four timers and one `send` action race for the same rows.
    let mut claims = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        claims.push(tokio::spawn(async move { store.claim_due_delayed_events(10_000).await.unwrap() }));
    }
    let single = store.claim_delayed_event("e3".into()).await.unwrap();
    let mut claimed: Vec<String> = single.into_iter().map(|r| r.delay_id).collect();
    for claim in claims {
        claimed.extend(claim.await.unwrap().into_iter().map(|r| r.delay_id));
    }
    claimed.sort();
    assert_eq!(claimed, (0..8).map(|i| format!("e{i}")).collect::<Vec<_>>(), "each row claimed exactly once");
    // Claimed rows are neither restarted nor cancelled; released, they are.
    assert_eq!(store.restart_delayed_event("e0".into(), 50).await.unwrap(), None);
    assert!(!store.cancel_delayed_event("e0".into(), 50).await.unwrap());
    store.release_delayed_event("e0".into()).await.unwrap();
    assert_eq!(store.restart_delayed_event("e0".into(), 50).await.unwrap(), Some(1050));
    // A restart puts every other claim back.
    assert_eq!(store.reschedule_claimed_delayed_events().await.unwrap(), 7);
    let sent = Finalised {
        status: DelayedStatus::Sent,
        reason: "delay",
        event_id: Some("$sent".into()),
        error: None,
        now: 2000,
    };
    let row = store.claim_delayed_event("e1".into()).await.unwrap().expect("scheduled again");
    store.finalise_delayed_event(row.delay_id, sent).await.unwrap();
    let query = DelayedQuery { pending: Some(false), delay_ids: vec![], finalised_limit: 10 };
    let finalised = store.delayed_events_of("@alice:contract".into(), query).await.unwrap();
    assert_eq!(finalised.len(), 1);
    assert_eq!((finalised[0].status, finalised[0].event_id.as_deref()), (DelayedStatus::Sent, Some("$sent")));
    assert_eq!(store.prune_finalised_delayed_events(2001).await.unwrap(), 1);
}

pub async fn a_state_event_cancels_only_other_users_delayed_state(store: Arc<dyn Storage>) {
    store.schedule_delayed_event(event("mine", None, 0), 10).await.unwrap();
    let (room, kind, key) = ("!room:contract".to_owned(), "m.call.member".to_owned(), "@alice:contract_DEV".to_owned());
    let alice = "@alice:contract".to_owned();
    assert!(!store.others_delayed_state_pending(room.clone(), kind.clone(), key.clone(), alice.clone()).await.unwrap());
    let bob = "@bob:contract".to_owned();
    assert!(store.others_delayed_state_pending(room.clone(), kind.clone(), key.clone(), bob.clone()).await.unwrap());
    let cancelled =
        store.cancel_others_delayed_state(room.clone(), kind.clone(), key, bob, "{}".into(), 5).await.unwrap();
    assert_eq!(cancelled, 1);
    let rows =
        store.delayed_events_of(alice, DelayedQuery { finalised_limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((rows[0].status, rows[0].reason.as_deref()), (DelayedStatus::Cancelled, Some("error")));
}
