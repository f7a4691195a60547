//! Push rule evaluation of one message for every member of a 1,000-member
//! room, as `push::PushEvaluation` does it: the event flattened once, then
//! each member's rules (the server defaults) walked with ruma's conditions
//! against a context shared by the room.

use criterion::{Criterion, criterion_group, criterion_main};
use plexus::{
    push::first_match,
    ruma::{
        OwnedUserId, UInt,
        push::{Action, FlattenedJson, PushConditionRoomCtx, Ruleset},
        serde::Raw,
    },
};
use serde_json::json;

const MEMBERS: usize = 1000;

fn evaluate(c: &mut Criterion) {
    let users: Vec<OwnedUserId> =
        (0..MEMBERS).map(|i| format!("@user{i}:plexus.test").try_into().expect("user id")).collect();
    let rules: Vec<Ruleset> = users.iter().map(|u| Ruleset::server_default(u)).collect();
    let event = json!({
        "type": "m.room.message",
        "sender": "@alice:plexus.test",
        "room_id": "!bench:plexus.test",
        "event_id": "$message",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": "the build is green again, shall we deploy before lunch?"},
    });
    let raw: Raw<serde_json::Value> = Raw::new(&event).expect("event serialises");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let room: plexus::ruma::OwnedRoomId = "!bench:plexus.test".try_into().expect("room id");
    c.bench_function("push_eval_1000_members", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let flat = FlattenedJson::from_raw(&raw);
                let mut ctx = PushConditionRoomCtx::new(
                    room.clone(),
                    UInt::from(MEMBERS as u32),
                    users[0].clone(),
                    String::new(),
                );
                let mut notified = 0;
                for (user, rules) in users.iter().zip(&rules) {
                    ctx.user_id = user.clone();
                    ctx.user_display_name = user.localpart().to_owned();
                    if first_match(rules, &flat, &ctx).await.iter().any(Action::should_notify) {
                        notified += 1;
                    }
                }
                assert_eq!(notified, MEMBERS);
            })
        })
    });
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
