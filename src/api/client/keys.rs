//! Key management and cross-signing (client-server API, "End-to-End
//! Encryption: Key management API", "Cross-signing").

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OwnedDeviceId, OwnedUserId, UInt,
    api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys},
};
use serde_json::Value;

use super::events::to_raw;
use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
    sync::SyncToken,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(upload).ruma(query).ruma(claim).ruma(changes).ruma(signing_keys).ruma(signatures)
}

fn value_of<T>(raw: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

async fn upload(state: AppState, req: Ruma<upload_keys::v3::Request>) -> Result<upload_keys::v3::Response, ApiError> {
    let session = req.session().clone();
    let body = req.body;
    let device_keys = body.device_keys.as_ref().map(value_of).transpose()?;
    let mut one_time = BTreeMap::new();
    for (id, key) in &body.one_time_keys {
        one_time.insert(id.to_string(), value_of(key)?);
    }
    let mut fallback = BTreeMap::new();
    for (id, key) in &body.fallback_keys {
        fallback.insert(id.to_string(), value_of(key)?);
    }
    let counts = state.e2ee.upload_keys(&session, device_keys, one_time, fallback).await?;
    let counts = counts
        .into_iter()
        .map(|(alg, n)| (alg.as_str().into(), UInt::try_from(n.max(0) as u64).unwrap_or_default()))
        .collect();
    Ok(upload_keys::v3::Response::new(counts))
}

async fn query(state: AppState, req: Ruma<get_keys::v3::Request>) -> Result<get_keys::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let result = state.federation.query_keys(&user, req.body.device_keys).await?;
    let mut response = get_keys::v3::Response::new();
    for (u, devices) in result.device_keys {
        let u = OwnedUserId::try_from(u).map_err(ApiError::internal_with)?;
        let mut map = BTreeMap::new();
        for (d, keys) in devices {
            map.insert(OwnedDeviceId::from(d), to_raw(keys)?);
        }
        response.device_keys.insert(u, map);
    }
    for (target, source) in [
        (&mut response.master_keys, result.master_keys),
        (&mut response.self_signing_keys, result.self_signing_keys),
        (&mut response.user_signing_keys, result.user_signing_keys),
    ] {
        for (u, key) in source {
            target.insert(OwnedUserId::try_from(u).map_err(ApiError::internal_with)?, to_raw(key)?);
        }
    }
    response.failures = result.failures;
    Ok(response)
}

async fn claim(state: AppState, req: Ruma<claim_keys::v3::Request>) -> Result<claim_keys::v3::Response, ApiError> {
    let wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>> = req
        .body
        .one_time_keys
        .into_iter()
        .map(|(u, devices)| (u, devices.into_iter().map(|(d, alg)| (d, alg.to_string())).collect()))
        .collect();
    let (claimed, failures) = state.federation.claim_keys(wanted).await?;
    let mut one_time_keys = BTreeMap::new();
    for (u, devices) in claimed {
        let mut by_device = BTreeMap::new();
        for (d, keys) in devices {
            let mut by_id = BTreeMap::new();
            for (id, key) in keys {
                let id = ruma::OwnedOneTimeKeyId::try_from(id).map_err(ApiError::internal_with)?;
                by_id.insert(id, to_raw(key)?);
            }
            by_device.insert(OwnedDeviceId::from(d), by_id);
        }
        one_time_keys.insert(OwnedUserId::try_from(u).map_err(ApiError::internal_with)?, by_device);
    }
    let mut response = claim_keys::v3::Response::new(one_time_keys);
    response.failures = failures;
    Ok(response)
}

async fn changes(
    state: AppState,
    req: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response, ApiError> {
    let user = req.session().user_id.clone();
    let parse = |t: &str| SyncToken::parse(t).ok_or_else(|| ApiError::invalid_param("invalid token"));
    let (from, to) = (parse(&req.body.from)?, parse(&req.body.to)?);
    let changed = state.e2ee.key_changes(&user, from.misc, to.misc).await?;
    let changed = changed.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
    Ok(get_key_changes::v3::Response::new(changed, vec![]))
}

async fn signing_keys(
    state: AppState,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response, ApiError> {
    let session = req.session().clone();
    let body = req.body;
    let mut keys = Vec::new();
    for (kind, key) in [
        ("master", &body.master_key),
        ("self_signing", &body.self_signing_key),
        ("user_signing", &body.user_signing_key),
    ] {
        if let Some(key) = key {
            keys.push((kind, value_of(key)?));
        }
    }
    state.e2ee.upload_signing_keys(&state.users, &session, body.auth.as_ref(), keys).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

async fn signatures(
    state: AppState,
    req: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response, ApiError> {
    let session = req.session().clone();
    let mut signed = BTreeMap::new();
    for (user, keys) in &req.body.signed_keys {
        let as_value = serde_json::to_value(keys).map_err(|e| ApiError::bad_json(e.to_string()))?;
        let objects: BTreeMap<String, Value> =
            serde_json::from_value(as_value).map_err(|e| ApiError::bad_json(e.to_string()))?;
        signed.insert(user.clone(), objects);
    }
    let failures = state.e2ee.upload_signatures(&session, signed).await?;
    let mut response = upload_signatures::v3::Response::new();
    for (user, by_key) in failures {
        let user = OwnedUserId::try_from(user).map_err(ApiError::internal_with)?;
        let mut map = BTreeMap::new();
        for (key, failure) in by_key {
            // ruma's `Failure` has no constructor; it is built from its JSON form.
            let failure: upload_signatures::v3::Failure =
                serde_json::from_value(failure).map_err(ApiError::internal_with)?;
            map.insert(key, failure);
        }
        response.failures.insert(user, map);
    }
    Ok(response)
}
