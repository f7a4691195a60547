//! Invited and knocked rooms (client-server API, "Syncing": `rooms.invite`,
//! `rooms.knock`): the stripped state a user sees of a room before joining
//! it, from the room's current state when the room is here, else as the
//! inviting server sent it. Rooms left are the `rooms` section's.

use ruma::{
    OwnedEventId, RoomId,
    api::client::sync::sync_events::v3::{InviteState, InvitedRoom, KnockState, KnockedRoom},
    events::{StateEventType, TimelineEventType},
    serde::Raw,
};
use serde_json::{Value, json};

use super::{super::scope::Scope, raw};
use crate::{rooms::STRIPPED_STATE, sync::SyncError};

/// A room the user is invited to, unless by a user they ignore (spec:
/// "Ignoring Users": servers must not send such invites).
pub async fn invited_room(scope: &Scope<'_>, room: &RoomId) -> Result<Option<InvitedRoom>, SyncError> {
    let state = stripped_state(scope, room).await?;
    if inviter(scope, &state).is_some_and(|sender| scope.ignores(&sender)) {
        return Ok(None);
    }
    Ok(Some(InvitedRoom::from(InviteState::from(state))))
}

/// Who sent the user's membership event among a room's stripped state.
fn inviter<T>(scope: &Scope<'_>, state: &[Raw<T>]) -> Option<String> {
    let field = |event: &Raw<T>, name: &str| event.get_field::<String>(name).ok().flatten();
    state
        .iter()
        .find(|e| {
            field(e, "type").as_deref() == Some("m.room.member")
                && field(e, "state_key").as_deref() == Some(scope.user_id.as_str())
        })
        .and_then(|e| field(e, "sender"))
}

/// A room the user knocked on.
pub async fn knocked_room(scope: &Scope<'_>, room: &RoomId) -> Result<KnockedRoom, SyncError> {
    let mut state = KnockState::new();
    state.events = stripped_state(scope, room).await?;
    Ok(KnockedRoom::from(state))
}

/// The room's stripped state, the user's own membership event and, for an
/// invite, the inviter's membership event: the same state an invitee on
/// another server is sent (`Rooms::invite_state_pdus`), from which clients
/// name a room that has no name after who invited them (matrix-js-sdk
/// otherwise shows "Empty room" for a direct chat invite).
pub async fn stripped_state<T>(scope: &Scope<'_>, room: &RoomId) -> Result<Vec<Raw<T>>, SyncError> {
    let rooms = &scope.syncer.rooms;
    if !rooms.knows_room(room).await? {
        return remote_stripped_state(scope, room).await;
    }
    let current = rooms.current_state(room).await?;
    let mut ids: Vec<OwnedEventId> =
        STRIPPED_STATE.iter().filter_map(|kind| current.get(&(kind.clone(), String::new())).cloned()).collect();
    if let Some(own) = current.get(&(StateEventType::RoomMember, scope.user_id.to_string())) {
        if let Some(own_pdu) = rooms.get_pdu(own).await?
            && own_pdu.sender() != scope.user_id
            && let Some(inviter) = current.get(&(StateEventType::RoomMember, own_pdu.sender().to_string()))
        {
            ids.push(inviter.clone());
        }
        ids.push(own.clone());
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(pdu) = rooms.get_pdu(&id).await? {
            let mut event = json!({
                "type": pdu.kind().to_string(),
                "state_key": pdu.state_key().unwrap_or(""),
                "sender": pdu.sender(),
                "content": pdu.content_value(),
            });
            if *pdu.kind() == TimelineEventType::RoomMember {
                event["event_id"] = json!(pdu.event_id);
                event["origin_server_ts"] = json!(u64::from(pdu.fields.origin_server_ts.0));
            }
            out.push(raw(event));
        }
    }
    Ok(out)
}

/// The stripped state of a room on another server the user is invited to,
/// as its server sent it, and the invite itself.
async fn remote_stripped_state<T>(scope: &Scope<'_>, room: &RoomId) -> Result<Vec<Raw<T>>, SyncError> {
    let db = &scope.syncer.db;
    let user = scope.user_id;
    let Some(invite) = db.remote_invite(room.to_string(), user.to_string()).await? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Raw<T>> = serde_json::from_str::<Vec<Value>>(&invite.stripped_state)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.get("state_key").and_then(Value::as_str) != Some(user.as_str()))
        .map(raw)
        .collect();
    if let Ok(id) = OwnedEventId::try_from(invite.event_id.as_str())
        && let Ok(Some(stored)) = db.get_event(id.to_string()).await
        && let Ok(pdu) = serde_json::from_str::<Value>(&stored.json)
    {
        out.push(raw(json!({
            "type": "m.room.member",
            "state_key": user,
            "sender": pdu.get("sender"),
            "content": pdu.get("content"),
            "event_id": id,
            "origin_server_ts": pdu.get("origin_server_ts"),
        })));
    }
    Ok(out)
}
