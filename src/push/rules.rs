//! The push rules API's operations on a ruleset (client-server API, "Push
//! rules: API"), as pure functions over ruma's `Ruleset`, with the spec's
//! errors: a rule that does not exist (nor the `before`/`after` rule) is
//! 404, anything else wrong is 400.

use ruma::push::{Action, AnyPushRuleRef, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, Ruleset};

use super::{PushError, Result};

/// The kinds of rule the spec defines, as they appear in paths.
pub const KINDS: &[&str] = &["override", "underride", "sender", "room", "content"];

/// Refuses kinds the spec does not define.
pub fn check_kind(kind: &RuleKind) -> Result<()> {
    match kind {
        RuleKind::Override | RuleKind::Underride | RuleKind::Sender | RuleKind::Room | RuleKind::Content => Ok(()),
        other => Err(PushError::InvalidParam(format!("unknown push rule kind {other}"))),
    }
}

/// Finds a rule.
pub fn find<'a>(rules: &'a Ruleset, kind: &RuleKind, rule_id: &str) -> Result<AnyPushRuleRef<'a>> {
    check_kind(kind)?;
    rules.get(kind.clone(), rule_id).ok_or_else(|| not_found(rule_id))
}

/// Adds or replaces a user rule, placed relative to `before` or `after`.
pub fn insert(rules: &mut Ruleset, rule: NewPushRule, before: Option<&str>, after: Option<&str>) -> Result<()> {
    rules.insert(rule, after, before).map_err(|e| match e {
        InsertPushRuleError::UnknownRuleId => PushError::NotFound("the `before` or `after` rule does not exist".into()),
        other => PushError::InvalidParam(other.to_string()),
    })
}

/// Deletes a user rule; server-default rules stay.
pub fn remove(rules: &mut Ruleset, kind: &RuleKind, rule_id: &str) -> Result<()> {
    check_kind(kind)?;
    rules.remove(kind.clone(), rule_id).map_err(|e| match e {
        RemovePushRuleError::ServerDefault => {
            PushError::InvalidParam("server-default push rules cannot be deleted".into())
        }
        _ => not_found(rule_id),
    })
}

/// Enables or disables a rule.
pub fn set_enabled(rules: &mut Ruleset, kind: &RuleKind, rule_id: &str, enabled: bool) -> Result<()> {
    check_kind(kind)?;
    rules.set_enabled(kind.clone(), rule_id, enabled).map_err(|_| not_found(rule_id))
}

/// Replaces a rule's actions.
pub fn set_actions(rules: &mut Ruleset, kind: &RuleKind, rule_id: &str, actions: Vec<Action>) -> Result<()> {
    check_kind(kind)?;
    rules.set_actions(kind.clone(), rule_id, actions).map_err(|_| not_found(rule_id))
}

fn not_found(rule_id: &str) -> PushError {
    PushError::NotFound(format!("push rule {rule_id} does not exist"))
}

#[cfg(test)]
mod tests {
    use ruma::{
        owned_room_id, owned_user_id,
        push::{NewSimplePushRule, PredefinedOverrideRuleId},
    };

    use super::*;

    fn defaults() -> Ruleset {
        Ruleset::server_default(&owned_user_id!("@bob:example.org"))
    }

    #[test]
    fn a_room_rule_goes_first_among_room_rules_and_can_be_deleted() {
        let mut rules = defaults();
        let room = owned_room_id!("!r:example.org");
        insert(&mut rules, NewPushRule::Room(NewSimplePushRule::new(room.clone(), vec![])), None, None).unwrap();
        assert!(find(&rules, &RuleKind::Room, room.as_str()).unwrap().actions().is_empty());
        remove(&mut rules, &RuleKind::Room, room.as_str()).unwrap();
        assert!(matches!(find(&rules, &RuleKind::Room, room.as_str()), Err(PushError::NotFound(_))));
    }

    #[test]
    fn server_default_rules_cannot_be_deleted_or_replaced() {
        let mut rules = defaults();
        let master = PredefinedOverrideRuleId::Master.as_str();
        assert!(matches!(remove(&mut rules, &RuleKind::Override, master), Err(PushError::InvalidParam(_))));
        let rule = NewPushRule::Room(NewSimplePushRule::new(owned_room_id!("!r:example.org"), vec![]));
        assert!(matches!(insert(&mut rules, rule, Some(master), None), Err(PushError::InvalidParam(_))));
    }

    #[test]
    fn placing_relative_to_an_unknown_rule_is_not_found() {
        let mut rules = defaults();
        let rule = NewPushRule::Room(NewSimplePushRule::new(owned_room_id!("!r:example.org"), vec![]));
        assert!(matches!(insert(&mut rules, rule, None, Some("nope")), Err(PushError::NotFound(_))));
    }

    #[test]
    fn enabling_a_missing_rule_is_not_found_and_an_unknown_kind_is_refused() {
        let mut rules = defaults();
        assert!(matches!(set_enabled(&mut rules, &RuleKind::Override, "nope", true), Err(PushError::NotFound(_))));
        let odd = RuleKind::from("postcontent_custom");
        assert!(matches!(find(&rules, &odd, "x"), Err(PushError::InvalidParam(_))));
        set_enabled(&mut rules, &RuleKind::Override, PredefinedOverrideRuleId::Master.as_str(), true).unwrap();
        assert!(find(&rules, &RuleKind::Override, ".m.rule.master").unwrap().enabled());
    }
}
