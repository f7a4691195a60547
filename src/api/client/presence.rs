//! Presence (client-server API, "Presence").

use std::time::Duration;

use axum::Router;
use ruma::{
    api::client::presence::{get_presence, set_presence},
    presence::PresenceState,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(get).ruma(set)
}

async fn get(state: AppState, req: Ruma<get_presence::v3::Request>) -> Result<get_presence::v3::Response, ApiError> {
    let asker = req.session().user_id.clone();
    let info = state.streams.get_presence(&asker, &req.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(PresenceState::from(info.state.as_str()));
    response.status_msg = info.status_msg;
    response.currently_active = Some(info.currently_active);
    response.last_active_ago = info.last_active_ago.map(Duration::from_millis);
    Ok(response)
}

async fn set(state: AppState, req: Ruma<set_presence::v3::Request>) -> Result<set_presence::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    if req.body.user_id != user {
        return Err(ApiError::forbidden("you cannot set other users' presence"));
    }
    state.streams.set_presence(&user, req.body.presence.as_str(), req.body.status_msg).await?;
    Ok(set_presence::v3::Response::new())
}
