//! Profiles (client-server API, "Profiles"): display name, avatar URL and
//! the extended profile fields of spec v1.16, stored field by field.

use axum::Router;
use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(get_all).ruma(get_field).ruma(set_field).ruma(delete_field)
}

/// A profile, asked of the user's own server when it is another one.
async fn profile_of(
    state: &AppState,
    user: &ruma::OwnedUserId,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, ApiError> {
    if user.server_name() == state.config.server.server_name || !state.federation.enabled() {
        state.appservice.query_user_if_unknown(user).await?;
        return Ok(state.users.get_profile(user).await?);
    }
    let request = ruma::api::federation::query::get_profile_information::v1::Request::new(user.clone());
    let answer = state.federation.request(user.server_name(), request).await?;
    Ok(answer.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

async fn get_all(state: AppState, req: Ruma<get_profile::v3::Request>) -> Result<get_profile::v3::Response, ApiError> {
    let profile = profile_of(&state, &req.body.user_id).await?;
    Ok(profile.into_iter().collect())
}

async fn get_field(
    state: AppState,
    req: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response, ApiError> {
    let profile = profile_of(&state, &req.body.user_id).await?;
    let field = req.body.field;
    let value = profile.get(field.as_str()).cloned().ok_or_else(|| ApiError::not_found("profile field not set"))?;
    let value = ruma::profile::ProfileFieldValue::new(field.as_str(), value)
        .map_err(|e| ApiError::internal_with(format!("stored profile field is malformed: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

async fn set_field(
    state: AppState,
    req: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response, ApiError> {
    let session = req.session().clone();
    let value = req.body.value;
    let field = value.field_name().as_str().to_owned();
    let json = value.value().into_owned();
    // Clients unset the standard fields with null or, in older habit, an
    // empty string (matrix-sdk and Synapse both do this).
    let unset = json.is_null() || (json.as_str() == Some("") && matches!(field.as_str(), "displayname" | "avatar_url"));
    let json = if unset { None } else { Some(json) };
    state.users.set_profile_field(&session, &req.body.user_id, field.clone(), json).await?;
    announce_profile(&state, &req.body.user_id, &field);
    Ok(set_profile_field::v3::Response::new())
}

async fn delete_field(
    state: AppState,
    req: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response, ApiError> {
    let session = req.session().clone();
    let field = req.body.field.as_str().to_owned();
    state.users.set_profile_field(&session, &req.body.user_id, field.clone(), None).await?;
    announce_profile(&state, &req.body.user_id, &field);
    Ok(delete_profile_field::v3::Response::new())
}

/// A new display name or avatar goes into the user's member event in every
/// room they have joined, in the background: a user in many rooms does not
/// wait for each room's event.
fn announce_profile(state: &AppState, user: &ruma::OwnedUserId, field: &str) {
    if !matches!(field, "displayname" | "avatar_url") {
        return;
    }
    let (state, user) = (state.clone(), user.clone());
    tokio::spawn(async move {
        if let Err(e) = state.rooms.refresh_member_profiles(&user).await {
            tracing::warn!(%user, error = %e, "could not send a profile change into the user's rooms");
        }
    });
}
