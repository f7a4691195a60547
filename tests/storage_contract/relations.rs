//! `RelationStore`: relations recorded with their events (never for
//! outliers), paged by type, summed up for bundled aggregations with
//! redacted relations left out, and thread roots by latest activity.

use std::sync::Arc;

use plexus::storage::{
    Storage,
    relations::{RelationQuery, ThreadSummary},
    rooms::Direction,
};
use serde_json::{Value, json};

use crate::fixtures::Room;

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";

fn relates(rel_type: &str, parent: &str) -> Value {
    json!({"m.relates_to": {"rel_type": rel_type, "event_id": parent}})
}

async fn relate(room: &mut Room, store: &dyn Storage, kind: &str, sender: &str, content: Value) -> (String, i64) {
    let event = room.build(kind, None, sender, content);
    let id = event.event_id.clone();
    (id, room.append(store, event).await)
}

fn query(room: &Room, parent: &str) -> RelationQuery {
    RelationQuery {
        room_id: room.room_id.clone(),
        parent: parent.to_owned(),
        rel_type: None,
        event_type: None,
        from: None,
        to: None,
        direction: Direction::Backward,
        limit: 10,
        depth: 1,
    }
}

fn ids(events: &[plexus::storage::rooms::StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

pub async fn relations_are_paged_and_filtered(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!relations:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let (parent, _) = room.send(&*store, ALICE, "parent").await;
    let mut annotation = relates("m.annotation", &parent);
    annotation["m.relates_to"]["key"] = json!("👍");
    let (reaction, _) = relate(&mut room, &*store, "m.reaction", BOB, annotation).await;
    let (reply, _) = relate(&mut room, &*store, "m.room.message", BOB, relates("m.thread", &parent)).await;
    let (reference, _) = relate(&mut room, &*store, "m.room.message", ALICE, relates("m.reference", &parent)).await;
    // Not relations: a plain message and an outlier relating to the parent.
    room.send(&*store, BOB, "unrelated").await;
    let outlier = room.outlier("m.reaction", None, BOB, relates("m.annotation", &parent));
    store.store_outliers(vec![outlier]).await.unwrap();

    let all = store.relations(query(&room, &parent)).await.unwrap();
    assert_eq!(ids(&all), [reference.as_str(), reply.as_str(), reaction.as_str()], "newest first");
    let forward = store.relations(RelationQuery { direction: Direction::Forward, ..query(&room, &parent) }).await;
    assert_eq!(ids(&forward.unwrap()), [reaction.as_str(), reply.as_str(), reference.as_str()]);

    let first = store.relations(RelationQuery { limit: 2, ..query(&room, &parent) }).await.unwrap();
    assert_eq!(ids(&first), [reference.as_str(), reply.as_str()]);
    let from = Some(first[1].stream_ordering - 1);
    let rest = store.relations(RelationQuery { from, ..query(&room, &parent) }).await.unwrap();
    assert_eq!(ids(&rest), [reaction.as_str()]);

    let threads = store.relations(RelationQuery { rel_type: Some("m.thread".into()), ..query(&room, &parent) }).await;
    assert_eq!(ids(&threads.unwrap()), [reply.as_str()]);
    let messages =
        store.relations(RelationQuery { event_type: Some("m.room.message".into()), ..query(&room, &parent) }).await;
    assert_eq!(ids(&messages.unwrap()), [reference.as_str(), reply.as_str()]);

    // A reaction to the thread reply is a relation of a relation.
    let (nested, _) = relate(&mut room, &*store, "m.reaction", ALICE, relates("m.annotation", &reply)).await;
    let direct = store.relations(query(&room, &parent)).await.unwrap();
    assert!(!ids(&direct).contains(&nested.as_str()));
    let deep = store.relations(RelationQuery { depth: 3, ..query(&room, &parent) }).await.unwrap();
    assert_eq!(ids(&deep)[0], nested);
    let reactions = RelationQuery { depth: 3, event_type: Some("m.reaction".into()), ..query(&room, &parent) };
    assert_eq!(ids(&store.relations(reactions).await.unwrap()), [nested.as_str(), reaction.as_str()]);
}

pub async fn summaries_leave_out_redacted_relations(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!summaries:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let (parent, _) = room.send(&*store, ALICE, "parent").await;
    let (lonely, _) = room.send(&*store, ALICE, "no relations").await;
    let edit = |body: &str| {
        let mut content = relates("m.replace", &parent);
        content["m.new_content"] = json!({"msgtype": "m.text", "body": body});
        content
    };
    let (first_edit, _) = relate(&mut room, &*store, "m.room.message", ALICE, edit("first")).await;
    let (second_edit, _) = relate(&mut room, &*store, "m.room.message", ALICE, edit("second")).await;
    // Not valid edits: another sender, another type.
    relate(&mut room, &*store, "m.room.message", BOB, edit("bob's")).await;
    relate(&mut room, &*store, "m.sticker", ALICE, edit("sticker")).await;
    let (reply_one, _) = relate(&mut room, &*store, "m.room.message", BOB, relates("m.thread", &parent)).await;
    let (reply_two, _) = relate(&mut room, &*store, "m.room.message", BOB, relates("m.thread", &parent)).await;
    let (reference, _) = relate(&mut room, &*store, "m.room.message", BOB, relates("m.reference", &parent)).await;

    // Relations from another room do not count.
    let mut elsewhere = Room::create(&*store, "!elsewhere:contract.test", BOB).await;
    relate(&mut elsewhere, &*store, "m.room.message", BOB, relates("m.thread", &parent)).await;
    relate(&mut elsewhere, &*store, "m.room.message", BOB, relates("m.reference", &parent)).await;
    let foreign_threads = store.thread_roots(elsewhere.room_id.clone(), None, None, 10).await.unwrap();
    assert!(foreign_threads.is_empty(), "the root is not in that room");

    let summaries = store.relation_summaries(vec![parent.clone(), lonely], ALICE.into()).await.unwrap();
    assert_eq!(summaries.len(), 1, "an event without relations has no summary");
    let summary = &summaries[0];
    assert_eq!(summary.parent, parent);
    assert_eq!(summary.latest_edit.as_deref(), Some(second_edit.as_str()));
    assert_eq!(summary.thread, Some(ThreadSummary { count: 2, latest_event: reply_two.clone(), participated: false }));
    assert_eq!(summary.references, [reference]);
    let for_bob = store.relation_summaries(vec![parent.clone()], BOB.into()).await.unwrap();
    assert!(for_bob[0].thread.as_ref().unwrap().participated);

    for target in [&second_edit, &reply_two] {
        let mut redaction = room.build("m.room.redaction", None, ALICE, json!({"redacts": target}));
        redaction.redaction = Some((target.to_string(), json!({"content": {}}).to_string()));
        room.append(&*store, redaction).await;
    }
    let summaries = store.relation_summaries(vec![parent.clone()], ALICE.into()).await.unwrap();
    assert_eq!(summaries[0].latest_edit.as_deref(), Some(first_edit.as_str()), "the previous edit again");
    assert_eq!(summaries[0].thread, Some(ThreadSummary { count: 1, latest_event: reply_one, participated: false }));
}

pub async fn thread_roots_follow_latest_activity(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!threads:contract.test", ALICE).await;
    room.join(&*store, BOB).await;
    let (alices, _) = room.send(&*store, ALICE, "alice's thread").await;
    let (bobs, _) = room.send(&*store, BOB, "bob's thread").await;
    relate(&mut room, &*store, "m.room.message", BOB, relates("m.thread", &bobs)).await;
    let (_, latest) = relate(&mut room, &*store, "m.room.message", BOB, relates("m.thread", &alices)).await;

    let roots = store.thread_roots(room.room_id.clone(), None, None, 10).await.unwrap();
    let root_ids: Vec<&str> = roots.iter().map(|r| r.root.event_id.as_str()).collect();
    assert_eq!(root_ids, [alices.as_str(), bobs.as_str()], "the latest activity first");
    assert_eq!(roots[0].latest_position, latest);
    let page = store.thread_roots(room.room_id.clone(), None, Some(latest - 1), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].root.event_id, bobs);

    // Alice started one thread and replied to none.
    let mine = store.thread_roots(room.room_id.clone(), Some(ALICE.into()), None, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].root.event_id, alices);
    let bobs_threads = store.thread_roots(room.room_id.clone(), Some(BOB.into()), None, 10).await.unwrap();
    assert_eq!(bobs_threads.len(), 2);
}
