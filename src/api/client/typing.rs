//! Typing notifications (client-server API, "Typing Notifications").

use axum::Router;
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(set_typing)
}

async fn set_typing(
    state: AppState,
    req: Ruma<create_typing_event::v3::Request>,
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
