//! Ignored users (client-server API, "Ignoring Users"): the users in a
//! user's `m.ignored_user_list` account data, checked when it is set and
//! kept in memory per user, since every sync, pagination and push
//! evaluation asks for them.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedUserId, UserId, events::ignored_user_list::IgnoredUserListEventContent};
use serde_json::Value;

/// The account data type that holds the list.
pub const IGNORED_USER_LIST: &str = "m.ignored_user_list";

/// The users someone ignores.
pub type IgnoredUsers = Arc<HashSet<OwnedUserId>>;

/// How many users' lists are kept in memory.
pub(super) const CACHE_ENTRIES: usize = 20_000;

/// Checks a new `m.ignored_user_list` content: `ignored_users` is an object
/// whose keys are user ids and whose values are objects (the event's schema
/// in the spec). The error says what is wrong.
pub fn check(content: &Value) -> Result<(), String> {
    serde_json::from_value::<IgnoredUserListEventContent>(content.clone())
        .map(|_| ())
        .map_err(|e| format!("invalid {IGNORED_USER_LIST}: {e}"))
}

/// The users a stored list names, leaving out the owner (whose own events
/// are never hidden from them). A list stored before it was checked that
/// does not parse ignores no one.
pub(super) fn parse(owner: &UserId, content: Option<&str>) -> IgnoredUsers {
    let users = content
        .and_then(|c| serde_json::from_str::<IgnoredUserListEventContent>(c).ok())
        .map(|list| list.ignored_users.into_keys().filter(|u| u != owner).collect())
        .unwrap_or_default();
    Arc::new(users)
}

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_list_names_user_ids() {
        assert!(check(&json!({"ignored_users": {"@a:x": {}}})).is_ok());
        assert!(check(&json!({"ignored_users": {}})).is_ok());
        assert!(check(&json!({})).is_err(), "ignored_users is required");
        assert!(check(&json!({"ignored_users": ["@a:x"]})).is_err());
        assert!(check(&json!({"ignored_users": {"not a user": {}}})).is_err());
        assert!(check(&json!({"ignored_users": {"@a:x": true}})).is_err());
    }

    #[test]
    fn the_owner_and_bad_lists_ignore_no_one() {
        let owner = user_id!("@me:x");
        let list = parse(owner, Some(r#"{"ignored_users": {"@me:x": {}, "@a:x": {}}}"#));
        assert_eq!(list.len(), 1);
        assert!(list.contains(user_id!("@a:x")));
        assert!(parse(owner, Some(r#"{"ignored_users": 3}"#)).is_empty());
        assert!(parse(owner, None).is_empty());
    }
}
