//! OpenID (client-server API, "OpenID"): a token the user hands to a third
//! party, which checks it with the federation API's `/openid/userinfo`.

use axum::Router;
use ruma::{api::client::account::request_openid_token, authentication::TokenType};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(request_token)
}

async fn request_token(
    state: AppState,
    req: Ruma<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response, ApiError> {
    let token = state.users.request_openid_token(req.session(), &req.body.user_id).await?;
    Ok(request_openid_token::v3::Response::new(
        token.access_token,
        TokenType::Bearer,
        state.config.server.server_name.clone(),
        token.expires_in,
    ))
}
