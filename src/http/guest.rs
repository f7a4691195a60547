//! Which client-server endpoints a guest account may use (client-server
//! API, "Guest Access", "Client behaviour"): the spec's list, and the few
//! more a client needs to sit in a room as a guest (typing, receipts, its
//! own account data and profile, filters, presence, push rules, TURN,
//! downloading media), as Synapse allows them. Everything else answers 403
//! `M_GUEST_ACCESS_FORBIDDEN` before its handler runs.

use http::Method;

/// The endpoints guests may use: a method and the path after
/// `/_matrix/client/<version>/`, `*` standing for one path parameter.
const GUEST_ENDPOINTS: &[(Method, &str)] = &[
    // Retrieving events.
    (Method::GET, "sync"),
    (Method::GET, "events"),
    (Method::GET, "events/*"),
    (Method::GET, "rooms/*/initialSync"),
    (Method::GET, "rooms/*/state"),
    (Method::GET, "rooms/*/state/*"),
    (Method::GET, "rooms/*/state/*/*"),
    (Method::GET, "rooms/*/context/*"),
    (Method::GET, "rooms/*/event/*"),
    (Method::GET, "rooms/*/messages"),
    (Method::GET, "rooms/*/members"),
    (Method::GET, "rooms/*/joined_members"),
    (Method::GET, "rooms/*/relations/*"),
    (Method::GET, "rooms/*/relations/*/*"),
    (Method::GET, "rooms/*/relations/*/*/*"),
    (Method::GET, "rooms/*/hierarchy"),
    (Method::GET, "room_summary/*"),
    (Method::GET, "publicRooms"),
    // Sending events.
    (Method::POST, "rooms/*/join"),
    (Method::POST, "join/*"),
    (Method::POST, "rooms/*/leave"),
    (Method::PUT, "rooms/*/send/*/*"),
    (Method::PUT, "sendToDevice/*/*"),
    (Method::PUT, "rooms/*/typing/*"),
    (Method::POST, "rooms/*/receipt/*/*"),
    (Method::POST, "rooms/*/read_markers"),
    // Their own account.
    (Method::GET, "account/whoami"),
    (Method::POST, "register"),
    (Method::POST, "logout"),
    (Method::POST, "logout/all"),
    (Method::GET, "capabilities"),
    (Method::GET, "profile/*"),
    (Method::GET, "profile/*/*"),
    (Method::PUT, "profile/*/*"),
    (Method::GET, "devices"),
    (Method::GET, "devices/*"),
    (Method::PUT, "devices/*"),
    (Method::GET, "user/*/account_data/*"),
    (Method::PUT, "user/*/account_data/*"),
    (Method::GET, "user/*/rooms/*/account_data/*"),
    (Method::PUT, "user/*/rooms/*/account_data/*"),
    (Method::GET, "user/*/rooms/*/tags"),
    (Method::PUT, "user/*/rooms/*/tags/*"),
    (Method::DELETE, "user/*/rooms/*/tags/*"),
    (Method::POST, "user/*/filter"),
    (Method::GET, "user/*/filter/*"),
    (Method::GET, "presence/*/status"),
    (Method::PUT, "presence/*/status"),
    (Method::GET, "pushrules"),
    (Method::GET, "pushrules/*"),
    (Method::GET, "voip/turnServer"),
    // Media others posted (uploads and URL previews are refused).
    (Method::GET, "media/config"),
    (Method::GET, "media/download/*/*"),
    (Method::GET, "media/download/*/*/*"),
    (Method::GET, "media/thumbnail/*/*"),
    // End-to-end encryption.
    (Method::POST, "keys/upload"),
    (Method::POST, "keys/query"),
    (Method::POST, "keys/claim"),
    (Method::GET, "keys/changes"),
];

/// Whether a guest may call the endpoint mounted on `path` (a route
/// template of ruma's, `{name}` for each parameter, or a concrete path).
pub fn guest_may_use(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/_matrix/client/") else {
        return false;
    };
    // The version: `r0`, `v1`, `v3`, or `unstable/<namespace>`.
    let rest = match rest.split_once('/') {
        Some(("unstable", tail)) => tail.split_once('/').map_or(tail, |(_, t)| t),
        Some((_, tail)) => tail,
        None => return false,
    };
    let rest = rest.trim_end_matches('/');
    GUEST_ENDPOINTS.iter().any(|(m, pattern)| m == method && matches(pattern, rest))
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_endpoints_are_allowed() {
        assert!(guest_may_use(&Method::GET, "/_matrix/client/v3/sync"));
        assert!(guest_may_use(&Method::GET, "/_matrix/client/r0/rooms/{room_id}/messages"));
        assert!(guest_may_use(&Method::PUT, "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"));
        assert!(guest_may_use(&Method::POST, "/_matrix/client/v3/join/{room_id_or_alias}"));
        assert!(guest_may_use(&Method::GET, "/_matrix/client/v3/rooms/!a:x/initialSync"));
        assert!(guest_may_use(&Method::GET, "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}"));
        assert!(guest_may_use(&Method::GET, "/_matrix/client/v1/media/download/x/abc"));
    }

    #[test]
    fn others_are_not() {
        assert!(!guest_may_use(&Method::POST, "/_matrix/client/v3/createRoom"));
        assert!(!guest_may_use(&Method::PUT, "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}"));
        assert!(!guest_may_use(&Method::POST, "/_matrix/client/v3/rooms/{room_id}/invite"));
        assert!(!guest_may_use(&Method::GET, "/_matrix/client/v3/sync/extra"));
        assert!(!guest_may_use(&Method::GET, "/_matrix/federation/v1/version"));
        assert!(!guest_may_use(&Method::POST, "/_matrix/client/v3/user_directory/search"));
        assert!(!guest_may_use(&Method::POST, "/_matrix/media/v3/upload"));
        assert!(!guest_may_use(&Method::GET, "/_matrix/client/v1/media/preview_url"));
    }
}
