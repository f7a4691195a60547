//! Voice over IP (client-server API, "Voice over IP"): the TURN relays a
//! client may use for calls, with credentials for this user.

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use ruma::api::{Metadata, client::voip::get_turn_server_info, path_builder::PathBuilder};
use serde_json::json;

use crate::{
    http::{ApiError, Ruma, RumaResponse},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    // Mounted by hand rather than with `RouterExt::ruma`: without TURN the
    // answer is `{}`, which ruma's response type cannot express.
    get_turn_server_info::v3::Request::PATH_BUILDER
        .all_paths()
        .fold(router, |router, path| router.route(path, get(turn_server)))
}

/// `GET /voip/turnServer`. The spec does not say what to answer when the
/// server has no TURN relay; like Synapse, `{}`, which clients (matrix-js-sdk
/// looks for `uris`) read as "no TURN" without treating it as a failure.
/// MSC4166 proposes 404 `M_NOT_FOUND` instead.
async fn turn_server(
    State(state): State<AppState>,
    req: Ruma<get_turn_server_info::v3::Request>,
) -> Result<Response, ApiError> {
    let session = req.session();
    Ok(match state.calls.turn_credentials(&session.user_id, session.is_guest)? {
        Some(c) => {
            RumaResponse(get_turn_server_info::v3::Response::new(c.username, c.password, c.uris, c.ttl)).into_response()
        }
        None => Json(json!({})).into_response(),
    })
}
