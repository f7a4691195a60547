//! Signing keys (server-server API, "Retrieving server keys"): this server's
//! signed key document, and other servers' keys fetched directly or through
//! trusted notaries, checked, cached in memory and stored.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName,
    api::federation::discovery::{get_remote_server_keys_batch, get_server_keys},
    serde::{Base64, Raw},
    signatures::{PublicKeyMap, PublicKeySet, sign_json, verify_json},
};
use serde_json::Value;

use super::{FedError, Federation};
use crate::storage::{federation::StoredServerKey, now_ms};

/// How long other servers may cache this server's key document.
const OWN_KEY_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Keys of other servers in memory, with one fetch at a time per server.
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<HashMap<OwnedServerName, Vec<StoredServerKey>>>,
    fetching: std::sync::Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
    /// Signed key documents as received, for the notary endpoints.
    documents: std::sync::Mutex<HashMap<OwnedServerName, CanonicalJsonObject>>,
}

impl Federation {
    /// This server's key document, signed by itself.
    pub fn own_key_document(&self) -> CanonicalJsonObject {
        let server_name = self.config.server.server_name.as_str();
        let valid_until = now_ms() + OWN_KEY_VALIDITY.as_millis() as i64;
        let mut verify_keys = CanonicalJsonObject::new();
        let mut key = CanonicalJsonObject::new();
        key.insert("key".into(), CanonicalJsonValue::String(self.key.public_key_base64()));
        verify_keys.insert(self.key.key_id(), CanonicalJsonValue::Object(key));
        let mut doc = CanonicalJsonObject::new();
        doc.insert("server_name".into(), CanonicalJsonValue::String(server_name.to_owned()));
        doc.insert("verify_keys".into(), CanonicalJsonValue::Object(verify_keys));
        doc.insert("old_verify_keys".into(), CanonicalJsonValue::Object(CanonicalJsonObject::new()));
        doc.insert("valid_until_ts".into(), CanonicalJsonValue::Integer(valid_until.try_into().unwrap_or_default()));
        sign_json(server_name, &self.key.keypair, &mut doc).expect("a fresh key document can be signed");
        doc
    }

    /// Adds this server's signature to a key document (notary responses).
    pub fn countersign(&self, mut doc: CanonicalJsonObject) -> CanonicalJsonObject {
        if let Err(e) = sign_json(self.config.server.server_name.as_str(), &self.key.keypair, &mut doc) {
            tracing::warn!(error = %e, "cannot countersign a key document");
        }
        doc
    }

    /// A notary's answer about `server` (server-server API, "Querying Keys
    /// Through Another Server", for the `GET` and `POST` forms alike): the
    /// key documents this server can vouch for, countersigned. That is its
    /// own, or the one it fetched, fetched again when it would expire
    /// before `minimum_valid_until_ms` (now when not given). With
    /// `key_ids`, only a document holding one of them is returned.
    pub async fn notary_documents(
        &self,
        server: &ServerName,
        key_ids: &[String],
        minimum_valid_until_ms: Option<i64>,
    ) -> Vec<CanonicalJsonObject> {
        let documents = if server == self.config.server.server_name {
            vec![self.own_key_document()]
        } else {
            let minimum = minimum_valid_until_ms.unwrap_or_else(now_ms);
            let kept = self.cache.documents.lock().expect("documents mutex").get(server).cloned();
            if kept.as_ref().is_none_or(|doc| valid_until(doc) < minimum) {
                let _ = self.fetch_keys(server).await;
            }
            self.cache.documents.lock().expect("documents mutex").get(server).cloned().into_iter().collect()
        };
        documents
            .into_iter()
            .filter(|doc| key_ids.is_empty() || key_ids.iter().any(|id| holds_key(doc, id)))
            .map(|doc| self.countersign(doc))
            .collect()
    }

    /// The verify keys of `server` that are valid for something signed at
    /// `at_ms` (or now), fetching them when `key_ids` are not all known.
    pub async fn server_keys(
        &self,
        server: &ServerName,
        key_ids: &[String],
        at_ms: Option<i64>,
    ) -> Result<PublicKeySet, FedError> {
        if server == self.config.server.server_name {
            return Ok(BTreeMap::from([(
                self.key.key_id(),
                Base64::parse(self.key.public_key_base64()).map_err(|e| FedError::Internal(format!("own key: {e}")))?,
            )]));
        }
        let usable = |keys: &[StoredServerKey]| -> Option<PublicKeySet> {
            let now = now_ms();
            let mut set = PublicKeySet::new();
            for id in key_ids {
                let key = keys.iter().find(|k| &k.key_id == id)?;
                let valid = match key.expired_ts {
                    Some(expired) => at_ms.is_some_and(|at| at < expired),
                    None => key.valid_until_ts >= now || at_ms.is_some_and(|at| at <= key.valid_until_ts),
                };
                if !valid {
                    return None;
                }
                set.insert(key.key_id.clone(), Base64::parse(&key.public_key).ok()?);
            }
            Some(set)
        };
        if let Some(keys) = self.cache.keys.lock().expect("keys mutex").get(server)
            && let Some(set) = usable(keys)
        {
            return Ok(set);
        }
        let lock = self.cache.fetching.lock().expect("fetching mutex").entry(server.to_owned()).or_default().clone();
        let _guard = lock.lock().await;
        let stored = self.db.server_keys(server.to_string()).await?;
        if let Some(set) = usable(&stored) {
            self.cache.keys.lock().expect("keys mutex").insert(server.to_owned(), stored);
            return Ok(set);
        }
        let fetched = self.fetch_keys(server).await?;
        usable(&fetched).ok_or_else(|| FedError::Unauthorized(format!("{server} has no valid key {key_ids:?}")))
    }

    /// Fetches `server`'s keys directly, then through each trusted notary;
    /// stores what verifies.
    async fn fetch_keys(&self, server: &ServerName) -> Result<Vec<StoredServerKey>, FedError> {
        let first_error = match self.fetch_keys_directly(server).await {
            Ok(keys) => return Ok(keys),
            Err(e) => e,
        };
        tracing::debug!(%server, error = %first_error, "cannot fetch keys directly; asking notaries");
        for notary in self.config.federation.trusted_key_servers.clone() {
            match self.fetch_keys_from_notary(&notary, server).await {
                Ok(keys) if !keys.is_empty() => return Ok(keys),
                Ok(_) => {}
                Err(e) => tracing::debug!(%server, %notary, error = %e, "notary could not help"),
            }
        }
        Err(first_error)
    }

    async fn fetch_keys_directly(&self, server: &ServerName) -> Result<Vec<StoredServerKey>, FedError> {
        let response = self.request(server, get_server_keys::v2::Request::new()).await?;
        let doc: CanonicalJsonObject = serde_json::from_str(response.server_key.json().get())
            .map_err(|e| FedError::BadResponse(format!("key document: {e}")))?;
        self.accept_key_document(server, doc, None).await
    }

    async fn fetch_keys_from_notary(
        &self,
        notary: &ServerName,
        server: &ServerName,
    ) -> Result<Vec<StoredServerKey>, FedError> {
        if notary == self.config.server.server_name {
            return Ok(Vec::new());
        }
        let mut known = self.cache.keys.lock().expect("keys mutex").get(notary).cloned().unwrap_or_default();
        if known.is_empty() {
            known = self.fetch_keys_directly(notary).await?;
        }
        let notary_keys: Option<PublicKeySet> = Some(
            known
                .iter()
                .filter(|k| k.expired_ts.is_none())
                .filter_map(|k| Some((k.key_id.clone(), Base64::parse(&k.public_key).ok()?)))
                .collect(),
        );
        let mut query = BTreeMap::new();
        query.insert(server.to_owned(), BTreeMap::new());
        let response = self.request(notary, get_remote_server_keys_batch::v2::Request::new(query)).await?;
        let mut accepted = Vec::new();
        for raw in response.server_keys {
            let doc: CanonicalJsonObject = match serde_json::from_str(raw.json().get()) {
                Ok(doc) => doc,
                Err(_) => continue,
            };
            // The notary's own signature must verify too, once its keys are known.
            let notary_map = notary_keys.clone().map(|set| (notary.to_string(), set));
            if let Ok(keys) = self.accept_key_document(server, doc, notary_map).await {
                accepted.extend(keys);
            }
        }
        Ok(accepted)
    }

    /// Checks a key document of `server` (self-signed with its own keys, and
    /// by the notary when given), then stores and caches its keys.
    async fn accept_key_document(
        &self,
        server: &ServerName,
        doc: CanonicalJsonObject,
        notary: Option<(String, PublicKeySet)>,
    ) -> Result<Vec<StoredServerKey>, FedError> {
        let parsed: Value = serde_json::to_value(&doc).map_err(|e| FedError::BadResponse(e.to_string()))?;
        if parsed.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
            return Err(FedError::BadResponse("the key document names another server".into()));
        }
        let valid_until = parsed.get("valid_until_ts").and_then(Value::as_i64).unwrap_or(0);
        // Spec: a key is valid for at most seven days from now, whatever it claims.
        let valid_until = valid_until.min(now_ms() + OWN_KEY_VALIDITY.as_millis() as i64);
        let mut keys = Vec::new();
        let mut own = PublicKeySet::new();
        if let Some(Value::Object(verify)) = parsed.get("verify_keys") {
            for (id, key) in verify {
                let Some(b64) = key.get("key").and_then(Value::as_str) else { continue };
                let Ok(decoded) = Base64::parse(b64) else { continue };
                own.insert(id.clone(), decoded);
                keys.push(StoredServerKey {
                    key_id: id.clone(),
                    public_key: b64.to_owned(),
                    valid_until_ts: valid_until,
                    expired_ts: None,
                });
            }
        }
        if own.is_empty() {
            return Err(FedError::BadResponse("the key document has no usable key".into()));
        }
        let mut map = PublicKeyMap::new();
        map.insert(server.to_string(), own);
        if let Some((name, set)) = notary {
            map.insert(name, set);
        }
        verify_json(&map, &doc)
            .map_err(|e| FedError::Unauthorized(format!("the key document of {server} does not verify: {e}")))?;
        if let Some(Value::Object(old)) = parsed.get("old_verify_keys") {
            for (id, key) in old {
                let (Some(b64), Some(expired)) =
                    (key.get("key").and_then(Value::as_str), key.get("expired_ts").and_then(Value::as_i64))
                else {
                    continue;
                };
                keys.push(StoredServerKey {
                    key_id: id.clone(),
                    public_key: b64.to_owned(),
                    valid_until_ts: expired,
                    expired_ts: Some(expired),
                });
            }
        }
        self.db.store_server_keys(server.to_string(), keys.clone()).await?;
        let all = self.db.server_keys(server.to_string()).await?;
        self.cache.keys.lock().expect("keys mutex").insert(server.to_owned(), all.clone());
        self.cache.documents.lock().expect("documents mutex").insert(server.to_owned(), doc);
        Ok(all)
    }

    /// The public keys needed to verify a signed object (an event or a key
    /// document) from the servers that must have signed it.
    pub async fn public_key_map(
        &self,
        obj: &CanonicalJsonObject,
        servers: impl IntoIterator<Item = OwnedServerName>,
        at_ms: Option<i64>,
    ) -> Result<PublicKeyMap, FedError> {
        let mut map = PublicKeyMap::new();
        let signatures = match obj.get("signatures") {
            Some(CanonicalJsonValue::Object(s)) => s.clone(),
            _ => return Err(FedError::BadRequest("the object is not signed".into())),
        };
        for server in servers {
            let key_ids: Vec<String> = match signatures.get(server.as_str()) {
                Some(CanonicalJsonValue::Object(sigs)) => {
                    sigs.keys().filter(|k| k.starts_with("ed25519:")).cloned().collect()
                }
                _ => return Err(FedError::Unauthorized(format!("no signature from {server}"))),
            };
            // One valid key is enough: use the first we can get.
            let mut found = None;
            for id in &key_ids {
                if let Ok(set) = self.server_keys(&server, std::slice::from_ref(id), at_ms).await {
                    found = Some(set);
                    break;
                }
            }
            let set = found.ok_or_else(|| FedError::Unauthorized(format!("no usable key of {server}")))?;
            map.insert(server.to_string(), set);
        }
        Ok(map)
    }
}

/// A key document's `valid_until_ts` (0 when it has none).
fn valid_until(doc: &CanonicalJsonObject) -> i64 {
    match doc.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
        _ => 0,
    }
}

/// Whether a key document lists `key_id`, current or old.
fn holds_key(doc: &CanonicalJsonObject, key_id: &str) -> bool {
    ["verify_keys", "old_verify_keys"]
        .iter()
        .any(|field| matches!(doc.get(*field), Some(CanonicalJsonValue::Object(keys)) if keys.contains_key(key_id)))
}

/// A key document as ruma's raw response type.
pub fn raw_document(doc: &CanonicalJsonObject) -> Raw<ruma::api::federation::discovery::ServerSigningKeys> {
    let json = serde_json::value::to_raw_value(doc).expect("canonical JSON serialises");
    Raw::from_json(json)
}
