//! Server-side key backups (client-server API, "Server-side key backups").

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OwnedRoomId, UInt,
    api::client::backup::{
        RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
        delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
        get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
        get_latest_backup_info, update_backup_version,
    },
};
use serde_json::Value;

use super::events::to_raw;
use crate::{
    e2ee::{BackupKey, BackupSummary},
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(create)
        .ruma(latest)
        .ruma(info)
        .ruma(update)
        .ruma(delete)
        .ruma(put_all)
        .ruma(put_room)
        .ruma(put_session)
        .ruma(get_all)
        .ruma(get_room)
        .ruma(get_session)
        .ruma(delete_all)
        .ruma(delete_room)
        .ruma(delete_session)
}

fn value_of<T>(raw: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

fn count(n: u64) -> UInt {
    UInt::try_from(n).unwrap_or_default()
}

async fn create(
    state: AppState,
    req: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let version = state.e2ee.create_backup(&user, value_of(&req.body.algorithm)?).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

fn summary_parts(
    s: BackupSummary,
) -> Result<(ruma::serde::Raw<ruma::api::client::backup::BackupAlgorithm>, UInt, String, String), ApiError> {
    Ok((to_raw(s.algorithm)?, count(s.count), s.etag, s.version))
}

async fn latest(
    state: AppState,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let (algorithm, count, etag, version) = summary_parts(state.e2ee.backup_info(&user, None).await?)?;
    Ok(get_latest_backup_info::v3::Response::new(algorithm, count, etag, version))
}

async fn info(
    state: AppState,
    req: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let (algorithm, count, etag, version) =
        summary_parts(state.e2ee.backup_info(&user, Some(&req.body.version)).await?)?;
    Ok(get_backup_info::v3::Response::new(algorithm, count, etag, version))
}

async fn update(
    state: AppState,
    req: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.e2ee.update_backup(&user, &req.body.version, value_of(&req.body.algorithm)?).await?;
    Ok(update_backup_version::v3::Response::new())
}

async fn delete(
    state: AppState,
    req: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    state.e2ee.delete_backup(&user, &req.body.version).await?;
    Ok(delete_backup_version::v3::Response::new())
}

fn room_keys(
    room: &OwnedRoomId,
    sessions: &BTreeMap<String, ruma::serde::Raw<ruma::api::client::backup::KeyBackupData>>,
) -> Result<Vec<BackupKey>, ApiError> {
    sessions.iter().map(|(s, data)| Ok((room.to_string(), s.clone(), value_of(data)?))).collect()
}

async fn put_all(
    state: AppState,
    req: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let mut keys = Vec::new();
    for (room, backup) in &req.body.rooms {
        keys.extend(room_keys(room, &backup.sessions)?);
    }
    let (etag, n) = state.e2ee.put_backup_keys(&user, &req.body.version, keys).await?;
    Ok(add_backup_keys::v3::Response::new(etag, count(n)))
}

async fn put_room(
    state: AppState,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let keys = room_keys(&req.body.room_id, &req.body.sessions)?;
    let (etag, n) = state.e2ee.put_backup_keys(&user, &req.body.version, keys).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count(n)))
}

async fn put_session(
    state: AppState,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = req.body;
    let keys = vec![(b.room_id.to_string(), b.session_id.clone(), value_of(&b.session_data)?)];
    let (etag, n) = state.e2ee.put_backup_keys(&user, &b.version, keys).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count(n)))
}

async fn group(keys: Vec<BackupKey>) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>, ApiError> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, _>> = BTreeMap::new();
    for (room, session, data) in keys {
        let room = OwnedRoomId::try_from(room).map_err(ApiError::internal_with)?;
        rooms.entry(room).or_default().insert(session, to_raw(data)?);
    }
    Ok(rooms.into_iter().map(|(r, s)| (r, RoomKeyBackup::new(s))).collect())
}

async fn get_all(
    state: AppState,
    req: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let keys = state.e2ee.get_backup_keys(&user, &req.body.version, None, None).await?;
    Ok(get_backup_keys::v3::Response::new(group(keys).await?))
}

async fn get_room(
    state: AppState,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let keys = state.e2ee.get_backup_keys(&user, &req.body.version, Some(req.body.room_id.as_str()), None).await?;
    let mut sessions = BTreeMap::new();
    for (_, session, data) in keys {
        sessions.insert(session, to_raw(data)?);
    }
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

async fn get_session(
    state: AppState,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = req.body;
    let keys = state.e2ee.get_backup_keys(&user, &b.version, Some(b.room_id.as_str()), Some(&b.session_id)).await?;
    let (_, _, data) = keys.into_iter().next().ok_or_else(|| ApiError::not_found("no such session in the backup"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(to_raw(data)?))
}

async fn delete_all(
    state: AppState,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let (etag, n) = state.e2ee.delete_backup_keys(&user, &req.body.version, None, None).await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count(n)))
}

async fn delete_room(
    state: AppState,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let (etag, n) =
        state.e2ee.delete_backup_keys(&user, &req.body.version, Some(req.body.room_id.as_str()), None).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count(n)))
}

async fn delete_session(
    state: AppState,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = req.body;
    let (etag, n) =
        state.e2ee.delete_backup_keys(&user, &b.version, Some(b.room_id.as_str()), Some(&b.session_id)).await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count(n)))
}
