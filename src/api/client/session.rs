//! Login, logout and refresh (client-server API, "Client Authentication:
//! Login", "Logout", "Refreshing access tokens").

use axum::Router;
use ruma::api::client::{
    session::{
        get_login_types::{
            self,
            v3::{ApplicationServiceLoginType, LoginType, PasswordLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all, refresh_token,
    },
    uiaa::UserIdentifier,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(login_types).ruma(login).ruma(logout).ruma(logout_all).ruma(refresh)
}

async fn login_types(
    _: AppState,
    _: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response, ApiError> {
    Ok(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
        LoginType::ApplicationService(ApplicationServiceLoginType::new()),
    ]))
}

async fn login(state: AppState, req: Ruma<login::v3::Request>) -> Result<login::v3::Response, ApiError> {
    let appservice_id = req.session.as_ref().and_then(|s| s.appservice_id.clone());
    if appservice_id.is_none() {
        state.rate_limits.login.check(&req.client_ip())?;
    }
    let client_ip = req.client_addr.map(|a| a.ip().to_string());
    let body = req.body;
    if let LoginInfo::ApplicationService(info) = &body.login_info {
        return appservice_login(
            &state,
            appservice_id,
            info,
            body.device_id,
            body.initial_device_display_name,
            client_ip,
            body.refresh_token,
        )
        .await;
    }
    let LoginInfo::Password(password) = &body.login_info else {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "only m.login.password is supported",
        ));
    };
    #[allow(deprecated)]
    let user = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (None, Some(user)) => user.clone(),
        (Some(_), _) => {
            return Err(ApiError::forbidden("only user identifiers (m.id.user) are supported"));
        }
        (None, None) => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::MissingParam,
                "an identifier is required",
            ));
        }
    };
    let tokens = state
        .users
        .login_with_password(
            &user,
            &password.password,
            body.device_id,
            body.initial_device_display_name,
            client_ip,
            body.refresh_token,
        )
        .await?;
    let mut response = login::v3::Response::new(tokens.user_id, tokens.access_token, tokens.device_id);
    response.refresh_token = tokens.refresh_token;
    response.expires_in = tokens.expires_in;
    Ok(response)
}

/// `m.login.application_service`: an appservice logs in a user of its
/// namespaces, with its token instead of a password.
async fn appservice_login(
    state: &AppState,
    appservice_id: Option<String>,
    info: &login::v3::ApplicationService,
    device_id: Option<ruma::OwnedDeviceId>,
    display_name: Option<String>,
    client_ip: Option<String>,
    refresh: bool,
) -> Result<login::v3::Response, ApiError> {
    let appservice = appservice_id
        .and_then(|id| state.appservice.all().iter().find(|a| a.id() == id).cloned())
        .ok_or_else(|| ApiError::forbidden("m.login.application_service needs an application service's token"))?;
    #[allow(deprecated)]
    let user = match (&info.identifier, &info.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::MissingParam,
                "a user identifier (m.id.user) is required",
            ));
        }
    };
    let user_id = if user.starts_with('@') {
        ruma::OwnedUserId::try_from(user).map_err(|_| ApiError::invalid_param("not a valid user id"))?
    } else {
        state.users.user_id_for_new_account(&user)?
    };
    if !appservice.is_user_in_namespace(&user_id) {
        return Err(crate::appservice::AppserviceError::NotInNamespace(user_id.to_string()).into());
    }
    let tokens = state.users.login_appservice_user(user_id, device_id, display_name, client_ip, refresh).await?;
    let mut response = login::v3::Response::new(tokens.user_id, tokens.access_token, tokens.device_id);
    response.refresh_token = tokens.refresh_token;
    response.expires_in = tokens.expires_in;
    Ok(response)
}

async fn logout(state: AppState, req: Ruma<logout::v3::Request>) -> Result<logout::v3::Response, ApiError> {
    state.users.logout(req.session()).await?;
    Ok(logout::v3::Response::new())
}

async fn logout_all(state: AppState, req: Ruma<logout_all::v3::Request>) -> Result<logout_all::v3::Response, ApiError> {
    state.users.logout_all(&req.session().user_id).await?;
    Ok(logout_all::v3::Response::new())
}

async fn refresh(
    state: AppState,
    req: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response, ApiError> {
    let tokens = state.users.refresh(&req.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(tokens.access_token);
    response.refresh_token = tokens.refresh_token;
    response.expires_in_ms = tokens.expires_in;
    Ok(response)
}
