//! Pushers and the outbound push queue in SQLite. Pushers reference the
//! device that set them and queued pushes their pusher, both `ON DELETE
//! CASCADE`: whatever write removes a device removes its pushers and their
//! queues in the same transaction.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{CachedSql, SqliteStore, snapshot};
use crate::storage::{
    PusherStore, Result,
    pushers::{PushToQueue, PusherRow, QueuedPush, StoredPusher},
};

/// A pusher from the columns `id, user_id, device_id, app_id, pushkey,
/// kind, app_display_name, device_display_name, profile_tag, lang, data,
/// pushkey_ts`.
fn stored_pusher(r: &Row<'_>) -> rusqlite::Result<StoredPusher> {
    Ok(StoredPusher {
        id: r.get(0)?,
        pusher: PusherRow {
            user_id: r.get(1)?,
            device_id: r.get(2)?,
            app_id: r.get(3)?,
            pushkey: r.get(4)?,
            kind: r.get(5)?,
            app_display_name: r.get(6)?,
            device_display_name: r.get(7)?,
            profile_tag: r.get(8)?,
            lang: r.get(9)?,
            data: r.get(10)?,
            pushkey_ts: r.get(11)?,
        },
    })
}

#[async_trait]
impl PusherStore for SqliteStore {
    async fn set_pusher(&self, p: PusherRow, append: bool) -> Result<i64> {
        self.write(move |c| {
            if !append {
                // Spec: without `append`, the same pushkey of the same app
                // for other users is removed.
                c.exec(
                    "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id != ?3",
                    params![p.app_id, p.pushkey, p.user_id],
                )?;
            }
            let id = c.one(
                "INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name,
                     device_display_name, profile_tag, lang, data, pushkey_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id,
                     kind = excluded.kind, app_display_name = excluded.app_display_name,
                     device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,
                     lang = excluded.lang, data = excluded.data, pushkey_ts = excluded.pushkey_ts
                 RETURNING id",
                params![
                    p.user_id,
                    p.device_id,
                    p.app_id,
                    p.pushkey,
                    p.kind,
                    p.app_display_name,
                    p.device_display_name,
                    p.profile_tag,
                    p.lang,
                    p.data,
                    p.pushkey_ts
                ],
                |r| r.get(0),
            )?;
            Ok(id)
        })
        .await
    }

    async fn delete_pusher(&self, user_id: String, app_id: String, pushkey: String) -> Result<bool> {
        self.write(move |c| {
            let n = c.exec(
                "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                params![user_id, app_id, pushkey],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_pusher_by_id(&self, id: i64) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM pushers WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn pushers(&self, user_id: String) -> Result<Vec<StoredPusher>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name,
                     profile_tag, lang, data, pushkey_ts
                 FROM pushers WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], stored_pusher)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn users_with_pushers(&self) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT DISTINCT user_id FROM pushers")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn queue_pushes(
        &self,
        event_id: String,
        room_id: String,
        pushes: Vec<PushToQueue>,
        queued_ts: i64,
    ) -> Result<Vec<i64>> {
        if pushes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |c| {
            let mut pushers = c.prepare_cached("SELECT id, device_id FROM pushers WHERE user_id = ?1 ORDER BY id")?;
            let mut insert = c.prepare_cached(
                "INSERT INTO push_queue (pusher_id, event_id, room_id, actions, queued_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut queued = Vec::new();
            for push in &pushes {
                let of_user = pushers
                    .query_map([&push.user_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (pusher_id, device_id) in of_user {
                    if push.skip_devices.contains(&device_id) {
                        continue;
                    }
                    insert.execute(params![pusher_id, event_id, room_id, push.actions, queued_ts])?;
                    queued.push(pusher_id);
                }
            }
            Ok(queued)
        })
        .await
    }

    async fn queued_pushers(&self) -> Result<Vec<i64>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT DISTINCT pusher_id FROM push_queue ORDER BY pusher_id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn next_queued_push(&self, pusher_id: i64) -> Result<Option<(StoredPusher, QueuedPush)>> {
        self.read(move |c| {
            snapshot(c, |c| {
                let push = c
                    .one(
                        "SELECT id, event_id, room_id, actions, queued_ts FROM push_queue
                         WHERE pusher_id = ?1 ORDER BY id LIMIT 1",
                        [pusher_id],
                        |r| {
                            Ok(QueuedPush {
                                id: r.get(0)?,
                                event_id: r.get(1)?,
                                room_id: r.get(2)?,
                                actions: r.get(3)?,
                                queued_ts: r.get(4)?,
                            })
                        },
                    )
                    .optional()?;
                let Some(push) = push else { return Ok(None) };
                let pusher = c
                    .one(
                        "SELECT id, user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name,
                             profile_tag, lang, data, pushkey_ts
                         FROM pushers WHERE id = ?1",
                        [pusher_id],
                        stored_pusher,
                    )
                    .optional()?;
                Ok(pusher.map(|pusher| (pusher, push)))
            })
        })
        .await
    }

    async fn remove_queued_push(&self, id: i64) -> Result<()> {
        self.write(move |c| {
            c.exec("DELETE FROM push_queue WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }
}
