//! A listener of the commit pipeline: a state event cancels the delayed
//! events other users scheduled for the same room, type and state key, so
//! a stale "leave" cannot overwrite state someone else has since set. This
//! is Synapse's behaviour, which Element Call's state-event memberships
//! rely on; MSC4140 lists it as an option with the error below.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::{
    commit::{Commit, CommitListener},
    pdu::Pdu,
    storage::{Storage, now_ms},
};

/// Cancels other users' delayed state events that a state event overtakes.
pub struct DelayedStateCanceller {
    db: Arc<dyn Storage>,
}

impl DelayedStateCanceller {
    pub fn new(db: Arc<dyn Storage>) -> Self {
        Self { db }
    }

    async fn state_committed(&self, event: &Pdu, state_key: &str) -> crate::storage::Result<()> {
        let (room, kind, sender) = (event.room.to_string(), event.kind().to_string(), event.sender().to_string());
        // Almost always nothing is pending: a read answers that without
        // queueing a write behind the event.
        if !self
            .db
            .others_delayed_state_pending(room.clone(), kind.clone(), state_key.to_owned(), sender.clone())
            .await?
        {
            return Ok(());
        }
        let error = json!({
            "errcode": "M_UNKNOWN",
            "org.matrix.msc4140.errcode": "M_CANCELLED_BY_STATE_UPDATE",
            "error": "The delayed event was cancelled because another user updated the same state.",
        });
        let cancelled = self
            .db
            .cancel_others_delayed_state(room, kind, state_key.to_owned(), sender, error.to_string(), now_ms())
            .await?;
        tracing::debug!(cancelled, event_id = %event.event_id, "a state event cancelled delayed state events");
        Ok(())
    }
}

impl CommitListener for DelayedStateCanceller {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Commit::RoomEvent { event, .. } = commit else { return };
            let Some(state_key) = event.state_key().filter(|_| !event.rejected) else { return };
            if let Err(e) = self.state_committed(event, state_key).await {
                tracing::warn!(error = %e, event_id = %event.event_id, "cannot cancel overtaken delayed events");
            }
        })
    }
}
