//! Sliding sync's `required_state` (MSC4186, "Room config"): which state
//! events a room carries, as `(type, state_key)` pairs where `*` matches
//! any type or key, `$ME` is the user's own key, and `m.room.member` with
//! `$LAZY` asks for the members the timeline needs (lazy loading). Configs
//! of the lists and subscriptions a room matches are merged into their
//! union.

use std::collections::BTreeSet;

use ruma::{UserId, events::StateEventType};

/// The state key part of one `required_state` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum StateKeyMatch {
    Any,
    Me,
    Exact(String),
}

/// One room's merged `required_state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredState {
    /// `(type, key)`; a type of `None` is `*`.
    entries: BTreeSet<(Option<String>, StateKeyMatch)>,
    /// `m.room.member` / `$LAZY`: members of the timeline's senders.
    pub lazy_members: bool,
}

impl RequiredState {
    /// Parses a request's `required_state` pairs.
    pub fn from_pairs(pairs: &[(StateEventType, String)]) -> Self {
        let mut out = Self::default();
        for (kind, key) in pairs {
            let kind = kind.to_string();
            if kind == StateEventType::RoomMember.to_string() && key == "$LAZY" {
                out.lazy_members = true;
                continue;
            }
            let key = match key.as_str() {
                "*" => StateKeyMatch::Any,
                "$ME" => StateKeyMatch::Me,
                other => StateKeyMatch::Exact(other.to_owned()),
            };
            out.entries.insert(((kind != "*").then_some(kind), key));
        }
        out
    }

    /// The union of two configs: whatever either asks for.
    pub fn merge(&mut self, other: &Self) {
        self.entries.extend(other.entries.iter().cloned());
        self.lazy_members |= other.lazy_members;
    }

    /// Whether everything `other` asks for is asked for here too (so a
    /// client that got this config's state has `other`'s).
    pub fn covers(&self, other: &Self) -> bool {
        (self.lazy_members || !other.lazy_members)
            && other.entries.iter().all(|(kind, key)| self.covers_entry(kind, key))
    }

    fn covers_entry(&self, kind: &Option<String>, key: &StateKeyMatch) -> bool {
        self.entries.iter().any(|(k, sk)| (k.is_none() || k == kind) && (*sk == StateKeyMatch::Any || sk == key))
    }

    /// Whether the state event `(kind, key)` is asked for, for `user`.
    pub fn matches(&self, kind: &StateEventType, key: &str, user: &UserId) -> bool {
        let kind = kind.to_string();
        self.entries.iter().any(|(k, sk)| {
            k.as_ref().is_none_or(|k| *k == kind)
                && match sk {
                    StateKeyMatch::Any => true,
                    StateKeyMatch::Me => key == user.as_str(),
                    StateKeyMatch::Exact(exact) => exact == key,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> RequiredState {
        let pairs: Vec<(StateEventType, String)> = pairs.iter().map(|(t, k)| ((*t).into(), (*k).to_owned())).collect();
        RequiredState::from_pairs(&pairs)
    }

    #[test]
    fn exact_wildcard_and_me() {
        let me = user_id!("@me:x");
        let c = config(&[("m.room.name", ""), ("m.space.child", "*"), ("m.room.member", "$ME"), ("*", "")]);
        assert!(c.matches(&"m.room.name".into(), "", me));
        assert!(c.matches(&"m.space.child".into(), "!a:x", me));
        assert!(c.matches(&"m.room.member".into(), "@me:x", me));
        assert!(!c.matches(&"m.room.member".into(), "@other:x", me));
        assert!(c.matches(&"m.room.topic".into(), "", me), "`*` matches every type with the key");
        assert!(!c.matches(&"m.room.topic".into(), "k", me));
        assert!(!c.lazy_members);
    }

    #[test]
    fn lazy_is_a_flag_not_a_key() {
        let c = config(&[("m.room.member", "$LAZY")]);
        assert!(c.lazy_members);
        assert!(!c.matches(&"m.room.member".into(), "$LAZY", user_id!("@me:x")));
    }

    #[test]
    fn merge_is_the_union_and_covers_tells_expansion() {
        let list = config(&[("m.room.name", ""), ("m.room.member", "$LAZY")]);
        let mut merged = config(&[("m.room.pinned_events", "")]);
        assert!(!merged.covers(&list));
        merged.merge(&list);
        assert!(merged.covers(&list));
        assert!(merged.lazy_members);
        assert!(!list.covers(&merged));
        assert!(config(&[("*", "*"), ("m.room.member", "$LAZY")]).covers(&merged));
        assert!(!config(&[("*", "*")]).covers(&merged), "lazy members are asked for apart");
        assert!(config(&[("m.space.child", "*")]).covers(&config(&[("m.space.child", "!r:x")])));
    }
}
