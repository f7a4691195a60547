//! Room memberships in SQLite (each follows the latest member event of
//! the room), and invites to rooms on other servers.

use async_trait::async_trait;
use ruma::events::room::member::MembershipState;
use rusqlite::{OptionalExtension, params};

use super::{CachedSql, SqliteStore, events::insert_outlier};
use crate::storage::{MembershipStore, Result, federation::RemoteInvite, rooms::Outlier};

#[async_trait]
impl MembershipStore for SqliteStore {
    async fn membership(&self, room_id: String, user_id: String) -> Result<Option<(MembershipState, i64)>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT membership, stream_ordering FROM room_memberships WHERE room_id = ?1 AND user_id = ?2",
                params![room_id, user_id],
                |r| Ok((MembershipState::from(r.get::<_, String>(0)?), r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn joined_since(&self, room_id: String, user_id: String, after: i64) -> Result<bool> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ?1 AND type = 'm.room.member'
                    AND state_key = ?2 AND stream_ordering > ?3
                    AND json_extract(json, '$.content.membership') = 'join')",
                params![room_id, user_id, after],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn rooms_with_membership(&self, user_id: String, membership: MembershipState) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT room_id FROM room_memberships WHERE user_id = ?1 AND membership = ?2 AND forgotten = 0
                 ORDER BY stream_ordering",
            )?;
            let rows = stmt.query_map(params![user_id, membership.as_str()], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn room_members_with(&self, room_id: String, membership: MembershipState) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user_id FROM room_memberships WHERE room_id = ?1 AND membership = ?2 ORDER BY user_id",
            )?;
            let rows = stmt.query_map(params![room_id, membership.as_str()], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn forget_room(&self, room_id: String, user_id: String) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "UPDATE room_memberships SET forgotten = 1
                 WHERE room_id = ?1 AND user_id = ?2 AND membership IN ('leave', 'ban')",
                params![room_id, user_id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn users_sharing_rooms(&self, user_id: String) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT other.user_id FROM room_memberships mine
                 JOIN room_memberships other ON other.room_id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'",
            )?;
            let rows = stmt.query_map([&user_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn store_remote_invite(
        &self,
        invite: Outlier,
        user_id: String,
        membership: MembershipState,
        room_version: String,
        stripped_state: String,
        via: String,
    ) -> Result<i64> {
        self.write(move |c| {
            let pos = insert_outlier(c, &invite)?;
            c.exec(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten)
                 VALUES (?1, ?2, ?5, ?3, ?4, 0)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                     event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
                params![invite.room_id, user_id, invite.event_id, pos, membership.as_str()],
            )?;
            c.exec(
                "INSERT INTO remote_invites (room_id, user_id, event_id, room_version, stripped_state, via)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = excluded.event_id,
                     room_version = excluded.room_version, stripped_state = excluded.stripped_state,
                     via = excluded.via",
                params![invite.room_id, user_id, invite.event_id, room_version, stripped_state, via],
            )?;
            Ok(pos)
        })
        .await
    }

    async fn remote_invite(&self, room_id: String, user_id: String) -> Result<Option<RemoteInvite>> {
        self.read(move |c| {
            Ok(c.one(
                "SELECT event_id, room_version, stripped_state, via FROM remote_invites
                 WHERE room_id = ?1 AND user_id = ?2",
                params![room_id, user_id],
                |r| {
                    Ok(RemoteInvite {
                        event_id: r.get(0)?,
                        room_version: r.get(1)?,
                        stripped_state: r.get(2)?,
                        via: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn decline_remote_invite(&self, leave: Outlier, user_id: String) -> Result<i64> {
        self.write(move |c| {
            let pos = insert_outlier(c, &leave)?;
            c.exec(
                "UPDATE room_memberships SET membership = 'leave', event_id = ?3, stream_ordering = ?4
                 WHERE room_id = ?1 AND user_id = ?2",
                params![leave.room_id, user_id, leave.event_id, pos],
            )?;
            c.exec("DELETE FROM remote_invites WHERE room_id = ?1 AND user_id = ?2", params![leave.room_id, user_id])?;
            Ok(pos)
        })
        .await
    }
}
