//! Transaction delivery (application service API, "Pushing events"): one
//! worker per appservice with something queued sends its queue in order,
//! at most `MAX_ITEMS` items a transaction. A transaction keeps its id and
//! items until the appservice answers 2xx; failures back off exponentially
//! up to `MAX_BACKOFF`. After a restart, `start_delivery` resumes the
//! queues, the transaction in flight first, under its id. The shape is
//! push delivery's (`push/delivery.rs`), without its giving up: a bridge
//! must not lose messages.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use ruma::OwnedTransactionId;
use serde_json::{Value, value::RawValue};
use tokio::sync::watch;

use super::{
    client::{AppserviceCallError, AppserviceClient, TransactionExtras},
    registration::Appservice,
};
use crate::storage::{Storage, StorageError, appservice::AppserviceItemKind};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_ITEMS: usize = 100;

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Call(#[from] AppserviceCallError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub(super) struct Delivery {
    db: Arc<dyn Storage>,
    client: Arc<AppserviceClient>,
    appservices: HashMap<String, Arc<Appservice>>,
    /// Appservices with a worker running.
    workers: Mutex<HashSet<String>>,
    stopped: watch::Sender<bool>,
}

impl Delivery {
    pub fn new(db: Arc<dyn Storage>, client: Arc<AppserviceClient>, list: &[Arc<Appservice>]) -> Self {
        Self {
            db,
            client,
            appservices: list.iter().map(|a| (a.id().to_owned(), a.clone())).collect(),
            workers: Mutex::new(HashSet::new()),
            stopped: watch::channel(false).0,
        }
    }

    /// Starts a worker for each appservice named without one.
    pub fn wake(self: &Arc<Self>, ids: &[String]) {
        if *self.stopped.borrow() {
            return;
        }
        let mut workers = self.workers.lock().expect("workers mutex");
        for id in ids {
            // An appservice no longer registered keeps its queue, unsent.
            let Some(appservice) = self.appservices.get(id) else { continue };
            if appservice.registration.url.is_none() {
                continue;
            }
            if workers.insert(id.clone()) {
                tokio::spawn(run_worker(Arc::downgrade(self), appservice.clone(), self.stopped.subscribe()));
            }
        }
    }

    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// The queue is empty: the worker ends, then looks once more for an
    /// item queued while it was still registered.
    async fn retire(self: &Arc<Self>, id: &str) {
        self.workers.lock().expect("workers mutex").remove(id);
        if let Ok(Some(_)) = self.db.appservice_transaction(id.to_owned(), MAX_ITEMS).await {
            self.wake(&[id.to_owned()]);
        }
    }

    /// Sends the appservice's next transaction. `Ok(false)` when its queue is empty.
    async fn deliver_next(&self, appservice: &Appservice) -> Result<bool, DeliveryError> {
        let Some(txn) = self.db.appservice_transaction(appservice.id().to_owned(), MAX_ITEMS).await? else {
            return Ok(false);
        };
        let (mut events, mut ephemeral, mut extras) = (Vec::new(), Vec::new(), TransactionExtras::default());
        for (kind, json) in txn.items {
            match kind {
                AppserviceItemKind::Event | AppserviceItemKind::Ephemeral => {
                    let Ok(raw) = RawValue::from_string(json) else { continue };
                    if kind == AppserviceItemKind::Event { events.push(raw) } else { ephemeral.push(raw) }
                }
                AppserviceItemKind::ToDevice => extras.to_device.extend(serde_json::from_str::<Value>(&json).ok()),
                AppserviceItemKind::DeviceListChanged | AppserviceItemKind::DeviceListLeft => {
                    let Ok(user) = serde_json::from_str::<String>(&json) else { continue };
                    // The latest word on a user wins.
                    extras.changed.retain(|u| *u != user);
                    extras.left.retain(|u| *u != user);
                    if kind == AppserviceItemKind::DeviceListChanged {
                        extras.changed.push(user);
                    } else {
                        extras.left.push(user);
                    }
                }
                AppserviceItemKind::KeyCounts => {
                    let Ok(counts) = serde_json::from_str::<KeyCounts>(&json) else { continue };
                    // A later count of the same device replaces an earlier one.
                    extras
                        .one_time_keys_count
                        .entry(counts.user_id.clone())
                        .or_default()
                        .insert(counts.device_id.clone(), counts.counts);
                    let fallback = extras.unused_fallback_key_types.entry(counts.user_id).or_default();
                    fallback.insert(counts.device_id, counts.fallback);
                }
            }
        }
        let txn_id: OwnedTransactionId = txn.txn_id.to_string().into();
        self.client.send_transaction(appservice, txn_id, events, ephemeral, extras).await?;
        self.db.complete_appservice_transaction(appservice.id().to_owned(), txn.txn_id).await?;
        Ok(true)
    }
}

/// A queued `KeyCounts` item.
#[derive(serde::Deserialize)]
struct KeyCounts {
    user_id: String,
    device_id: String,
    counts: Value,
    fallback: Value,
}

async fn run_worker(delivery: Weak<Delivery>, appservice: Arc<Appservice>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = FIRST_RETRY;
    loop {
        if *stopped.borrow() {
            return;
        }
        let Some(d) = delivery.upgrade() else { return };
        match d.deliver_next(&appservice).await {
            Ok(true) => backoff = FIRST_RETRY,
            Ok(false) => {
                d.retire(appservice.id()).await;
                return;
            }
            Err(e) => {
                tracing::info!(appservice = appservice.id(), error = %e, retry_in = ?backoff, "transaction not delivered");
                drop(d);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.wait_for(|stopped| *stopped) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
