//! Sync response building for a busy user: 20 rooms of 5 members with 50
//! messages each, through the same `sync::sync` the transports call (an
//! initial sync, and an incremental one with one new message).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use plexus::{
    Services,
    config::Config,
    rooms::{CreateRoom, EventDraft, Preset},
    ruma::{OwnedUserId, api::client::filter::FilterDefinition, events::TimelineEventType},
    sync::SyncRequest,
};
use serde_json::json;

const ROOMS: usize = 20;
const OTHERS: usize = 4;
const MESSAGES: usize = 50;

fn request(user: &OwnedUserId, since: Option<String>) -> SyncRequest {
    SyncRequest {
        user_id: user.clone(),
        device_id: "BENCH".into(),
        since,
        filter: FilterDefinition::default().into(),
        full_state: false,
        set_presence: None,
        timeout: Duration::ZERO,
    }
}

async fn busy_user(services: &Services) -> (OwnedUserId, String) {
    let users = &services.users;
    let busy = users.create_user_directly("busy", None, false).await.expect("user");
    let mut others = Vec::new();
    for i in 0..OTHERS {
        others.push(users.create_user_directly(&format!("other{i}"), None, false).await.expect("user"));
    }
    let mut last_room = None;
    for r in 0..ROOMS {
        let room = services
            .rooms
            .create_room(CreateRoom {
                creator: busy.clone(),
                version: None,
                preset: Some(Preset::PublicChat),
                public: false,
                name: Some(format!("Room {r}")),
                topic: None,
                alias_localpart: None,
                invite: vec![],
                is_direct: false,
                creation_content: Default::default(),
                initial_state: vec![],
                power_level_override: None,
                room_id: None,
            })
            .await
            .expect("room");
        for other in &others {
            services.rooms.join(&room, other, Default::default()).await.expect("join");
        }
        for m in 0..MESSAGES {
            let sender = if m % 3 == 0 { &busy } else { &others[m % OTHERS] };
            let draft = EventDraft::message(
                TimelineEventType::RoomMessage,
                json!({"msgtype": "m.text", "body": format!("message {m} in room {r}")}),
            );
            services.rooms.append_local(&room, sender, draft, None).await.expect("send");
        }
        last_room = Some(room);
    }
    let since = plexus::sync::sync(&services.sync, &request(&busy, None)).await.expect("sync").next_batch;
    let draft = EventDraft::message(TimelineEventType::RoomMessage, json!({"msgtype": "m.text", "body": "news"}));
    services.rooms.append_local(&last_room.expect("a room"), &others[0], draft, None).await.expect("send");
    (busy, since)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.server_name = "plexus.test".try_into().expect("server name");
    config.server.data_dir = dir.path().to_owned();
    let services = runtime.block_on(Services::open(config)).expect("services");
    let (user, since) = runtime.block_on(busy_user(&services));

    c.bench_function("sync: initial, 20 rooms x 50 messages", |b| {
        b.iter(|| runtime.block_on(plexus::sync::sync(&services.sync, &request(&user, None))).expect("sync"))
    });
    c.bench_function("sync: incremental, one new message", |b| {
        b.iter(|| {
            runtime.block_on(plexus::sync::sync(&services.sync, &request(&user, Some(since.clone())))).expect("sync")
        })
    });
    services.db.close();
}

criterion_group!(benches, bench);
criterion_main!(benches);
