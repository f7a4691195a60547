//! The search index's listener on the commit pipeline: every event that
//! becomes part of a room with text under `content.body`, `content.name`
//! or `content.topic` is indexed; a redaction takes its target out.
//! Encrypted events carry no such text, so nothing of them is indexed.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::{
    commit::{Commit, CommitListener},
    pdu::Pdu,
    storage::{Storage, search::SearchEntry},
};

/// Keeps the search index current with what is committed.
pub struct SearchIndexer {
    db: Arc<dyn Storage>,
}

impl SearchIndexer {
    pub fn new(db: Arc<dyn Storage>) -> Self {
        Self { db }
    }

    async fn event_committed(&self, position: i64, event: &Pdu) -> crate::storage::Result<()> {
        if event.rejected {
            return Ok(());
        }
        if let Some(target) = event.redacts_target() {
            // Only a redaction the room server applied to its target
            // (stored with the redaction, in the same write).
            let applied = self.db.get_event(target.to_string()).await?.is_some_and(|t| t.redacted_by.is_some());
            if applied {
                self.db.unindex_event(target.to_string()).await?;
            }
        }
        match entry_of(position, event) {
            Some(entry) => self.db.index_events(vec![entry]).await,
            None => Ok(()),
        }
    }
}

/// What the index keeps of an event, if it has text under a searched key.
pub fn entry_of(position: i64, event: &Pdu) -> Option<SearchEntry> {
    if event.redacted_by.is_some() {
        return None;
    }
    let content = event.content_value();
    let text = |key: &str| content.get(key).and_then(Value::as_str).map(str::to_owned);
    let entry = SearchEntry { stream_ordering: position, body: text("body"), name: text("name"), topic: text("topic") };
    (entry.body.is_some() || entry.name.is_some() || entry.topic.is_some()).then_some(entry)
}

impl CommitListener for SearchIndexer {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let outcome = match commit {
                Commit::RoomEvent { position, event, .. } => self.event_committed(*position, event).await,
                Commit::Backfilled { events, .. } => {
                    let entries =
                        events.iter().filter(|e| !e.rejected).filter_map(|e| entry_of(e.stream_ordering?, e)).collect();
                    self.db.index_events(entries).await
                }
                _ => Ok(()),
            };
            // The event is committed whatever the index says: a failure
            // here leaves it unfindable, not lost.
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "cannot update the search index");
            }
        })
    }
}
