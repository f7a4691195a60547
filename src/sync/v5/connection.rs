//! Sliding sync connections (MSC4186, "Connections"): per user, device and
//! `conn_id`, what the connection has sent so far, under the `pos` the
//! response that sent it returned, so the next request sends only what
//! changed. The previous `pos` stays valid too (a client retrying after a
//! lost response is served from it); older ones are dropped once a newer
//! one is used. A request supersedes the one in flight on its connection.
//! Kept in memory: after a restart every `pos` is unknown, and clients
//! start afresh (`M_UNKNOWN_POS`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};
use tokio::sync::watch;

use super::super::{SyncToken, sections::required_state::RequiredState};
use crate::storage::sync::SlidingRoomInfo;

/// A connection unused this long is forgotten.
const IDLE_EXPIRY: Duration = Duration::from_secs(6 * 3600);

/// What one room's last response on a connection carried.
#[derive(Debug, Clone)]
pub struct SentRoom {
    /// The events position the room's timeline and state were sent up to.
    pub events_until: i64,
    /// The user's membership the room was sent with.
    pub membership: String,
    /// The room config the client has the room's data for.
    pub timeline_limit: usize,
    pub required_state: Arc<RequiredState>,
    /// Members sent for lazy loading.
    pub members_sent: Arc<HashSet<String>>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub is_dm: bool,
    pub bump_stamp: Option<i64>,
}

/// What a connection has sent, as of one `pos`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionState {
    /// The stream positions covered (none before the first response).
    pub token: Option<SyncToken>,
    pub rooms: HashMap<OwnedRoomId, SentRoom>,
    /// What each room was ordered and filtered by, as last read.
    pub room_info: HashMap<OwnedRoomId, SlidingRoomInfo>,
    /// The rooms in the user's `m.direct`, as last read.
    pub dm_rooms: HashSet<OwnedRoomId>,
    /// Each list's count as last sent.
    pub list_counts: BTreeMap<String, usize>,
}

type ConnectionKey = (OwnedUserId, OwnedDeviceId, String);

struct Connection {
    /// States by `pos` number: the newest, and the one it was made from.
    states: Vec<(u64, Arc<ConnectionState>)>,
    next_pos: u64,
    /// The number of the newest request: a request that sees it move on
    /// was superseded.
    in_flight: watch::Sender<u64>,
    last_used: Instant,
}

/// A request's claim on its connection: which state it starts from, and
/// whether a newer request has taken over.
pub struct Ticket {
    key: ConnectionKey,
    /// The `pos` number the request was made with.
    base: Option<u64>,
    number: u64,
    newest: watch::Receiver<u64>,
    pub state: Arc<ConnectionState>,
}

impl Ticket {
    /// Resolves once a newer request on the connection has begun.
    pub async fn superseded(&self) {
        let number = self.number;
        let _ = self.newest.clone().wait_for(|newest| *newest != number).await;
    }

    /// The `pos` the request was made with (`None` for a new connection).
    pub fn base_pos(&self, connections: &Connections) -> Option<String> {
        self.base.map(|n| connections.pos_string(n))
    }
}

/// Why a request cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The `pos` is not one this connection handed out, or it expired.
    UnknownPos,
}

/// Every sliding sync connection of this process.
pub struct Connections {
    connections: Mutex<HashMap<ConnectionKey, Connection>>,
    /// Distinguishes this process's `pos` tokens from those of an earlier run.
    epoch: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Self { connections: Mutex::new(HashMap::new()), epoch: rand::random() }
    }
}

impl Connections {
    fn pos_string(&self, n: u64) -> String {
        format!("{:x}_{n}", self.epoch)
    }

    fn parse_pos(&self, pos: &str) -> Option<u64> {
        let (epoch, n) = pos.split_once('_')?;
        (u32::from_str_radix(epoch, 16).ok()? == self.epoch).then_some(())?;
        n.parse().ok()
    }

    /// Starts a request on a connection: from the state of `pos`, or afresh
    /// without one (forgetting what the connection sent). Supersedes the
    /// request in flight on the connection.
    pub fn begin(
        &self,
        user: &OwnedUserId,
        device: &OwnedDeviceId,
        conn_id: &str,
        pos: Option<&str>,
    ) -> Result<Ticket, ConnectionError> {
        let key = (user.clone(), device.clone(), conn_id.to_owned());
        let mut connections = self.connections.lock().expect("connections mutex is never poisoned");
        let now = Instant::now();
        if pos.is_none() {
            connections.retain(|_, c| now.duration_since(c.last_used) < IDLE_EXPIRY);
        }
        let (base, state) = match pos {
            Some(pos) => {
                let number = self.parse_pos(pos).ok_or(ConnectionError::UnknownPos)?;
                let connection = connections.get(&key).ok_or(ConnectionError::UnknownPos)?;
                let (_, state) =
                    connection.states.iter().find(|(n, _)| *n == number).ok_or(ConnectionError::UnknownPos)?;
                (Some(number), state.clone())
            }
            None => (None, Arc::new(ConnectionState::default())),
        };
        let connection = connections.entry(key.clone()).or_insert_with(|| Connection {
            states: Vec::new(),
            next_pos: 1,
            in_flight: watch::Sender::new(0),
            last_used: now,
        });
        if base.is_none() {
            connection.states.clear();
        }
        connection.last_used = now;
        connection.in_flight.send_modify(|n| *n += 1);
        let number = *connection.in_flight.borrow();
        Ok(Ticket { key, base, number, newest: connection.in_flight.subscribe(), state })
    }

    /// Records the state after a response and returns its `pos`; `None`
    /// when a newer request superseded this one (its response is not to
    /// be used, so nothing is recorded).
    pub fn commit(&self, ticket: &Ticket, state: ConnectionState) -> Option<String> {
        let mut connections = self.connections.lock().expect("connections mutex is never poisoned");
        let connection = connections.get_mut(&ticket.key)?;
        if *connection.in_flight.borrow() != ticket.number {
            return None;
        }
        // The client has this request's `pos`: everything before it can go,
        // and a newer `pos` made from the same one was lost.
        connection.states.retain(|(n, _)| Some(*n) == ticket.base);
        let number = connection.next_pos;
        connection.next_pos += 1;
        connection.states.push((number, Arc::new(state)));
        Some(self.pos_string(number))
    }

    /// Whether the request holding `ticket` is still the connection's newest.
    pub fn is_current(&self, ticket: &Ticket) -> bool {
        let connections = self.connections.lock().expect("connections mutex is never poisoned");
        connections.get(&ticket.key).is_some_and(|c| *c.in_flight.borrow() == ticket.number)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use ruma::{owned_device_id, owned_user_id};

    use super::*;

    #[test]
    fn pos_is_kept_for_a_retry_and_dropped_after_a_newer_one() {
        let connections = Connections::default();
        let (user, device) = (owned_user_id!("@a:x"), owned_device_id!("D"));
        let first = connections.begin(&user, &device, "c", None).unwrap();
        let p1 = connections.commit(&first, ConnectionState::default()).unwrap();
        let second = connections.begin(&user, &device, "c", Some(&p1)).unwrap();
        let p2 = connections.commit(&second, ConnectionState::default()).unwrap();
        // The response with p2 was lost: the client retries with p1.
        let retry = connections.begin(&user, &device, "c", Some(&p1)).unwrap();
        let p3 = connections.commit(&retry, ConnectionState::default()).unwrap();
        assert!(connections.begin(&user, &device, "c", Some(&p2)).is_err(), "the lost pos is gone");
        let next = connections.begin(&user, &device, "c", Some(&p3)).unwrap();
        connections.commit(&next, ConnectionState::default()).unwrap();
        assert_eq!(connections.begin(&user, &device, "c", Some(&p1)).err(), Some(ConnectionError::UnknownPos));
        assert!(connections.begin(&user, &device, "other", Some(&p3)).is_err(), "pos is per connection");
        assert!(connections.begin(&user, &device, "c", Some("garbage")).is_err());
    }

    #[test]
    fn a_newer_request_supersedes_the_one_in_flight() {
        let connections = Connections::default();
        let (user, device) = (owned_user_id!("@a:x"), owned_device_id!("D"));
        let first = connections.begin(&user, &device, "c", None).unwrap();
        let p1 = connections.commit(&first, ConnectionState::default()).unwrap();
        let old = connections.begin(&user, &device, "c", Some(&p1)).unwrap();
        let new = connections.begin(&user, &device, "c", Some(&p1)).unwrap();
        assert!(!connections.is_current(&old));
        assert!(old.superseded().now_or_never().is_some(), "the old request stops waiting");
        assert!(new.superseded().now_or_never().is_none());
        assert!(connections.commit(&old, ConnectionState::default()).is_none());
        assert!(connections.commit(&new, ConnectionState::default()).is_some());
    }
}
