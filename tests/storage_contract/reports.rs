//! `ReportStore`: reports round-trip with their targets, are listed newest
//! first by resolution and in pages, and are resolved once.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    reports::{ReportListing, ReportRow, ReportTarget},
};

fn report(reporter: &str, target: ReportTarget, reason: &str, ts: i64) -> ReportRow {
    ReportRow { reporter: reporter.into(), target, reason: reason.into(), ts }
}

pub async fn reports_round_trip_newest_first(store: Arc<dyn Storage>) {
    let event = ReportTarget::Event { room_id: "!r:x".into(), event_id: "$e".into(), sender: "@spam:x".into() };
    let room = ReportTarget::Room { room_id: "!r:x".into() };
    let user = ReportTarget::User { user_id: "@spam:x".into() };
    let first = store.add_report(report("@a:x", event.clone(), "spam", 10)).await.unwrap();
    let second = store.add_report(report("@b:x", room.clone(), "", 20)).await.unwrap();
    let third = store.add_report(report("@a:x", user.clone(), "rude", 30)).await.unwrap();
    assert!(first < second && second < third, "ids grow");

    let got = store.get_report(first).await.unwrap().expect("stored");
    assert_eq!(got.report, report("@a:x", event, "spam", 10));
    assert_eq!(got.resolved, None);
    assert!(store.get_report(third + 1).await.unwrap().is_none());

    let all = store.list_reports(ReportListing { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [third, second, first]);
    assert_eq!(all[0].report.target, user);
    assert_eq!(all[1].report.target, room);

    let page = store.list_reports(ReportListing { limit: 1, before: Some(third), resolved: None }).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
}

pub async fn reports_are_resolved_once(store: Arc<dyn Storage>) {
    let user = ReportTarget::User { user_id: "@spam:x".into() };
    let open = store.add_report(report("@a:x", user.clone(), "one", 1)).await.unwrap();
    let done = store.add_report(report("@a:x", user, "two", 2)).await.unwrap();

    assert!(store.resolve_report(done, "@admin:x".into(), 5).await.unwrap());
    assert!(!store.resolve_report(done, "@other:x".into(), 6).await.unwrap(), "resolved once");
    assert!(!store.resolve_report(done + 100, "@admin:x".into(), 6).await.unwrap(), "unknown id");
    let got = store.get_report(done).await.unwrap().expect("stored");
    assert_eq!(got.resolved, Some(("@admin:x".to_owned(), 5)), "the first resolver is kept");

    let listing = |resolved| ReportListing { limit: 10, before: None, resolved: Some(resolved) };
    let unresolved = store.list_reports(listing(false)).await.unwrap();
    assert_eq!(unresolved.iter().map(|r| r.id).collect::<Vec<_>>(), [open]);
    let resolved = store.list_reports(listing(true)).await.unwrap();
    assert_eq!(resolved.iter().map(|r| r.id).collect::<Vec<_>>(), [done]);
}
