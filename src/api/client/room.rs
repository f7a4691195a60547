//! Room creation and upgrades (client-server API, "Creation", "Room
//! Upgrades").

use axum::Router;
use ruma::{
    api::client::room::{Visibility, create_room, upgrade_room},
    events::StateEventType,
};
use serde_json::Value;

use crate::{
    http::{ApiError, RouterExt, Ruma},
    rooms::{CreateRoom, Preset},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(create).ruma(upgrade)
}

async fn create(state: AppState, req: Ruma<create_room::v3::Request>) -> Result<create_room::v3::Response, ApiError> {
    let creator = req.session().user_id.clone();
    state.rate_limits.room_creation.check(&creator)?;
    let body = req.body;
    let creation_content = match &body.creation_content {
        Some(raw) => match serde_json::from_str::<Value>(raw.json().get()) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ApiError::bad_json("creation_content must be an object")),
        },
        None => Default::default(),
    };
    let mut initial_state = Vec::new();
    for raw in &body.initial_state {
        let event: Value = serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_json("initial_state event without type"))?;
        let key = event.get("state_key").and_then(Value::as_str).unwrap_or("");
        let content = event
            .get("content")
            .cloned()
            .filter(Value::is_object)
            .ok_or_else(|| ApiError::bad_json("initial_state event without content"))?;
        if matches!(kind, "m.room.create" | "m.room.member" | "m.room.power_levels") {
            return Err(ApiError::bad_json(format!("{kind} cannot be given in initial_state")));
        }
        initial_state.push((StateEventType::from(kind), key.to_owned(), content));
    }
    let power_level_override = match &body.power_level_content_override {
        Some(raw) => match serde_json::from_str::<Value>(raw.json().get()) {
            Ok(Value::Object(map)) => Some(map),
            _ => {
                return Err(ApiError::bad_json("power_level_content_override must be an object"));
            }
        },
        None => None,
    };
    let preset = match body.preset.as_ref().map(|p| p.as_str()) {
        None => None,
        Some("private_chat") => Some(Preset::PrivateChat),
        Some("trusted_private_chat") => Some(Preset::TrustedPrivateChat),
        Some("public_chat") => Some(Preset::PublicChat),
        Some(other) => return Err(ApiError::bad_json(format!("unknown preset {other}"))),
    };
    if !body.invite_3pid.is_empty() {
        return Err(ApiError::invalid_param("third-party invites are not supported"));
    }
    let room_id = state
        .federation
        .create_room(CreateRoom {
            creator,
            version: body.room_version,
            preset,
            public: body.visibility == Visibility::Public,
            name: body.name,
            topic: body.topic,
            alias_localpart: body.room_alias_name,
            invite: body.invite,
            is_direct: body.is_direct,
            creation_content,
            initial_state,
            power_level_override,
            room_id: None,
        })
        .await?;
    Ok(create_room::v3::Response::new(room_id))
}

async fn upgrade(
    state: AppState,
    req: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.room_creation.check(&user)?;
    let new_room = state.rooms.upgrade_room(&user, &req.body.room_id, req.body.new_version).await?;
    Ok(upgrade_room::v3::Response::new(new_room))
}
