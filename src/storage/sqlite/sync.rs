//! The reads of one sync in SQLite, each pass inside one read transaction
//! (one consistent snapshot, one WAL read lock). Incremental syncs read on
//! the calling thread when a reader is free (`SqliteStore::read_quick`).

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CachedSql, SqliteStore,
    events::{EVENT_COLUMNS, event_from_row},
    snapshot,
};
use crate::storage::{
    Result, SyncStore,
    e2ee::ToDeviceRow,
    streams::{AccountDataRow, PresenceRow, ReceiptRow},
    sync::{
        MemberSummary, RoomDetails, RoomDetailsQuery, SlidingRoomInfo, SyncRoomQuery, SyncRoomRows, SyncUserQuery,
        SyncUserRows,
    },
};

fn membership_rows(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

fn user_rows(c: &Connection, q: &SyncUserQuery) -> Result<SyncUserRows> {
    let mut out = SyncUserRows::default();
    let user = &q.user_id;
    out.memberships_changed = match q.since {
        None => membership_rows(
            c,
            "SELECT room_id, membership, stream_ordering FROM room_memberships WHERE user_id = ?1 AND forgotten = 0",
            [user],
        )?,
        Some((events, _)) => membership_rows(
            c,
            "SELECT room_id, membership, stream_ordering FROM room_memberships
             WHERE user_id = ?1 AND stream_ordering > ?2 AND forgotten = 0",
            params![user, events],
        )?,
    };
    let newest_membership = out.memberships_changed.iter().map(|(_, _, pos)| *pos).max().unwrap_or(0);
    out.until_events = q.until_events.max(newest_membership);
    let until_events = out.until_events;
    let (since_events, since_misc) = q.since.unwrap_or((0, 0));
    // A stream that has not moved since the token has nothing new: most
    // syncs woken by a message skip the `misc` queries, and the other way
    // round.
    let (events_moved, misc_moved) = (until_events > since_events, q.until_misc > since_misc);

    if misc_moved {
        let mut stmt = c.prepare_cached(
            "SELECT room_id, type, content FROM account_data
             WHERE user_id = ?1 AND stream_id > ?2 AND stream_id <= ?3 ORDER BY stream_id",
        )?;
        out.account_data = stmt
            .query_map(params![user, since_misc, q.until_misc], |r| {
                Ok(AccountDataRow { room_id: r.get(0)?, kind: r.get(1)?, content: r.get(2)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }

    if q.since.is_some() {
        out.memberships = membership_rows(
            c,
            "SELECT room_id, membership, stream_ordering FROM room_memberships WHERE user_id = ?1 AND forgotten = 0",
            [user],
        )?;
    }
    if q.since.is_some() && events_moved {
        let mut stmt = c.prepare_cached(
            "SELECT DISTINCT room_id FROM events WHERE stream_ordering > ?1 AND stream_ordering <= ?2 AND outlier = 0",
        )?;
        out.rooms_changed =
            stmt.query_map(params![since_events, until_events], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    }

    if q.presence && misc_moved {
        let mut stmt = c.prepare_cached(
            "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p
             WHERE p.stream_id > ?2 AND p.stream_id <= ?3 AND (p.user_id = ?1 OR p.user_id IN (
                 SELECT other.user_id FROM room_memberships mine
                 JOIN room_memberships other ON other.room_id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'))
             ORDER BY p.stream_id",
        )?;
        out.presence = stmt
            .query_map(params![user, since_misc, q.until_misc], |r| {
                Ok(PresenceRow {
                    user_id: r.get(0)?,
                    state: r.get(1)?,
                    status_msg: r.get(2)?,
                    last_active_ts: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }

    device_rows(c, q, (since_events, since_misc), (events_moved, misc_moved), until_events, &mut out)?;
    // After `device_rows`: from the membership changes it read.
    if q.presence && q.since.is_some() && events_moved {
        out.new_room_mates = new_room_mates(c, user, &out)?;
    }
    Ok(out)
}

/// To-device messages, device list changes and key counts.
fn device_rows(
    c: &Connection,
    q: &SyncUserQuery,
    (since_events, since_misc): (i64, i64),
    (events_moved, misc_moved): (bool, bool),
    until_events: i64,
    out: &mut SyncUserRows,
) -> Result<()> {
    let (user, device) = (&q.user_id, &q.device_id);
    if let Some(after) = q.to_device_after
        && after.is_none_or(|after| q.until_misc > after)
    {
        let mut stmt = c.prepare_cached(
            "SELECT sender, type, content FROM to_device_messages
             WHERE user_id = ?1 AND device_id = ?2 AND stream_id > ?3 AND stream_id <= ?4 ORDER BY id",
        )?;
        // Syncing with a token acknowledges what it covered: those messages
        // are deleted (by the caller) and never sent again.
        out.to_device = stmt
            .query_map(params![user, device, after.unwrap_or(i64::MIN), q.until_misc], |r| {
                Ok(ToDeviceRow { sender: r.get(0)?, kind: r.get(1)?, content: r.get(2)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    if let Some(Some(acked)) = q.to_device_after {
        out.to_device_to_ack = c.one(
            "SELECT EXISTS (SELECT 1 FROM to_device_messages WHERE user_id = ?1 AND device_id = ?2 AND stream_id <= ?3)",
            params![user, device, acked],
            |r| r.get(0),
        )?;
    }
    if q.since.is_some() && misc_moved {
        let mut stmt = c.prepare_cached(
            "SELECT d.user_id FROM device_list_changes d
             WHERE d.stream_id > ?2 AND d.stream_id <= ?3 AND (d.user_id = ?1 OR d.user_id IN (
                 SELECT other.user_id FROM room_memberships mine
                 JOIN room_memberships other ON other.room_id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'))",
        )?;
        out.device_list_changes =
            stmt.query_map(params![user, since_misc, q.until_misc], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    }
    if q.since.is_some() && events_moved {
        let mut stmt = c.prepare_cached(
            "SELECT e.state_key, json_extract(e.json, '$.content.membership') FROM events e
             JOIN room_memberships mine ON mine.room_id = e.room_id AND mine.user_id = ?1
             WHERE e.type = 'm.room.member' AND e.outlier = 0 AND e.stream_ordering > ?2 AND e.stream_ordering <= ?3
             UNION
             SELECT other.user_id, 'leave' FROM room_memberships mine
             JOIN room_memberships other ON other.room_id = mine.room_id
             WHERE mine.user_id = ?1 AND mine.membership IN ('leave', 'ban')
               AND mine.stream_ordering > ?2 AND mine.stream_ordering <= ?3",
        )?;
        out.membership_changes_seen = stmt
            .query_map(params![user, since_events, until_events], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        // Only needed to sort the changes above into `changed` and `left`.
        if !out.membership_changes_seen.is_empty() {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT other.user_id FROM room_memberships mine
                 JOIN room_memberships other ON other.room_id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'",
            )?;
            out.users_sharing_rooms = stmt.query_map([user], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        }
    }
    let mut stmt = c.prepare_cached(
        "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
    )?;
    out.one_time_key_counts =
        stmt.query_map(params![user, device], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
    )?;
    out.unused_fallback_algorithms =
        stmt.query_map(params![user, device], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Who newly shares a room with `user` in the window, from the membership
/// changes already read (no read at all when there are none), with their
/// presence rows. Spec: "Presence": a client learns the presence of users
/// it newly shares a room with, whenever that presence last changed.
fn new_room_mates(c: &Connection, user: &str, out: &SyncUserRows) -> Result<Vec<(String, Option<PresenceRow>)>> {
    let mut mates: BTreeSet<String> = out
        .membership_changes_seen
        .iter()
        .filter(|(_, membership)| membership == "join" || membership == "invite")
        .map(|(member, _)| member.clone())
        .collect();
    let rooms_joined: Vec<&str> =
        out.memberships_changed.iter().filter(|(_, m, _)| m == "join").map(|(room, _, _)| room.as_str()).collect();
    if !rooms_joined.is_empty() {
        let mut stmt = c.prepare_cached(
            "SELECT DISTINCT user_id FROM room_memberships
             WHERE room_id IN (SELECT value FROM json_each(?1)) AND membership = 'join'",
        )?;
        let rooms = serde_json::to_string(&rooms_joined).expect("a list of strings serialises");
        for member in stmt.query_map([rooms], |r| r.get::<_, String>(0))? {
            mates.insert(member?);
        }
    }
    mates.remove(user);
    // Those whose presence the window's rows already carry are no news.
    for row in &out.presence {
        mates.remove(&row.user_id);
    }
    if mates.is_empty() {
        return Ok(vec![]);
    }
    let mut stmt = c.prepare_cached(
        "SELECT user_id, state, status_msg, last_active_ts FROM presence
         WHERE user_id IN (SELECT value FROM json_each(?1))",
    )?;
    let list = serde_json::to_string(&mates).expect("a list of strings serialises");
    let mut rows: HashMap<String, PresenceRow> = stmt
        .query_map([list], |r| {
            Ok(PresenceRow { user_id: r.get(0)?, state: r.get(1)?, status_msg: r.get(2)?, last_active_ts: r.get(3)? })
        })?
        .map(|row| row.map(|row| (row.user_id.clone(), row)))
        .collect::<rusqlite::Result<_>>()?;
    Ok(mates.into_iter().map(|user| (user.clone(), rows.remove(&user))).collect())
}

fn room_rows(c: &Connection, user_id: &str, q: &SyncRoomQuery) -> Result<SyncRoomRows> {
    let mut out = SyncRoomRows::default();
    if let Some((after, until, limit)) = q.timeline {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_ordering <= ?2
             AND stream_ordering > ?3 AND outlier = 0 ORDER BY stream_ordering DESC LIMIT ?4"
        ))?;
        out.events = stmt
            .query_map(params![q.room_id, until, after, limit as i64], event_from_row)?
            .collect::<rusqlite::Result<_>>()?;
    }
    let (since, until) = q.receipts;
    if until > since {
        let mut stmt = c.prepare_cached(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
             WHERE room_id = ?1 AND stream_id > ?2 AND stream_id <= ?3 ORDER BY stream_id",
        )?;
        out.receipts = stmt
            .query_map(params![q.room_id, since, until], |r| {
                Ok(ReceiptRow {
                    room_id: r.get(0)?,
                    user_id: r.get(1)?,
                    receipt_type: r.get(2)?,
                    thread_id: r.get(3)?,
                    event_id: r.get(4)?,
                    ts: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    if q.unread.is_some() || q.members {
        let query = RoomDetailsQuery {
            room_id: q.room_id.clone(),
            state_at: vec![],
            unread: q.unread.clone(),
            members: q.members,
        };
        out.details = Some(room_details(c, user_id, &query)?);
    }
    Ok(out)
}

fn room_details(c: &Connection, user_id: &str, q: &RoomDetailsQuery) -> Result<RoomDetails> {
    let mut out = RoomDetails::default();
    let mut stmt = c.prepare_cached(
        "SELECT state_group FROM events WHERE room_id = ?1 AND stream_ordering <= ?2 AND outlier = 0
         ORDER BY stream_ordering DESC LIMIT 1",
    )?;
    for position in &q.state_at {
        out.state_groups.push(stmt.query_row(params![q.room_id, position], |r| r.get(0)).optional()?);
    }
    if q.members {
        let mut members = MemberSummary::default();
        let mut count =
            c.prepare_cached("SELECT COUNT(*) FROM room_memberships WHERE room_id = ?1 AND membership = ?2")?;
        members.joined_count = count.query_row(params![q.room_id, "join"], |r| r.get(0))?;
        members.invited_count = count.query_row(params![q.room_id, "invite"], |r| r.get(0))?;
        let mut first = c.prepare_cached(
            "SELECT user_id FROM room_memberships WHERE room_id = ?1 AND membership = ?2 ORDER BY user_id LIMIT 6",
        )?;
        for membership in ["join", "invite"] {
            for user in first.query_map(params![q.room_id, membership], |r| r.get::<_, String>(0))? {
                members.heroes.push(user?);
            }
        }
        out.members = Some(members);
    }
    if let Some(earlier) = &q.unread {
        out.unread = Some(super::push::unread_count(c, &q.room_id, user_id, earlier.clone())?);
    }
    Ok(out)
}

/// What sliding sync orders and filters one room by.
fn sliding_room_info(c: &Connection, user_id: &str, room_id: &str) -> Result<SlidingRoomInfo> {
    let newest = |sql: &str| -> Result<Option<i64>> {
        Ok(c.prepare_cached(sql)?.query_row(params![room_id], |r| r.get(0)).optional()?)
    };
    // Walks the room's events from the newest: the newest is almost always
    // one that counts as activity.
    let bump_stamp = newest(
        "SELECT stream_ordering FROM events INDEXED BY events_by_room
         WHERE room_id = ?1 AND outlier = 0 AND type IN ('m.room.create', 'm.room.message', 'm.room.encrypted',
             'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info')
         ORDER BY stream_ordering DESC LIMIT 1",
    )?;
    let last_event = newest(
        "SELECT stream_ordering FROM events INDEXED BY events_by_room
         WHERE room_id = ?1 AND outlier = 0 ORDER BY stream_ordering DESC LIMIT 1",
    )?;
    let room_type = c
        .prepare_cached(
            "SELECT json_extract(json, '$.content.type') FROM events
             WHERE room_id = ?1 AND type = 'm.room.create' AND state_key = '' LIMIT 1",
        )?
        .query_row(params![room_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    let encrypted = c.one(
        "SELECT EXISTS (SELECT 1 FROM events
         WHERE room_id = ?1 AND type = 'm.room.encryption' AND state_key = '' AND outlier = 0)",
        params![room_id],
        |r| r.get(0),
    )?;
    let membership_sender = c
        .prepare_cached(
            "SELECT e.sender FROM room_memberships m JOIN events e ON e.event_id = m.event_id
             WHERE m.room_id = ?1 AND m.user_id = ?2",
        )?
        .query_row(params![room_id, user_id], |r| r.get(0))
        .optional()?;
    Ok(SlidingRoomInfo { bump_stamp, last_event, room_type, encrypted, membership_sender })
}

/// At most this many rooms make an incremental sync's room reads quick.
const QUICK_ROOMS: usize = 8;

#[async_trait]
impl SyncStore for SqliteStore {
    // An incremental sync reads on the calling thread (see `read_quick`).
    async fn sync_user_rows(&self, query: SyncUserQuery) -> Result<SyncUserRows> {
        let quick = query.since.is_some();
        let read = move |c: &Connection| snapshot(c, |c| user_rows(c, &query));
        if quick { self.read_quick(read).await } else { self.read(read).await }
    }

    // Quick when few rooms are read and none needs its members counted
    // (every timeline continues an earlier sync).
    async fn sync_room_rows(&self, user_id: String, queries: Vec<SyncRoomQuery>) -> Result<Vec<SyncRoomRows>> {
        if queries.is_empty() {
            return Ok(vec![]);
        }
        let quick = queries.len() <= QUICK_ROOMS && queries.iter().all(|q| !q.members);
        let read = move |c: &Connection| snapshot(c, |c| queries.iter().map(|q| room_rows(c, &user_id, q)).collect());
        if quick { self.read_quick(read).await } else { self.read(read).await }
    }

    async fn sync_room_details(&self, user_id: String, queries: Vec<RoomDetailsQuery>) -> Result<Vec<RoomDetails>> {
        if queries.is_empty() {
            return Ok(vec![]);
        }
        self.read(move |c| snapshot(c, |c| queries.iter().map(|q| room_details(c, &user_id, q)).collect())).await
    }

    // Quick when only a few rooms changed since the connection's last look.
    async fn sliding_room_info(&self, user_id: String, rooms: Vec<String>) -> Result<Vec<SlidingRoomInfo>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let quick = rooms.len() <= QUICK_ROOMS;
        let read =
            move |c: &Connection| snapshot(c, |c| rooms.iter().map(|r| sliding_room_info(c, &user_id, r)).collect());
        if quick { self.read_quick(read).await } else { self.read(read).await }
    }
}
