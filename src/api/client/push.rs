//! Push rules, pushers and notifications (client-server API, "Push
//! notifications": "Push rules: API", "Client behaviour" (pushers),
//! "Listing notifications").

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
    routing::{any, put},
};
use http::{Method, StatusCode};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::push::{
        delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
        set_pushrule_enabled,
    },
    serde::Raw,
};
use serde_json::Value;

use crate::{
    http::{ApiError, JsonObject, RouterExt, Ruma, TrailingSlash, require_session},
    push::rules,
    services::AppState,
};

/// `GET /notifications` pages hold at most this many.
const MAX_NOTIFICATIONS_PAGE: usize = 100;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = router
        .ruma_slash_terminated(all_rules, || ApiError::unrecognized(StatusCode::NOT_FOUND, "unrecognized request"))
        .ruma_slash_terminated(global_rules, || malformed_rule_path("a scope ends with a slash"))
        .ruma(get_rule)
        .ruma(set_rule)
        .ruma(delete_rule)
        .ruma(get_enabled)
        .ruma(set_enabled)
        .ruma(get_actions)
        .ruma(set_actions)
        .ruma_adjusting_response(notifications, spell_out_profile_tag)
        .ruma(pushers)
        .ruma(set_pusher);
    ["r0", "v3"].into_iter().fold(router, |router, version| {
        let base = format!("/_matrix/client/{version}/pushrules");
        router
            .route(&base, put(no_rule_named).delete(no_rule_named))
            .route(&format!("{base}/global"), put(no_rule_named).delete(no_rule_named))
            .route(&format!("{base}/{{*rest}}"), any(other_rule_path))
    })
}

/// A push rule path with no scope, kind or rule id in it.
async fn no_rule_named() -> ApiError {
    malformed_rule_path("the path names no push rule")
}

/// The push rule paths no endpoint of the spec matched: Synapse answers
/// 400 for an unknown scope, kind or attribute, and lists one kind's rules
/// for `GET /pushrules/global/{kind}/`, which clients and Sytest use.
async fn other_rule_path(State(state): State<AppState>, Path(rest): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let listing = parts.method == Method::GET && parts.extensions.get::<TrailingSlash>().is_some();
    let result = async {
        let session = require_session(&state, &parts).await?;
        let kind = match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["global", kind] if listing && rules::KINDS.contains(kind) => *kind,
            [scope, ..] if *scope != "global" => return Err(malformed_rule_path("unknown scope")),
            ["global", kind, ..] if !rules::KINDS.contains(kind) => return Err(malformed_rule_path("unknown kind")),
            ["global", _] => return Err(malformed_rule_path("a kind ends with a slash")),
            _ => return Err(malformed_rule_path("unknown push rule attribute")),
        };
        let all = state.push.rules(&session.user_id).await?;
        let listed = serde_json::to_value(&*all).map_err(ApiError::internal_with)?.get(kind).cloned();
        Ok(Json(listed.unwrap_or_else(|| serde_json::Value::Array(Vec::new()))))
    };
    match result.await {
        Ok(listed) => listed.into_response(),
        Err(e) => e.into_response(),
    }
}

fn malformed_rule_path(message: &str) -> ApiError {
    ApiError::unrecognized(StatusCode::BAD_REQUEST, message)
}

async fn all_rules(
    state: AppState,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response, ApiError> {
    let rules = state.push.rules(&req.session().user_id).await?;
    Ok(get_pushrules_all::v3::Response::new((*rules).clone()))
}

async fn global_rules(
    state: AppState,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response, ApiError> {
    let rules = state.push.rules(&req.session().user_id).await?;
    Ok(get_pushrules_global_scope::v3::Response::new((*rules).clone()))
}

async fn get_rule(
    state: AppState,
    req: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response, ApiError> {
    let all = state.push.rules(&req.session().user_id).await?;
    let rule = rules::find(&all, &req.body.kind, &req.body.rule_id)?;
    Ok(get_pushrule::v3::Response::new(rule.to_owned().into()))
}

async fn set_rule(
    state: AppState,
    req: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let set_pushrule::v3::Request { rule, before, after, .. } = req.body;
    state.push.change_rules(&user, |all| rules::insert(all, rule, before.as_deref(), after.as_deref())).await?;
    Ok(set_pushrule::v3::Response::new())
}

async fn delete_rule(
    state: AppState,
    req: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.push.change_rules(&user, |all| rules::remove(all, &req.body.kind, &req.body.rule_id)).await?;
    Ok(delete_pushrule::v3::Response::new())
}

async fn get_enabled(
    state: AppState,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response, ApiError> {
    let all = state.push.rules(&req.session().user_id).await?;
    let rule = rules::find(&all, &req.body.kind, &req.body.rule_id)?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

async fn set_enabled(
    state: AppState,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = &req.body;
    state.push.change_rules(&user, |all| rules::set_enabled(all, &body.kind, &body.rule_id, body.enabled)).await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

async fn get_actions(
    state: AppState,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response, ApiError> {
    let all = state.push.rules(&req.session().user_id).await?;
    let rule = rules::find(&all, &req.body.kind, &req.body.rule_id)?;
    Ok(get_pushrule_actions::v3::Response::new(rule.actions().to_vec()))
}

async fn set_actions(
    state: AppState,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let set_pushrule_actions::v3::Request { kind, rule_id, actions, .. } = req.body;
    state.push.change_rules(&user, |all| rules::set_actions(all, &kind, &rule_id, actions)).await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

/// Synapse sends each notification's `profile_tag`, `null` when the
/// matching rule has none, and clients (Sytest) read the key; ruma leaves
/// it out.
fn spell_out_profile_tag(body: &mut JsonObject) {
    if let Some(Value::Array(notifications)) = body.get_mut("notifications") {
        for notification in notifications.iter_mut().filter_map(Value::as_object_mut) {
            notification.entry("profile_tag").or_insert(Value::Null);
        }
    }
}

async fn notifications(
    state: AppState,
    req: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let limit = req.body.limit.map_or(MAX_NOTIFICATIONS_PAGE, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let limit = limit.clamp(1, MAX_NOTIFICATIONS_PAGE);
    let only_highlight = req.body.only.as_deref() == Some("highlight");
    let page = state.push.notifications(&user, req.body.from.as_deref(), limit, only_highlight).await?;
    let next_token = (page.len() == limit).then(|| page.last().map(|n| n.position.to_string())).flatten();
    let mut notifications = Vec::with_capacity(page.len());
    for n in page {
        let raw = serde_json::value::to_raw_value(&n.event).map_err(ApiError::internal_with)?;
        let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(n.ts.max(0) as u64).unwrap_or_default());
        notifications.push(get_notifications::v3::Notification::new(
            n.actions,
            Raw::from_json(raw),
            n.read,
            n.room_id,
            ts,
        ));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(response)
}

async fn pushers(state: AppState, req: Ruma<get_pushers::v3::Request>) -> Result<get_pushers::v3::Response, ApiError> {
    let pushers = state.push.pushers(&req.session().user_id).await?;
    Ok(get_pushers::v3::Response::new(pushers))
}

async fn set_pusher(state: AppState, req: Ruma<set_pusher::v3::Request>) -> Result<set_pusher::v3::Response, ApiError> {
    let session = req.session().clone();
    state.push.set_pusher(&session.user_id, &session.device_id, req.body.action).await?;
    Ok(set_pusher::v3::Response::new())
}
