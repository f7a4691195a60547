//! Spaces: `GET /rooms/{roomId}/hierarchy` over a tree of local rooms —
//! the depth-first order, `suggested_only`, `max_depth`, paging with
//! `from`, rooms a user may not preview, removed links and cycles. The
//! walk across servers is in `tests/federation.rs`.

mod common;

use common::{TestServer, TestUser, assert_error, enc};
use serde_json::{Value, json};

/// Creates a room with a name (and `extra` createRoom fields).
async fn named_room(server: &TestServer, user: &TestUser, name: &str, extra: Value) -> String {
    let mut body = json!({ "name": name, "preset": "public_chat" });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    server.create_room(&user.access_token, body).await
}

async fn space(server: &TestServer, user: &TestUser, name: &str) -> String {
    named_room(server, user, name, json!({ "creation_content": { "type": "m.space" } })).await
}

/// Links `child` under `space` with the given `m.space.child` content.
async fn link(server: &TestServer, user: &TestUser, space: &str, child: &str, content: Value) {
    let (status, body) = server.put_state(&user.access_token, space, "m.space.child", child, content).await;
    assert_eq!(status, 200, "{body}");
}

async fn hierarchy(server: &TestServer, user: &TestUser, room: &str, query: &str) -> (u16, Value) {
    server.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy?{query}", enc(room)), Some(&user.access_token)).await
}

/// The names of the rooms of a page, in order.
fn names(page: &Value) -> Vec<String> {
    page["rooms"].as_array().expect("rooms").iter().map(|r| r["name"].as_str().unwrap_or("?").to_owned()).collect()
}

fn room_entry<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["rooms"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name} in {page}"))
}

/// A space `Top` with `One` (order a), the sub-space `Sub` (order b,
/// suggested) and `Two` (order c); `Sub` holds `Three` (suggested), `Four`
/// and a link back up to `Top`; a removed link and a link to a room no
/// server here knows. Returns the space's id.
async fn tree(server: &TestServer, alice: &TestUser) -> String {
    let top = space(server, alice, "Top").await;
    let sub = space(server, alice, "Sub").await;
    let one = named_room(server, alice, "One", json!({ "topic": "the first" })).await;
    let two = named_room(server, alice, "Two", json!({})).await;
    let three = named_room(server, alice, "Three", json!({})).await;
    let four = named_room(server, alice, "Four", json!({})).await;
    let gone = named_room(server, alice, "Gone", json!({})).await;
    let via = json!(["plexus.test"]);
    link(server, alice, &top, &two, json!({ "via": via, "order": "c" })).await;
    link(server, alice, &top, &one, json!({ "via": via, "order": "a" })).await;
    link(server, alice, &top, &sub, json!({ "via": via, "order": "b", "suggested": true })).await;
    link(server, alice, &top, &gone, json!({ "via": via, "order": "0" })).await;
    link(server, alice, &top, &gone, json!({})).await; // removed again
    link(server, alice, &top, "!nowhere:elsewhere.test", json!({ "via": ["elsewhere.test"], "order": "d" })).await;
    link(server, alice, &sub, &three, json!({ "via": via, "order": "a", "suggested": true })).await;
    link(server, alice, &sub, &four, json!({ "via": via, "order": "b" })).await;
    link(server, alice, &sub, &top, json!({ "via": via, "order": "c" })).await;
    top
}

#[tokio::test]
async fn a_space_tree_is_walked_depth_first_in_the_spec_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let top = tree(&server, &alice).await;

    let (status, page) = hierarchy(&server, &bob, &top, "").await;
    assert_eq!(status, 200, "{page}");
    // Each room once (the link back to Top is not followed again); the
    // removed link and the room nobody can describe are left out.
    assert_eq!(names(&page), ["Top", "One", "Sub", "Three", "Four", "Two"]);
    assert!(page.get("next_batch").is_none(), "{page}");

    let top_entry = room_entry(&page, "Top");
    assert_eq!(top_entry["room_id"], top.as_str());
    assert_eq!(top_entry["room_type"], "m.space");
    // An absent join rule means public (ruma leaves the default out).
    assert!(matches!(top_entry.get("join_rule").and_then(Value::as_str), None | Some("public")), "{top_entry}");
    assert_eq!(top_entry["num_joined_members"], 1);
    assert_eq!(top_entry["world_readable"], false);
    assert_eq!(top_entry["guest_can_join"], false);
    let children = top_entry["children_state"].as_array().unwrap();
    // The four valid links, removed one excluded, in the spec's order; each a
    // stripped state event with its origin_server_ts.
    let keys: Vec<&str> = children.iter().map(|c| c["state_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 4, "{children:?}");
    assert_eq!(keys[3], "!nowhere:elsewhere.test");
    for child in children {
        assert_eq!(child["type"], "m.space.child");
        assert_eq!(child["sender"], alice.user_id.as_str());
        assert!(child["origin_server_ts"].as_u64().is_some(), "{child}");
        assert!(child["content"]["via"].as_array().is_some_and(|v| !v.is_empty()), "{child}");
        assert!(child.get("event_id").is_none(), "stripped: {child}");
    }
    let one = room_entry(&page, "One");
    assert_eq!(one["topic"], "the first");
    assert!(one.get("room_type").is_none(), "{one}");
    assert_eq!(one["children_state"], json!([]));

    // suggested_only follows the suggested links only.
    let (status, page) = hierarchy(&server, &bob, &top, "suggested_only=true").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Top", "Sub", "Three"]);
    assert_eq!(room_entry(&page, "Top")["children_state"].as_array().unwrap().len(), 1);

    // max_depth bounds how far the walk goes down.
    let (_, page) = hierarchy(&server, &bob, &top, "max_depth=1").await;
    assert_eq!(names(&page), ["Top", "One", "Sub", "Two"]);
    let (_, page) = hierarchy(&server, &bob, &top, "max_depth=0").await;
    assert_eq!(names(&page), ["Top"]);
}

#[tokio::test]
async fn pages_of_a_hierarchy_follow_from_tokens() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let top = tree(&server, &alice).await;

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    let mut first_token = None;
    for _ in 0..10 {
        let query = match &from {
            Some(token) => format!("limit=2&from={}", enc(token)),
            None => "limit=2".to_owned(),
        };
        let (status, page) = hierarchy(&server, &alice, &top, &query).await;
        assert_eq!(status, 200, "{page}");
        let got = names(&page);
        assert!(got.len() <= 2, "{page}");
        seen.extend(got);
        from = page["next_batch"].as_str().map(str::to_owned);
        first_token.get_or_insert(from.clone());
        if from.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["Top", "One", "Sub", "Three", "Four", "Two"]);

    // The same request gives the same token.
    let (_, again) = hierarchy(&server, &alice, &top, "limit=2").await;
    let token = again["next_batch"].as_str().expect("a next page").to_owned();
    assert_eq!(Some(Some(token.clone())), first_token);

    // A token cannot change suggested_only or max_depth, nor be made up.
    let changed = hierarchy(&server, &alice, &top, &format!("limit=2&suggested_only=true&from={}", enc(&token))).await;
    assert_error(&changed, 400, "M_INVALID_PARAM");
    let changed = hierarchy(&server, &alice, &top, &format!("limit=2&max_depth=1&from={}", enc(&token))).await;
    assert_error(&changed, 400, "M_INVALID_PARAM");
    assert_error(&hierarchy(&server, &alice, &top, "from=garbage").await, 400, "M_INVALID_PARAM");
    assert_error(&hierarchy(&server, &alice, &top, "limit=0").await, 400, "M_INVALID_PARAM");
    // A token of another space's walk does not continue this one.
    let other = space(&server, &alice, "Other").await;
    let wrong = hierarchy(&server, &alice, &other, &format!("limit=2&from={}", enc(&token))).await;
    assert_error(&wrong, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn rooms_a_user_may_not_preview_are_left_out() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let top = space(&server, &alice, "Top").await;
    let secret = named_room(&server, &alice, "Secret", json!({ "preset": "private_chat" })).await;
    let members_only = named_room(
        &server,
        &alice,
        "Members",
        json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": top }] },
            }],
        }),
    )
    .await;
    let readable = named_room(
        &server,
        &alice,
        "Readable",
        json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": "world_readable" },
            }],
        }),
    )
    .await;
    let via = json!(["plexus.test"]);
    link(&server, &alice, &top, &secret, json!({ "via": via, "order": "a" })).await;
    link(&server, &alice, &top, &members_only, json!({ "via": via, "order": "b" })).await;
    link(&server, &alice, &top, &readable, json!({ "via": via, "order": "c" })).await;

    // Alice is in every room.
    let (_, page) = hierarchy(&server, &alice, &top, "").await;
    assert_eq!(names(&page), ["Top", "Secret", "Members", "Readable"]);
    let members = room_entry(&page, "Members");
    assert_eq!(members["join_rule"], "restricted");
    assert_eq!(members["allowed_room_ids"], json!([top]));
    assert_eq!(room_entry(&page, "Readable")["world_readable"], true);

    // Bob sees the links, but only rooms he may preview.
    let (_, page) = hierarchy(&server, &bob, &top, "").await;
    assert_eq!(names(&page), ["Top", "Readable"]);
    assert_eq!(room_entry(&page, "Top")["children_state"].as_array().unwrap().len(), 3);

    // Joined to the space, he may join the restricted room: he sees it.
    assert_eq!(server.join(&bob.access_token, &top).await.0, 200);
    let (_, page) = hierarchy(&server, &bob, &top, "").await;
    assert_eq!(names(&page), ["Top", "Members", "Readable"]);

    // Invited to the secret room, he sees it too.
    let (status, body) =
        server.room_post(&alice.access_token, &secret, "invite", json!({ "user_id": bob.user_id })).await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = hierarchy(&server, &bob, &top, "").await;
    assert_eq!(names(&page), ["Top", "Secret", "Members", "Readable"]);
}

#[tokio::test]
async fn a_root_that_cannot_be_previewed_or_is_unknown_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let hidden = named_room(&server, &alice, "Hidden", json!({ "preset": "private_chat" })).await;
    let (status, page) = hierarchy(&server, &alice, &hidden, "").await;
    assert_eq!((status, names(&page)), (200, vec!["Hidden".to_owned()]));
    assert_error(&hierarchy(&server, &bob, &hidden, "").await, 403, "M_FORBIDDEN");
    assert_error(&hierarchy(&server, &bob, "!unknown:plexus.test", "").await, 404, "M_NOT_FOUND");
}
