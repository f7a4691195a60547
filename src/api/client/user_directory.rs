//! The user directory (client-server API, "User directory":
//! `POST /user_directory/search`).

use axum::Router;
use ruma::{
    OwnedMxcUri, OwnedUserId,
    api::client::user_directory::search_users::v3::{Request, Response, User},
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(search_users)
}

/// The most users one answer lists.
const MAX_LIMIT: usize = 50;

async fn search_users(state: AppState, req: Ruma<Request>) -> Result<Response, ApiError> {
    let user = req.session().user_id.clone();
    let limit = usize::try_from(req.body.limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let page = state.search.search_users(&user, &req.body.search_term, limit).await?;
    let results = page
        .users
        .into_iter()
        .filter_map(|found| {
            let mut user = User::new(OwnedUserId::try_from(found.user_id).ok()?);
            user.display_name = found.displayname;
            user.avatar_url = found.avatar_url.map(OwnedMxcUri::from);
            Some(user)
        })
        .collect();
    Ok(Response::new(results, page.limited))
}
