//! Push rules, pushers and notifications (client-server API, "Push
//! notifications": "Push rules: API", "Client behaviour" (pushers),
//! "Listing notifications").

use axum::Router;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::push::{
        delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
        set_pushrule_enabled,
    },
    serde::Raw,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    push::rules,
    services::AppState,
};

/// `GET /notifications` pages hold at most this many.
const MAX_NOTIFICATIONS_PAGE: usize = 100;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(all_rules)
        .ruma(global_rules)
        .ruma(get_rule)
        .ruma(set_rule)
        .ruma(delete_rule)
        .ruma(get_enabled)
        .ruma(set_enabled)
        .ruma(get_actions)
        .ruma(set_actions)
        .ruma(notifications)
        .ruma(pushers)
        .ruma(set_pusher)
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
