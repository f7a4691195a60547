//! Receipts and read markers (client-server API, "Receipts", "Fully read
//! markers").

use axum::Router;
use ruma::api::client::{
    read_marker::set_read_marker,
    receipt::create_receipt::{self, v3::ReceiptType},
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(receipt).ruma(read_markers)
}

async fn receipt(
    state: AppState,
    req: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let thread = body.thread.as_str().map(str::to_owned);
    match body.receipt_type {
        ReceiptType::FullyRead => {
            state.streams.set_read_markers(&user, &body.room_id, Some(&body.event_id), None, None).await?;
        }
        other => {
            let kind = other.as_str().to_owned();
            if kind != "m.read" && kind != "m.read.private" {
                return Err(ApiError::invalid_param(format!("unknown receipt type {kind}")));
            }
            state.streams.set_receipt(&user, &body.room_id, &kind, &body.event_id, thread).await?;
        }
    }
    Ok(create_receipt::v3::Response::new())
}

async fn read_markers(
    state: AppState,
    req: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = req.body;
    state
        .streams
        .set_read_markers(
            &user,
            &b.room_id,
            b.fully_read.as_ref(),
            b.read_receipt.as_ref(),
            b.private_read_receipt.as_ref(),
        )
        .await?;
    Ok(set_read_marker::v3::Response::new())
}
