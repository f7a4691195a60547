//! Room membership (client-server API, "Room membership", "Joining rooms",
//! "Leaving rooms", "Banning users", "Knocking", "Room members").

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events, invite_user, join_room_by_id, join_room_by_id_or_alias,
            joined_members, joined_rooms, kick_user, leave_room, unban_user,
        },
    },
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

use super::events::raw_events;
use crate::{
    http::{ApiError, JsonObject, RouterExt, Ruma},
    rooms::{JoinRequest, PaginationToken},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_with_body(keep_body, join_by_id)
        .ruma_with_body(keep_body, join_by_id_or_alias)
        .ruma(invite)
        .ruma(leave)
        .ruma(forget)
        .ruma(kick)
        .ruma(ban)
        .ruma(unban)
        .ruma(knock)
        .ruma(members)
        .ruma_adjusting_response(joined_members_list, spell_out_unset_profile)
        .ruma(joined_rooms_list)
}

fn keep_body(_: &mut JsonObject) {}

/// The fields of a join request's body that go into the member event as
/// they are: everything but what the spec gives a meaning of its own
/// (Synapse keeps a client's extra fields in the same way).
fn extra_member_fields(mut body: JsonObject) -> JsonObject {
    for key in ["third_party_signed", "reason", "membership"] {
        body.remove(key);
    }
    body
}

async fn join_by_id(
    state: AppState,
    req: Ruma<join_room_by_id::v3::Request>,
    raw: JsonObject,
) -> Result<join_room_by_id::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.join.check(&user)?;
    let body = req.body;
    let join = JoinRequest { reason: body.reason, extra: extra_member_fields(raw) };
    let room_id = state.federation.join(&user, body.room_id.into(), Vec::new(), join).await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

async fn join_by_id_or_alias(
    state: AppState,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
    raw: JsonObject,
) -> Result<join_room_by_id_or_alias::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.join.check(&user)?;
    let body = req.body;
    if let Ok(alias) = <&ruma::RoomAliasId>::try_from(body.room_id_or_alias.as_str()) {
        state.appservice.query_alias_if_unknown(alias).await?;
    }
    let join = JoinRequest { reason: body.reason, extra: extra_member_fields(raw) };
    let room_id = state.federation.join(&user, body.room_id_or_alias, body.via, join).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

async fn invite(state: AppState, req: Ruma<invite_user::v3::Request>) -> Result<invite_user::v3::Response, ApiError> {
    let sender = req.session().user_id.clone();
    state.rate_limits.invite.check(&sender)?;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = req.body.recipient else {
        return Err(ApiError::invalid_param("third-party invites are not supported"));
    };
    // An unknown user of an appservice's namespace: the appservice may create it first.
    state.appservice.query_user_if_unknown(&recipient.user_id).await?;
    state.federation.invite(&req.body.room_id, &sender, &recipient.user_id, recipient.reason).await?;
    Ok(invite_user::v3::Response::new())
}

async fn leave(state: AppState, req: Ruma<leave_room::v3::Request>) -> Result<leave_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.federation.leave(&req.body.room_id, &user, req.body.reason).await?;
    Ok(leave_room::v3::Response::new())
}

async fn forget(state: AppState, req: Ruma<forget_room::v3::Request>) -> Result<forget_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rooms.forget(&req.body.room_id, &user).await?;
    Ok(forget_room::v3::Response::new())
}

async fn kick(state: AppState, req: Ruma<kick_user::v3::Request>) -> Result<kick_user::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rooms.kick(&req.body.room_id, &user, &req.body.user_id, req.body.reason).await?;
    Ok(kick_user::v3::Response::new())
}

async fn ban(state: AppState, req: Ruma<ban_user::v3::Request>) -> Result<ban_user::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rooms.ban(&req.body.room_id, &user, &req.body.user_id, req.body.reason).await?;
    Ok(ban_user::v3::Response::new())
}

async fn unban(state: AppState, req: Ruma<unban_user::v3::Request>) -> Result<unban_user::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rooms.unban(&req.body.room_id, &user, &req.body.user_id, req.body.reason).await?;
    Ok(unban_user::v3::Response::new())
}

async fn knock(state: AppState, req: Ruma<knock_room::v3::Request>) -> Result<knock_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.join.check(&user)?;
    let body = req.body;
    let room_id = state.federation.knock(&user, body.room_id_or_alias, body.via, body.reason).await?;
    Ok(knock_room::v3::Response::new(room_id))
}

/// `/members`: member events of the room's state (at `at`, when given),
/// filtered by membership.
async fn members(
    state: AppState,
    req: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let room_state = match body.at.as_deref() {
        Some(at) => {
            let token = PaginationToken::parse(at).ok_or_else(|| ApiError::invalid_param("bad `at` token"))?;
            state.rooms.state_at_position(&user, &body.room_id, token).await?
        }
        None => state.rooms.readable_state(&user, &body.room_id).await?,
    };
    let member_ids: Vec<_> = room_state
        .iter()
        .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
        .map(|(_, id)| id.clone())
        .collect();
    let events = state.rooms.get_pdus(member_ids.iter()).await?;
    let mut chunk: Vec<_> = events
        .into_values()
        .filter(|pdu| {
            let membership = pdu.membership();
            let membership = membership.as_ref().map_or("", MembershipState::as_str);
            body.membership.as_ref().is_none_or(|m| m.as_str() == membership)
                && body.not_membership.as_ref().is_none_or(|m| m.as_str() != membership)
        })
        .collect();
    chunk.sort_by(|a, b| a.state_key().cmp(&b.state_key()));
    Ok(get_member_events::v3::Response::new(raw_events(&state, &chunk).await?))
}

/// Synapse lists each member's `display_name` and `avatar_url`, `null`
/// when unset, and clients (Sytest) read both keys; ruma leaves them out.
fn spell_out_unset_profile(body: &mut JsonObject) {
    if let Some(Value::Object(joined)) = body.get_mut("joined") {
        for member in joined.values_mut().filter_map(Value::as_object_mut) {
            member.entry("display_name").or_insert(Value::Null);
            member.entry("avatar_url").or_insert(Value::Null);
        }
    }
}

async fn joined_members_list(
    state: AppState,
    req: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let room_state = state.rooms.readable_state(&user, &req.body.room_id).await?;
    let member_ids: Vec<_> = room_state
        .iter()
        .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
        .map(|(_, id)| id.clone())
        .collect();
    let mut joined = BTreeMap::new();
    for pdu in state.rooms.get_pdus(member_ids.iter()).await?.into_values() {
        if pdu.membership() != Some(MembershipState::Join) {
            continue;
        }
        let content = pdu.content_value();
        let Some(member) = pdu.state_key().and_then(|k| ruma::OwnedUserId::try_from(k).ok()) else {
            continue;
        };
        let mut entry = joined_members::v3::RoomMember::new();
        entry.display_name = content.get("displayname").and_then(Value::as_str).map(str::to_owned);
        entry.avatar_url = content.get("avatar_url").and_then(Value::as_str).map(Into::into);
        joined.insert(member, entry);
    }
    Ok(joined_members::v3::Response::new(joined))
}

async fn joined_rooms_list(
    state: AppState,
    req: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response, ApiError> {
    let rooms = state.rooms.joined_rooms(&req.session().user_id).await?;
    Ok(joined_rooms::v3::Response::new(rooms))
}
