//! Reporting content (client-server API, "Reporting content"): reports of
//! events, rooms and users, rate-limited per user.

use axum::Router;
use ruma::api::client::{reporting::report_user, room::report_content, room::report_room};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(report_event).ruma(report_room).ruma(report_user)
}

async fn report_event(
    state: AppState,
    req: Ruma<report_content::v3::Request>,
) -> Result<report_content::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.report.check(&user)?;
    let body = req.body;
    state.reports.report_event(&user, &body.room_id, &body.event_id, body.reason).await?;
    Ok(report_content::v3::Response::new())
}

async fn report_room(
    state: AppState,
    req: Ruma<report_room::v3::Request>,
) -> Result<report_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.report.check(&user)?;
    state.reports.report_room(&user, &req.body.room_id, req.body.reason).await?;
    Ok(report_room::v3::Response::new())
}

async fn report_user(
    state: AppState,
    req: Ruma<report_user::v3::Request>,
) -> Result<report_user::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.rate_limits.report.check(&user)?;
    state.reports.report_user(&user, &req.body.user_id, req.body.reason).await?;
    Ok(report_user::v3::Response::new())
}
