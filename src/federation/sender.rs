//! The outbound sender: one worker per destination, woken when something
//! is queued for it. The queue lives in SQLite (PDUs are queued in the same
//! transaction that stores them), one transaction is in flight per
//! destination with at most 50 PDUs and 100 EDUs, failures back off
//! exponentially up to a cap, and a transaction interrupted by a restart
//! goes out again under the same id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use bytes::Bytes;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId,
    api::federation::transactions::send_transaction_message, serde::Raw,
};
use tokio::sync::Notify;

use super::Federation;
use crate::storage::{
    FederationStore,
    federation::{QueueKind, QueuedItem},
};

const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

pub struct Sender {
    db: Arc<dyn FederationStore>,
    federation: OnceLock<Weak<Federation>>,
    workers: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
    /// While true, nothing is sent (items keep queueing).
    paused: tokio::sync::watch::Sender<bool>,
}

impl Sender {
    pub fn new(db: Arc<dyn FederationStore>) -> Self {
        let (paused, _) = tokio::sync::watch::channel(false);
        Self { db, federation: OnceLock::new(), workers: Mutex::new(HashMap::new()), paused }
    }

    /// Holds (or releases) every outbound transaction; queued items wait.
    /// For operators cutting a server off, and for tests of what happens
    /// when servers cannot reach each other.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
        if !paused {
            for notify in self.workers.lock().expect("workers mutex").values() {
                notify.notify_one();
            }
        }
    }

    /// Starts workers for every destination with a queue left from before.
    pub async fn start(&self, federation: &Arc<Federation>) {
        let _ = self.federation.set(Arc::downgrade(federation));
        match self.db.queued_destinations().await {
            Ok(destinations) => {
                let names: Vec<OwnedServerName> =
                    destinations.into_iter().filter_map(|d| OwnedServerName::try_from(d).ok()).collect();
                self.wake(&names);
            }
            Err(e) => tracing::error!(error = %e, "cannot read the federation queue"),
        }
    }

    /// Queues EDUs for destinations and wakes their workers.
    pub(super) async fn send_edus(&self, items: Vec<(OwnedServerName, String)>) {
        if items.is_empty() {
            return;
        }
        let destinations: Vec<OwnedServerName> = items.iter().map(|(d, _)| d.clone()).collect();
        let rows = items.into_iter().map(|(d, json)| (d.to_string(), QueueKind::Edu, json)).collect();
        if let Err(e) = self.db.enqueue_federation(rows).await {
            tracing::error!(error = %e, "cannot queue EDUs");
            return;
        }
        self.wake(&destinations);
    }

    /// Wakes the workers of `destinations` (starting them when needed).
    pub(super) fn wake(&self, destinations: &[OwnedServerName]) {
        let Some(federation) = self.federation.get().and_then(Weak::upgrade) else { return };
        let mut workers = self.workers.lock().expect("workers mutex");
        for destination in destinations {
            if let Some(notify) = workers.get(destination) {
                notify.notify_one();
                continue;
            }
            let notify = Arc::new(Notify::new());
            notify.notify_one();
            workers.insert(destination.clone(), notify.clone());
            let paused = self.paused.subscribe();
            tokio::spawn(run_worker(Arc::downgrade(&federation), destination.clone(), notify, paused));
        }
    }
}

async fn run_worker(
    federation: Weak<Federation>,
    destination: OwnedServerName,
    notify: Arc<Notify>,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        notify.notified().await;
        loop {
            if paused.wait_for(|p| !*p).await.is_err() {
                return;
            }
            let Some(fed) = federation.upgrade() else { return };
            let next = fed.db.next_federation_txn(destination.to_string(), MAX_PDUS, MAX_EDUS).await;
            let txn = match next {
                Ok(Some(txn)) => txn,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(%destination, error = %e, "cannot read the federation queue");
                    break;
                }
            };
            match send_one(&fed, &destination, &txn.txn_id, txn.items).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    if let Err(e) = fed.db.federation_txn_done(destination.to_string(), txn.last_id).await {
                        tracing::error!(%destination, error = %e, "cannot clear sent transaction");
                        break;
                    }
                }
                Err(e) => {
                    tracing::info!(%destination, error = %e, retry_in = ?backoff, "transaction not delivered");
                    drop(fed);
                    // Wait out the back-off; a new event does not cut it short.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

async fn send_one(
    fed: &Federation,
    destination: &OwnedServerName,
    txn_id: &str,
    items: Vec<QueuedItem>,
) -> Result<(), super::FedError> {
    let mut pdus = Vec::new();
    let mut edus = Vec::new();
    for item in items {
        let raw = serde_json::value::RawValue::from_string(item.json)
            .map_err(|e| super::FedError::Internal(format!("queued item: {e}")))?;
        match item.kind {
            QueueKind::Pdu => pdus.push(raw),
            QueueKind::Edu => edus.push(Raw::from_json(raw)),
        }
    }
    let mut request = send_transaction_message::v1::Request::new(
        OwnedTransactionId::from(txn_id),
        fed.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus;
    request.edus = edus;
    let (dest, http_request) = fed.build_request(destination, request).await?;
    let path = http_request.uri().path().to_owned();
    let answer = fed.send_http(destination, &dest, http_request, super::MAX_RESPONSE_BYTES).await?;
    let response =
        super::parse_response::<send_transaction_message::v1::Request>(destination, &path, with_pdus(answer))?;
    for (event_id, result) in response.pdus {
        if let Err(e) = result {
            tracing::info!(%destination, %event_id, error = %e, "remote server refused a PDU");
        }
    }
    Ok(())
}

/// A successful `/send` answer whose body has no `pdus` (an empty body, or
/// `{}`) as one with an empty `pdus`: the transaction was delivered, as
/// Synapse takes it (MSC3618 makes `pdus` optional).
fn with_pdus(answer: http::Response<Bytes>) -> http::Response<Bytes> {
    if !answer.status().is_success() {
        return answer;
    }
    let has_pdus = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(answer.body())
        .is_ok_and(|body| body.contains_key("pdus"));
    if has_pdus {
        return answer;
    }
    let (parts, _) = answer.into_parts();
    http::Response::from_parts(parts, Bytes::from_static(br#"{"pdus": {}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &'static str) -> http::Response<Bytes> {
        http::Response::builder().status(status).body(Bytes::from_static(body.as_bytes())).expect("response")
    }

    #[test]
    fn answers_without_pdus_are_deliveries() {
        assert_eq!(with_pdus(answer(200, "")).body().as_ref(), br#"{"pdus": {}}"#);
        assert_eq!(with_pdus(answer(200, "{}")).body().as_ref(), br#"{"pdus": {}}"#);
        let full = r#"{"pdus": {"$a": {"error": "no"}}}"#;
        assert_eq!(with_pdus(answer(200, full)).body().as_ref(), full.as_bytes());
        assert_eq!(with_pdus(answer(500, "")).body().as_ref(), b"");
    }
}
