//! Account registration and management (client-server API, "Account
//! registration and management", "Current account information", "Adding
//! Account Administrative Contact Information").

use std::sync::Arc;

use axum::Router;
use http::StatusCode;
use ruma::api::{
    client::account::{
        change_password, check_registration_token_validity, deactivate, get_3pids, get_username_availability, register,
        whoami,
    },
    error::ErrorKind,
};

use crate::{
    appservice::Appservice,
    http::{APPSERVICE_DEVICE, ApiError, JsonObject, RouterExt, Ruma},
    services::AppState,
    users::{IssuedTokens, RegisterRequest, Session},
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_adjusting_response(register, leave_out_missing_device)
        .ruma(username_available)
        .ruma(registration_token_validity)
        .ruma(whoami)
        .ruma(change_password)
        .ruma(deactivate)
        .ruma(third_party_ids)
}

/// The application service whose token the request carried.
fn calling_appservice(state: &AppState, session: Option<&Session>) -> Option<Arc<Appservice>> {
    let id = session?.appservice_id.as_deref()?;
    state.appservice.all().iter().find(|a| a.id() == id).cloned()
}

fn exclusive(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message)
}

/// Spec: `device_id` is there only when a device was made; ruma writes
/// `null` after an `inhibit_login` registration, which Synapse leaves out.
fn leave_out_missing_device(body: &mut JsonObject) {
    if body.get("device_id").is_some_and(serde_json::Value::is_null) {
        body.remove("device_id");
    }
}

async fn register(state: AppState, req: Ruma<register::v3::Request>) -> Result<register::v3::Response, ApiError> {
    let appservice = calling_appservice(&state, req.session.as_ref());
    if appservice.is_none() {
        state.rate_limits.registration.check(&req.client_ip())?;
    }
    let client_ip = req.client_addr.map(|a| a.ip().to_string());
    let body = req.body;
    if body.kind == register::RegistrationKind::Guest {
        // Spec: "Register": a guest's registration ignores every field of
        // the body but `initial_device_display_name`.
        let request = RegisterRequest {
            initial_device_display_name: body.initial_device_display_name,
            client_ip,
            ..RegisterRequest::default()
        };
        return Ok(registered(state.users.register_guest(request).await?));
    }
    if let Some(guest_token) = body.guest_access_token.as_deref() {
        let request = RegisterRequest {
            username: body.username,
            password: body.password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            inhibit_login: body.inhibit_login,
            refresh_token: body.refresh_token,
            client_ip,
        };
        return Ok(match state.users.upgrade_guest(guest_token, request, body.auth.as_ref()).await? {
            (_, Some(tokens)) => registered(tokens),
            (user_id, None) => register::v3::Response::new(user_id),
        });
    }
    let requested = body.username.as_deref().map(|name| state.users.user_id_for_new_account(name)).transpose()?;
    if body.login_type == Some(register::LoginType::ApplicationService) {
        // Spec: "Registration": an appservice registers users of its
        // namespaces with its token and this type, without UIA.
        let appservice = appservice.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::MissingToken,
                "m.login.application_service needs an application service's token",
            )
        })?;
        let user_id = requested
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, "`username` is required"))?;
        if !appservice.is_user_in_namespace(&user_id) {
            return Err(exclusive(format!(
                "{user_id} is not in the namespaces of application service {}",
                appservice.id()
            )));
        }
        let request = RegisterRequest {
            username: None,
            password: None,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            inhibit_login: body.inhibit_login,
            refresh_token: body.refresh_token,
            client_ip: client_ip.clone(),
        };
        return Ok(match state.users.register_appservice_user(user_id.clone(), request).await? {
            Some(tokens) => registered(tokens),
            None => register::v3::Response::new(user_id),
        });
    }
    // Spec: exclusive namespaces are checked before user-interactive auth.
    if let Some(user_id) = &requested
        && let Some(owner) = state.appservice.exclusive_owner(user_id)
    {
        return Err(exclusive(format!("{user_id} is reserved by application service {}", owner.id())));
    }
    let request = RegisterRequest {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        client_ip,
    };
    Ok(match state.users.register(request, body.auth.as_ref()).await? {
        (_, Some(tokens)) => registered(tokens),
        (user_id, None) => register::v3::Response::new(user_id),
    })
}

fn registered(tokens: IssuedTokens) -> register::v3::Response {
    let mut response = register::v3::Response::new(tokens.user_id);
    response.access_token = Some(tokens.access_token);
    response.device_id = Some(tokens.device_id);
    response.refresh_token = tokens.refresh_token;
    response.expires_in = tokens.expires_in;
    response
}

async fn username_available(
    state: AppState,
    req: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response, ApiError> {
    let user_id = state.users.user_id_for_new_account(&req.body.username)?;
    if let Some(owner) = state.appservice.exclusive_owner(&user_id) {
        return Err(exclusive(format!("{user_id} is reserved by application service {}", owner.id())));
    }
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
    let mut response = whoami::v3::Response::new(session.user_id.clone(), session.is_guest);
    // An appservice acting without a device has none to report.
    let deviceless = session.appservice_id.is_some() && session.device_id.as_str() == APPSERVICE_DEVICE;
    response.device_id = (!deviceless).then(|| session.device_id.clone());
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
