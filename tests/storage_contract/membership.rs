//! `MembershipStore`: memberships follow member events (with their
//! positions), forgetting, and invites to rooms on other servers.

use std::sync::Arc;

use plexus::storage::Storage;
use ruma::events::room::member::MembershipState;
use serde_json::json;

use crate::fixtures::{Room, outlier};

const ALICE: &str = "@alice:contract.test";
const BOB: &str = "@bob:contract.test";

pub async fn memberships_follow_member_events(store: Arc<dyn Storage>) {
    let mut room = Room::create(&*store, "!members:contract.test", ALICE).await;
    let room_id = room.room_id.clone();
    let mut other = Room::create(&*store, "!other:contract.test", "@carol:contract.test").await;

    let (_, invited_at) = room.member(&*store, BOB, ALICE, "invite").await;
    assert_eq!(
        store.membership(room_id.clone(), BOB.into()).await.unwrap(),
        Some((MembershipState::Invite, invited_at))
    );
    assert_eq!(store.rooms_with_membership(BOB.into(), MembershipState::Invite).await.unwrap(), [room_id.as_str()]);
    assert!(store.rooms_with_membership(BOB.into(), MembershipState::Join).await.unwrap().is_empty());

    let (_, joined_at) = room.join(&*store, BOB).await;
    assert_eq!(store.membership(room_id.clone(), BOB.into()).await.unwrap(), Some((MembershipState::Join, joined_at)));
    assert_eq!(store.room_members_with(room_id.clone(), MembershipState::Join).await.unwrap(), [ALICE, BOB]);
    assert!(store.room_members_with(room_id.clone(), MembershipState::Invite).await.unwrap().is_empty());
    assert!(store.joined_since(room_id.clone(), BOB.into(), invited_at).await.unwrap());
    assert!(!store.joined_since(room_id.clone(), BOB.into(), joined_at).await.unwrap());
    other.join(&*store, BOB).await;
    assert_eq!(
        store.rooms_with_membership(BOB.into(), MembershipState::Join).await.unwrap(),
        [room_id.clone(), other.room_id.clone()]
    );
    let mut sharing = store.users_sharing_rooms(ALICE.into()).await.unwrap();
    sharing.sort();
    assert_eq!(sharing, [ALICE, BOB]);

    // Forgetting is for rooms left.
    assert!(!store.forget_room(room_id.clone(), BOB.into()).await.unwrap());
    let (_, left_at) = room.member(&*store, BOB, BOB, "leave").await;
    assert_eq!(store.membership(room_id.clone(), BOB.into()).await.unwrap(), Some((MembershipState::Leave, left_at)));
    assert_eq!(store.rooms_with_membership(BOB.into(), MembershipState::Leave).await.unwrap(), [room_id.as_str()]);
    assert!(store.forget_room(room_id.clone(), BOB.into()).await.unwrap());
    assert!(store.rooms_with_membership(BOB.into(), MembershipState::Leave).await.unwrap().is_empty());
    assert_eq!(store.users_sharing_rooms(ALICE.into()).await.unwrap(), [ALICE]);
    // Joining again undoes it.
    room.join(&*store, BOB).await;
    assert!(store.rooms_with_membership(BOB.into(), MembershipState::Join).await.unwrap().contains(&room_id));
    assert!(store.membership("!unknown:contract.test".into(), BOB.into()).await.unwrap().is_none());
}

pub async fn remote_invites_round_trip(store: Arc<dyn Storage>) {
    let room_id = "!elsewhere:remote.test";
    let invite = outlier(room_id, "m.room.member", Some(ALICE), "@dave:remote.test", json!({"membership": "invite"}));
    let stripped = json!([{"type": "m.room.name", "state_key": "", "content": {"name": "Elsewhere"}}]).to_string();
    let invited_at = store
        .store_remote_invite(
            invite.clone(),
            ALICE.into(),
            MembershipState::Invite,
            "11".into(),
            stripped.clone(),
            "remote.test".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.membership(room_id.into(), ALICE.into()).await.unwrap(),
        Some((MembershipState::Invite, invited_at))
    );
    assert_eq!(store.rooms_with_membership(ALICE.into(), MembershipState::Invite).await.unwrap(), [room_id]);
    let stored = store.remote_invite(room_id.into(), ALICE.into()).await.unwrap().expect("the invite is kept");
    assert_eq!(stored.event_id, invite.event_id);
    assert_eq!(stored.room_version, "11");
    assert_eq!(stored.stripped_state, stripped);
    assert_eq!(stored.via, "remote.test");
    assert_eq!(store.event_outlier(invite.event_id.clone()).await.unwrap(), Some(true));

    let leave = outlier(room_id, "m.room.member", Some(ALICE), ALICE, json!({"membership": "leave"}));
    let left_at = store.decline_remote_invite(leave.clone(), ALICE.into()).await.unwrap();
    assert!(left_at > invited_at);
    assert_eq!(store.membership(room_id.into(), ALICE.into()).await.unwrap(), Some((MembershipState::Leave, left_at)));
    assert!(store.remote_invite(room_id.into(), ALICE.into()).await.unwrap().is_none());
    assert_eq!(store.get_event(leave.event_id).await.unwrap().unwrap().json, leave.json);

    // A knock is kept the same way.
    let knock = outlier(room_id, "m.room.member", Some(ALICE), ALICE, json!({"membership": "knock"}));
    let knocked_at = store
        .store_remote_invite(
            knock,
            ALICE.into(),
            MembershipState::Knock,
            "11".into(),
            "[]".into(),
            "remote.test".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.membership(room_id.into(), ALICE.into()).await.unwrap(),
        Some((MembershipState::Knock, knocked_at))
    );
}
