//! The search index (an FTS5 table, `event_search`) and the user
//! directory's reads, in SQLite. Room and user sets are bound as one JSON
//! array each (`json_each`), so every statement stays one prepared text.

use async_trait::async_trait;
use rusqlite::params;

use super::{CachedSql, SqliteStore};
use crate::storage::{
    Result, SearchStore,
    search::{DirectoryUser, SearchEntry, SearchHit, SearchOrder},
};

fn hit(r: &rusqlite::Row<'_>) -> rusqlite::Result<SearchHit> {
    Ok(SearchHit {
        stream_ordering: r.get(0)?,
        event_id: r.get(1)?,
        room_id: r.get(2)?,
        sender: r.get(3)?,
        kind: r.get(4)?,
        state_group: r.get(5)?,
        // bm25() is lower for better matches.
        rank: -r.get::<_, f64>(6)?,
    })
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn index_events(&self, entries: Vec<SearchEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for entry in entries {
                // FTS5 has no upsert: replace by deleting first.
                c.exec("DELETE FROM event_search WHERE rowid = ?1", [entry.stream_ordering])?;
                // Checked in the write: a redaction whose listener ran
                // first has already been applied to the event.
                c.exec(
                    "INSERT INTO event_search (rowid, body, name, topic) SELECT ?1, ?2, ?3, ?4
                     WHERE NOT EXISTS (SELECT 1 FROM events WHERE stream_ordering = ?1 AND redacted_by IS NOT NULL)",
                    params![entry.stream_ordering, entry.body, entry.name, entry.topic],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn unindex_event(&self, event_id: String) -> Result<()> {
        self.write(move |c| {
            c.exec(
                "DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = ?1)",
                [&event_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn search_events(
        &self,
        rooms: Vec<String>,
        matching: String,
        order: SearchOrder,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let rooms = serde_json::to_string(&rooms).expect("a list of strings serializes");
        self.read(move |c| {
            let sql = match order {
                SearchOrder::Rank => {
                    "SELECT e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, e.state_group,
                            bm25(event_search)
                     FROM event_search JOIN events e ON e.stream_ordering = event_search.rowid
                     WHERE event_search MATCH ?1 AND e.room_id IN (SELECT value FROM json_each(?2))
                     ORDER BY bm25(event_search), e.stream_ordering DESC LIMIT ?3"
                }
                SearchOrder::Recent => {
                    "SELECT e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, e.state_group,
                            bm25(event_search)
                     FROM event_search JOIN events e ON e.stream_ordering = event_search.rowid
                     WHERE event_search MATCH ?1 AND e.room_id IN (SELECT value FROM json_each(?2))
                     ORDER BY e.stream_ordering DESC LIMIT ?3"
                }
            };
            let mut stmt = c.prepare_cached(sql)?;
            let hits = stmt.query_map(params![matching, rooms, limit as i64], hit)?;
            Ok(hits.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn directory_candidates(
        &self,
        searcher: String,
        term: String,
        every_local_user: bool,
        limit: usize,
    ) -> Result<Vec<DirectoryUser>> {
        let escaped: String = term
            .chars()
            .flat_map(|ch| match ch {
                '%' | '_' | '\\' => vec!['\\', ch],
                _ => vec![ch],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        self.read(move |c| {
            let row = |r: &rusqlite::Row<'_>| {
                Ok(DirectoryUser { user_id: r.get(0)?, displayname: r.get(1)?, avatar_url: r.get(2)? })
            };
            // The users the searcher may find through rooms: the other
            // members of the rooms they are in, and the members of public
            // rooms (anyone may join or read them; Synapse's
            // `users_in_public_rooms`), the searcher too. A local user's
            // profile is read from their profile (current), a remote
            // user's from their membership event.
            let mut stmt = c.prepare_cached(
                "SELECT user_id, name, avatar FROM (
                     SELECT m.user_id AS user_id,
                            COALESCE((SELECT json_extract(p.value, '$') FROM profile_fields p
                                      WHERE p.user_id = m.user_id AND p.field = 'displayname'),
                                     MAX(json_extract(e.json, '$.content.displayname'))) AS name,
                            COALESCE((SELECT json_extract(p.value, '$') FROM profile_fields p
                                      WHERE p.user_id = m.user_id AND p.field = 'avatar_url'),
                                     MAX(json_extract(e.json, '$.content.avatar_url'))) AS avatar
                     FROM room_memberships m JOIN events e ON e.event_id = m.event_id
                     WHERE m.membership = 'join'
                       AND ((m.user_id <> ?1
                             AND m.room_id IN (SELECT room_id FROM room_memberships
                                               WHERE user_id = ?1 AND membership = 'join'))
                            OR m.room_id IN (
                                SELECT s.room_id FROM current_state s JOIN events j ON j.event_id = s.event_id
                                WHERE (s.type = 'm.room.join_rules' AND s.state_key = ''
                                       AND json_extract(j.json, '$.content.join_rule') = 'public')
                                   OR (s.type = 'm.room.history_visibility' AND s.state_key = ''
                                       AND json_extract(j.json, '$.content.history_visibility')
                                           = 'world_readable')))
                     GROUP BY m.user_id)
                 WHERE user_id LIKE ?2 ESCAPE '\\' OR name LIKE ?2 ESCAPE '\\'
                 LIMIT ?3",
            )?;
            let mut users: Vec<DirectoryUser> =
                stmt.query_map(params![searcher, pattern, limit as i64], row)?.collect::<rusqlite::Result<_>>()?;
            if every_local_user && users.len() < limit {
                let mut stmt = c.prepare_cached(
                    "SELECT u.user_id,
                            (SELECT json_extract(value, '$') FROM profile_fields
                             WHERE user_id = u.user_id AND field = 'displayname'),
                            (SELECT json_extract(value, '$') FROM profile_fields
                             WHERE user_id = u.user_id AND field = 'avatar_url')
                     FROM users u
                     WHERE u.deactivated = 0
                       AND (u.user_id LIKE ?1 ESCAPE '\\'
                            OR EXISTS (SELECT 1 FROM profile_fields p WHERE p.user_id = u.user_id
                                       AND p.field = 'displayname' AND json_extract(p.value, '$') LIKE ?1 ESCAPE '\\'))
                     LIMIT ?2",
                )?;
                let locals = stmt.query_map(params![pattern, limit as i64], row)?;
                for user in locals {
                    let user = user?;
                    if users.len() < limit && !users.iter().any(|u| u.user_id == user.user_id) {
                        users.push(user);
                    }
                }
            }
            Ok(users)
        })
        .await
    }
}
