//! Account registration and management (client-server API, "Account
//! registration and management", "Current account information", "Adding
//! Account Administrative Contact Information").

use axum::Router;
use ruma::api::client::account::{
    change_password, check_registration_token_validity, deactivate, get_3pids, get_username_availability, register,
    whoami,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
    users::{RegisterRequest, UsersError},
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(register)
        .ruma(username_available)
        .ruma(registration_token_validity)
        .ruma(whoami)
        .ruma(change_password)
        .ruma(deactivate)
        .ruma(third_party_ids)
}

async fn register(state: AppState, req: Ruma<register::v3::Request>) -> Result<register::v3::Response, ApiError> {
    state.rate_limits.registration.check(&req.client_ip())?;
    let body = req.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(UsersError::GuestAccessForbidden.into());
    }
    let request = RegisterRequest {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        client_ip: req.client_addr.map(|a| a.ip().to_string()),
    };
    let requested_user = request.username.clone();
    match state.users.register(request, body.auth.as_ref()).await? {
        Some(tokens) => {
            let mut response = register::v3::Response::new(tokens.user_id);
            response.access_token = Some(tokens.access_token);
            response.device_id = Some(tokens.device_id);
            response.refresh_token = tokens.refresh_token;
            response.expires_in = tokens.expires_in;
            Ok(response)
        }
        None => {
            let name = requested_user.unwrap_or_default();
            let user_id = state.users.user_id_for_new_account(&name)?;
            Ok(register::v3::Response::new(user_id))
        }
    }
}

async fn username_available(
    state: AppState,
    req: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response, ApiError> {
    let available = state.users.username_available(&req.body.username).await?;
    Ok(get_username_availability::v3::Response::new(available))
}

async fn registration_token_validity(
    state: AppState,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response, ApiError> {
    let valid = state.users.registration_token_valid(&req.body.token).await?;
    Ok(check_registration_token_validity::v1::Response::new(valid))
}

async fn whoami(_: AppState, req: Ruma<whoami::v3::Request>) -> Result<whoami::v3::Response, ApiError> {
    let session = req.session();
    let mut response = whoami::v3::Response::new(session.user_id.clone(), false);
    response.device_id = Some(session.device_id.clone());
    Ok(response)
}

async fn change_password(
    state: AppState,
    req: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response, ApiError> {
    let session = req.session().clone();
    let body = req.body;
    state.users.change_password(&session, body.new_password, body.logout_devices, body.auth.as_ref()).await?;
    Ok(change_password::v3::Response::new())
}

async fn deactivate(state: AppState, req: Ruma<deactivate::v3::Request>) -> Result<deactivate::v3::Response, ApiError> {
    let session = req.session().clone();
    state.users.deactivate(&session, req.body.auth.as_ref()).await?;
    Ok(deactivate::v3::Response::new(ruma::api::client::account::ThirdPartyIdRemovalStatus::NoSupport))
}

/// Plexus binds no third-party identifiers (email, phone) to accounts, and
/// its capabilities say they cannot be changed (`m.3pid_changes`): every
/// account has none. Clients list them in their settings.
async fn third_party_ids(_: AppState, _: Ruma<get_3pids::v3::Request>) -> Result<get_3pids::v3::Response, ApiError> {
    Ok(get_3pids::v3::Response::new(Vec::new()))
}
