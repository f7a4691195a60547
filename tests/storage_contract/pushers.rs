//! `PusherStore`: one pusher per user, app and pushkey, updated in place;
//! other users' copies removed unless appended; pushers gone with their
//! device; queues first in, first out, skipping devices syncing now, and
//! gone with their pusher or their redacted event.

use std::sync::Arc;

use plexus::{
    ruma::{OwnedDeviceId, OwnedUserId},
    storage::{
        Storage,
        pushers::{PushToQueue, PusherRow},
        users::{NewTokens, NewUser},
    },
};

const APP: &str = "org.example.app";

fn user(name: &str) -> String {
    format!("@{name}:contract.test")
}

/// Creates the user (if needed) and logs in one of their devices.
async fn device(store: &dyn Storage, name: &str, device: &str) {
    let user_id: OwnedUserId = user(name).try_into().expect("a valid user id");
    let _ = store
        .create_user(NewUser {
            user_id: user_id.clone(),
            is_guest: false,
            password_hash: None,
            is_admin: false,
            displayname: None,
            registration_token: None,
        })
        .await
        .unwrap();
    let tokens =
        NewTokens { access_hash: format!("{name}-{device}").into_bytes(), access_expires_ts: None, refresh_hash: None };
    store.login_device(user_id, OwnedDeviceId::from(device), None, None, tokens).await.unwrap();
}

fn pusher(name: &str, device: &str, pushkey: &str, url: &str) -> PusherRow {
    PusherRow {
        user_id: user(name),
        device_id: device.into(),
        app_id: APP.into(),
        pushkey: pushkey.into(),
        kind: "http".into(),
        app_display_name: "App".into(),
        device_display_name: device.into(),
        profile_tag: None,
        lang: "en".into(),
        data: format!(r#"{{"url":"{url}"}}"#),
        pushkey_ts: 1_000,
    }
}

fn push(name: &str, skip: &[&str]) -> PushToQueue {
    PushToQueue {
        user_id: user(name),
        actions: r#"["notify"]"#.into(),
        skip_devices: skip.iter().map(|d| d.to_string()).collect(),
    }
}

async fn pushkeys(store: &dyn Storage, name: &str) -> Vec<String> {
    store.pushers(user(name)).await.unwrap().into_iter().map(|p| p.pusher.pushkey).collect()
}

pub async fn pushers_are_set_updated_and_replaced(store: Arc<dyn Storage>) {
    device(&*store, "bob", "PHONE").await;
    device(&*store, "bob", "TABLET").await;
    device(&*store, "carol", "PHONE").await;

    let first = store.set_pusher(pusher("bob", "PHONE", "k1", "https://a/"), false).await.unwrap();
    store.set_pusher(pusher("bob", "TABLET", "k2", "https://a/"), false).await.unwrap();
    let again = store.set_pusher(pusher("bob", "TABLET", "k1", "https://b/"), false).await.unwrap();
    assert_eq!(first, again, "setting the same app and pushkey updates the pusher in place");
    let listed = store.pushers(user("bob")).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.pusher.pushkey.as_str()).collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(listed[0].pusher, pusher("bob", "TABLET", "k1", "https://b/"), "every field is replaced");

    // Carol appends the same pushkey: bob keeps his.
    store.set_pusher(pusher("carol", "PHONE", "k1", "https://c/"), true).await.unwrap();
    assert_eq!(pushkeys(&*store, "bob").await, ["k1", "k2"]);
    // Without `append`, bob's copy of k2 goes to carol alone.
    store.set_pusher(pusher("carol", "PHONE", "k2", "https://c/"), false).await.unwrap();
    assert_eq!(pushkeys(&*store, "bob").await, ["k1"]);
    assert_eq!(pushkeys(&*store, "carol").await, ["k1", "k2"]);
    let mut users = store.users_with_pushers().await.unwrap();
    users.sort();
    assert_eq!(users, [user("bob"), user("carol")]);

    assert!(store.delete_pusher(user("carol"), APP.into(), "k1".into()).await.unwrap());
    assert!(!store.delete_pusher(user("carol"), APP.into(), "k1".into()).await.unwrap(), "deleted once");
    assert_eq!(pushkeys(&*store, "carol").await, ["k2"]);
    assert_eq!(pushkeys(&*store, "bob").await, ["k1"], "only the user's own pusher is deleted");
}

pub async fn pushers_go_with_their_device(store: Arc<dyn Storage>) {
    for d in ["PHONE", "TABLET", "LAPTOP"] {
        device(&*store, "bob", d).await;
    }
    device(&*store, "carol", "PHONE").await;
    let phone = store.set_pusher(pusher("bob", "PHONE", "phone", "https://a/"), false).await.unwrap();
    store.set_pusher(pusher("bob", "TABLET", "tablet", "https://a/"), false).await.unwrap();
    store.set_pusher(pusher("bob", "LAPTOP", "laptop", "https://a/"), false).await.unwrap();
    store.set_pusher(pusher("carol", "PHONE", "carol", "https://a/"), false).await.unwrap();
    store.queue_pushes("$e".into(), "!r:contract.test".into(), vec![push("bob", &[])], 1).await.unwrap();

    store.delete_devices(user("bob").try_into().unwrap(), vec!["PHONE".into()]).await.unwrap();
    assert_eq!(pushkeys(&*store, "bob").await, ["tablet", "laptop"]);
    assert!(store.next_queued_push(phone).await.unwrap().is_none(), "the queue goes with its pusher");
    store.delete_other_devices(user("bob").try_into().unwrap(), Some("LAPTOP".into())).await.unwrap();
    assert_eq!(pushkeys(&*store, "bob").await, ["laptop"]);
    store.deactivate_user(user("bob").try_into().unwrap()).await.unwrap();
    assert!(pushkeys(&*store, "bob").await.is_empty());
    assert_eq!(pushkeys(&*store, "carol").await, ["carol"], "other users keep theirs");
}

pub async fn queues_are_fifo_per_pusher(store: Arc<dyn Storage>) {
    device(&*store, "bob", "PHONE").await;
    device(&*store, "bob", "LAPTOP").await;
    device(&*store, "carol", "PHONE").await;
    let phone = store.set_pusher(pusher("bob", "PHONE", "phone", "https://a/"), false).await.unwrap();
    let laptop = store.set_pusher(pusher("bob", "LAPTOP", "laptop", "https://a/"), false).await.unwrap();
    let carol = store.set_pusher(pusher("carol", "PHONE", "carol", "https://a/"), false).await.unwrap();
    let room = "!r:contract.test".to_owned();

    // The laptop is syncing: it gets nothing. Dave has no pusher.
    let queued = store
        .queue_pushes(
            "$1".into(),
            room.clone(),
            vec![push("bob", &["LAPTOP"]), push("carol", &[]), push("dave", &[])],
            10,
        )
        .await
        .unwrap();
    assert_eq!(queued, [phone, carol]);
    store.queue_pushes("$2".into(), room.clone(), vec![push("bob", &[])], 20).await.unwrap();
    assert_eq!(store.queued_pushers().await.unwrap(), [phone, laptop, carol]);

    let (pusher, first) = store.next_queued_push(phone).await.unwrap().expect("the phone has pushes");
    assert_eq!((pusher.id, pusher.pusher.pushkey.as_str()), (phone, "phone"));
    assert_eq!((first.event_id.as_str(), first.room_id.as_str()), ("$1", room.as_str()));
    assert_eq!((first.actions.as_str(), first.queued_ts), (r#"["notify"]"#, 10));
    assert_eq!(store.next_queued_push(phone).await.unwrap().unwrap().1, first, "the head stays until removed");
    store.remove_queued_push(first.id).await.unwrap();
    assert_eq!(store.next_queued_push(phone).await.unwrap().unwrap().1.event_id, "$2");
    assert_eq!(store.next_queued_push(laptop).await.unwrap().unwrap().1.event_id, "$2");

    // A redacted event no longer notifies: its queued pushes go too.
    store.remove_push_actions("$2".into()).await.unwrap();
    assert!(store.next_queued_push(phone).await.unwrap().is_none());
    assert!(store.next_queued_push(laptop).await.unwrap().is_none());

    // A rejected pusher goes with its queue.
    store.delete_pusher_by_id(carol).await.unwrap();
    assert!(store.next_queued_push(carol).await.unwrap().is_none());
    assert!(store.queued_pushers().await.unwrap().is_empty());
    assert!(pushkeys(&*store, "carol").await.is_empty());
}
