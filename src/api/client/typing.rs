//! Typing notifications (client-server API, "Typing Notifications").

use axum::Router;
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use serde_json::Value;

use crate::{
    http::{ApiError, JsonObject, RouterExt, Ruma},
    services::AppState,
};

/// The timeout of a typing notice that names none, in milliseconds.
/// The spec requires `timeout` with `typing: true`; Synapse (and so
/// clients written against it) does without, and so does this server.
const DEFAULT_TYPING_TIMEOUT_MS: u64 = 30_000;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_with_body(default_timeout, set_typing)
}

fn default_timeout(body: &mut JsonObject) {
    if body.get("typing") == Some(&Value::Bool(true)) && !body.contains_key("timeout") {
        body.insert("timeout".into(), Value::from(DEFAULT_TYPING_TIMEOUT_MS));
    }
}

async fn set_typing(
    state: AppState,
    req: Ruma<create_typing_event::v3::Request>,
    _: JsonObject,
) -> Result<create_typing_event::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    if req.body.user_id != user {
        return Err(ApiError::forbidden("you cannot set typing for other users"));
    }
    let timeout = match req.body.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    state.streams.typing.set(&req.body.room_id, &user, timeout).await?;
    Ok(create_typing_event::v3::Response::new())
}
