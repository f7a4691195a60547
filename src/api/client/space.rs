//! Spaces (client-server API, "Spaces": `GET /rooms/{roomId}/hierarchy`).
//! The walk, the rooms a user may preview and the rooms of other servers
//! are the federation service's and the room server's (`rooms::hierarchy`).

use axum::Router;
use ruma::api::client::space::get_hierarchy;

use crate::{
    http::{ApiError, RouterExt, Ruma},
    rooms::HierarchyRequest,
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(hierarchy)
}

async fn hierarchy(
    state: AppState,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let request = HierarchyRequest {
        from: body.from,
        limit: body.limit,
        max_depth: body.max_depth,
        suggested_only: body.suggested_only,
    };
    let page = state.federation.space_hierarchy(&user, &body.room_id, request).await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = page.rooms;
    response.next_batch = page.next_batch;
    Ok(response)
}
