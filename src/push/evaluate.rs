//! Push rule evaluation, a listener of the commit pipeline (client-server
//! API, "Push rules", "Receiving notifications"): every event that becomes
//! part of a room, local or remote, is evaluated against the push rules of
//! each local member but its sender, with ruma's conditions. What the
//! room gives every member (member count, power levels, display names) is
//! worked out once per state group; the event is flattened once. The
//! actions that notify are stored before syncs wake (the listener runs
//! ahead of the notifier), so a sync that returns the event counts it;
//! then they are queued for the users' pushers (`delivery.rs`), while a
//! sync that will return the event still holds its device's guard. A
//! member who ignores the sender of a non-state event is not evaluated.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use futures_util::future::BoxFuture;
use ruma::{
    OwnedRoomId, OwnedUserId, UInt, UserId,
    events::{StateEventType, room::member::MembershipState},
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::Value;

use super::{Push, Result};
use crate::{
    commit::{Commit, CommitListener},
    pdu::Pdu,
    storage::push::PushActionRow,
};

/// Rooms whose evaluation context is kept.
const CONTEXT_CACHE_ROOMS: usize = 4096;

/// What every member's evaluation shares, for one state group of a room.
struct RoomContext {
    state_group: i64,
    member_count: UInt,
    display_names: HashMap<OwnedUserId, String>,
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

/// The push listener of the commit pipeline.
pub struct PushEvaluation {
    /// Weak: `Push` reaches the pipeline that holds this listener (through
    /// `Rooms`), and a strong reference would keep both alive forever.
    push: Weak<Push>,
    contexts: quick_cache::sync::Cache<OwnedRoomId, Arc<RoomContext>>,
}

impl PushEvaluation {
    pub fn new(push: &Arc<Push>) -> Self {
        Self { push: Arc::downgrade(push), contexts: quick_cache::sync::Cache::new(CONTEXT_CACHE_ROOMS) }
    }

    async fn event_committed(&self, push: &Push, position: i64, event: &Pdu, wake: &[&UserId]) -> Result<()> {
        if event.rejected {
            return Ok(());
        }
        if let Some(target) = event.redacts_target() {
            // A redacted event no longer notifies anyone.
            push.db.remove_push_actions(target.to_string()).await?;
        }
        let own = push.server_name();
        let mut members: Vec<&UserId> =
            wake.iter().copied().filter(|u| u.server_name() == own && *u != event.sender()).collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            return Ok(());
        }
        let Some(group) = event.state_group else { return Ok(()) };
        let context = self.room_context(push, &event.room, group).await?;
        let client_event = push.rooms.client_event(event, None).await?;
        let raw: Raw<Value> = Raw::new(&client_event).map_err(|e| super::PushError::InvalidParam(e.to_string()))?;
        let flat = FlattenedJson::from_raw(&raw);
        let thread = thread_root(&client_event);
        let mut ctx = PushConditionRoomCtx::new(
            event.room.clone(),
            context.member_count,
            event.sender().to_owned(),
            String::new(),
        );
        ctx.power_levels = context.power_levels.clone();
        let ts = u64::from(event.fields.origin_server_ts.get()) as i64;
        let mut rows = Vec::new();
        for user in members {
            let user = user.to_owned();
            // Spec: "Ignoring Users": nothing from an ignored user reaches
            // the client, so it neither notifies nor counts as unread.
            // Their state events are still sent, and may still notify.
            if event.state_key().is_none() && push.streams.ignored_users(&user).await?.contains(event.sender()) {
                continue;
            }
            let rules = push.rules(&user).await?;
            ctx.user_display_name = context.display_names.get(&user).cloned().unwrap_or_default();
            ctx.user_id = user;
            let actions = first_match(&rules, &flat, &ctx).await;
            if !actions.iter().any(Action::should_notify) {
                continue;
            }
            rows.push(PushActionRow {
                user_id: ctx.user_id.to_string(),
                room_id: event.room.to_string(),
                event_id: event.event_id.to_string(),
                stream_ordering: position,
                thread_id: thread.clone(),
                highlight: actions.iter().any(Action::is_highlight),
                actions: serde_json::to_string(actions).unwrap_or_else(|_| "[]".into()),
                ts,
            });
        }
        let pushes = push.pushes_to_queue(&rows).await?;
        push.db.add_push_actions(rows).await?;
        push.queue_pushes(event, pushes).await
    }

    /// The shared evaluation context of a room in a state group.
    async fn room_context(&self, push: &Push, room_id: &OwnedRoomId, group: i64) -> Result<Arc<RoomContext>> {
        if let Some(context) = self.contexts.get(room_id).filter(|c| c.state_group == group) {
            return Ok(context);
        }
        let rooms = &push.rooms;
        let state = rooms.state_at_group(group).await?;
        let own = push.server_name();
        let member_ids: Vec<_> = state
            .iter()
            .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
            .map(|(_, id)| id.clone())
            .collect();
        let members = rooms.get_pdus(&member_ids).await?;
        let mut member_count = 0u64;
        let mut display_names = HashMap::new();
        for pdu in members.values() {
            if pdu.membership() != Some(MembershipState::Join) {
                continue;
            }
            member_count += 1;
            let Some(user) = pdu.state_key().and_then(|k| UserId::parse(k).ok()) else { continue };
            if user.server_name() != own {
                continue;
            }
            let name = pdu.content_value().get("displayname").and_then(Value::as_str).map(str::to_owned);
            display_names.insert(user, name.unwrap_or_default());
        }
        let version = rooms.room_version(room_id).await?;
        let power_levels = match version.rules() {
            Some(rules) => Some(rooms.power_levels_in_state(&state, &rules).await?.into()),
            None => None,
        };
        let context = Arc::new(RoomContext {
            state_group: group,
            member_count: UInt::try_from(member_count).unwrap_or(UInt::MAX),
            display_names,
            power_levels,
        });
        self.contexts.insert(room_id.clone(), context.clone());
        Ok(context)
    }
}

/// The actions of the first enabled rule that applies (the rules are in
/// priority order), or none.
pub async fn first_match<'a>(rules: &'a Ruleset, event: &FlattenedJson, ctx: &PushConditionRoomCtx) -> &'a [Action] {
    for rule in rules.iter() {
        if rule.applies(event, ctx).await {
            return rule.actions();
        }
    }
    &[]
}

/// The root of the thread an event belongs to (`m.thread` relation).
fn thread_root(event: &Value) -> Option<String> {
    let relation = event.get("content")?.get("m.relates_to")?;
    if relation.get("rel_type")?.as_str()? != "m.thread" {
        return None;
    }
    relation.get("event_id")?.as_str().map(str::to_owned)
}

impl CommitListener for PushEvaluation {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Gone only while the server shuts down.
            let Some(push) = self.push.upgrade() else { return };
            match commit {
                Commit::RoomEvent { position, event, wake, .. } => {
                    if let Err(e) = self.event_committed(&push, *position, event, wake).await {
                        tracing::error!(event_id = %event.event_id, error = %e, "push evaluation failed");
                    }
                }
                Commit::AccountData { user, .. } => push.forget_rules(user),
                _ => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_thread_reply_belongs_to_its_root() {
        let reply = json!({"content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}});
        assert_eq!(thread_root(&reply).as_deref(), Some("$root"));
        let edit = json!({"content": {"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}});
        assert_eq!(thread_root(&edit), None);
        assert_eq!(thread_root(&json!({"content": {}})), None);
    }
}
