//! The SQLite backend: the only code that writes SQL.
//!
//! One writer connection lives on its own thread and commits the write jobs
//! that arrive together in one transaction (group commit), each job inside
//! its own savepoint so a failing job changes nothing and does not disturb
//! the others. Reads run on a small pool of read-only connections (WAL lets
//! them proceed while the writer commits). One module per table group.

mod appservice;
mod backup;
mod delayed_events;
mod directory;
mod e2ee;
mod events;
mod federation;
mod media;
mod membership;
mod migrations;
mod push;
mod pushers;
mod relations;
mod reports;
mod search;
mod server_meta;
mod state;
mod streams;
mod sync;
mod users;

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OpenFlags, Params, Row};
use tokio::sync::{Semaphore, oneshot};

use super::{Result, Storage, StorageError};
use crate::config::{StorageConfig, Synchronous};

/// WAL pages after which a commit copies them back into the database: a
/// hot page written by many commits is copied once per checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// How many queued write jobs one transaction may take.
const MAX_GROUP: usize = 256;

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// What to tell the caller once the group transaction's fate is known.
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// A write job: runs on the writer thread inside the group transaction (or is
/// given `None` when that transaction could not begin) and returns its reply.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// The SQLite backend: one writer thread, a pool of readers. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<crossbeam_channel::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    tokens: users::TokenCache,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Self> {
        let mut writer = Connection::open(path)?;
        configure(&writer, config.synchronous)?;
        migrations::apply(&mut writer)?;

        let mut readers = Vec::with_capacity(config.readers);
        for _ in 0..config.readers {
            let reader =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            stable_plans(&reader)?;
            readers.push(reader);
        }

        let (tx, rx) = crossbeam_channel::unbounded::<WriteJob>();
        let handle = std::thread::Builder::new()
            .name("plexus-db-writer".into())
            .spawn(move || run_writer(writer, rx))
            .map_err(|e| StorageError::Corrupt(format!("cannot start writer thread: {e}")))?;

        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                reader_permits: Semaphore::new(readers.len()),
                readers: Mutex::new(readers),
                tokens: users::TokenCache::default(),
            }),
        })
    }

    /// Runs `f` in the next group transaction and returns its result once the
    /// transaction has committed. If `f` fails, its changes are rolled back.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.write_queued(f, |_| {})?.await
    }

    /// Queues `f` for the next group transaction now (jobs run in the order
    /// they are queued) and returns what resolves to its result once that
    /// transaction has committed. `then` runs on the writer thread with the
    /// final result (commit included) before the caller hears of it, even
    /// if the caller has stopped waiting.
    fn write_queued<R, F, T>(&self, f: F, then: T) -> Result<impl Future<Output = Result<R>> + use<R, F, T>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        T: FnOnce(&Result<R>) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R>>();
        let job: WriteJob = Box::new(move |conn: Option<&Connection>| {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(StorageError::Corrupt("cannot begin a write transaction".into())),
            };
            Box::new(move |commit: Result<()>| {
                let result = commit.and(outcome);
                then(&result);
                let _ = tx.send(result);
            })
        });
        // The clone of the sender must not outlive this call: the writer
        // stops only once every sender is gone, and `close` waits for it
        // (possibly on the thread that would resume the caller).
        let sender = self
            .inner
            .writer
            .lock()
            .expect("writer mutex is never poisoned")
            .clone()
            .ok_or(StorageError::WriterGone)?;
        sender.send(job).map_err(|_| StorageError::WriterGone)?;
        drop(sender);
        Ok(async move { rx.await.map_err(|_| StorageError::WriterGone)? })
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let permit = self.inner.reader_permits.acquire().await.map_err(|_| StorageError::WriterGone)?;
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| StorageError::Corrupt(format!("reader task failed: {e}")))?;
        drop(permit);
        result
    }

    /// Like `read`, for reads known to take well under a millisecond (an
    /// incremental sync's): when a reader connection is free, `f` runs on
    /// the calling thread, sparing the two thread hand-offs of the blocking
    /// pool, which cost more than such a read.
    async fn read_quick<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let Ok(permit) = self.inner.reader_permits.try_acquire() else {
            return self.read(f).await;
        };
        let result = self.inner.with_reader(f);
        drop(permit);
        result
    }
}

impl Storage for SqliteStore {
    /// Stops the writer after it has committed everything queued so far.
    fn close(&self) {
        self.inner.writer.lock().expect("writer mutex is never poisoned").take();
        if let Some(handle) = self.inner.writer_thread.lock().expect("mutex").take() {
            let _ = handle.join();
        }
    }
}

impl Inner {
    /// Runs `f` on a free reader connection; the caller holds a permit.
    fn with_reader<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let conn = self.readers.lock().expect("reader mutex is never poisoned").pop();
        let conn = conn.expect("a permit guarantees a free reader");
        let result = f(&conn);
        self.readers.lock().expect("reader mutex is never poisoned").push(conn);
        result
    }
}

fn configure(conn: &Connection, synchronous: Synchronous) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match synchronous {
        Synchronous::Off => "OFF",
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(conn)
}

/// Plans stop depending on bound values. Without this, SQLite (STAT4
/// builds) marks a statement with `LIMIT ?` expired whenever the limit is
/// bound, and parses and plans it again on every run: a third of the CPU
/// of a sync fan-out went there.
fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn run_in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.exec("SAVEPOINT job", [])?;
    match f(conn) {
        Ok(r) => {
            conn.exec("RELEASE job", [])?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// Runs `f` in one read transaction.
fn snapshot<R>(c: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    c.execute_batch("BEGIN")?;
    let result = f(c);
    // A read transaction has nothing to lose: end it whatever happened, so
    // the connection goes back to the pool clean.
    let end = c.execute_batch("COMMIT");
    let result = result?;
    end?;
    Ok(result)
}

/// How many prepared statements each connection keeps: more than the
/// distinct statements of any hot path, so none is parsed twice.
const STATEMENT_CACHE: usize = 256;

/// Single statements through the connection's prepared-statement cache
/// (rusqlite's `execute` and `query_row` parse their SQL on every call).
trait CachedSql {
    /// Runs one statement, returning how many rows it changed.
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// Runs a query and maps its first row (`QueryReturnedNoRows` if none).
    fn one<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The writer loop: take one job (blocking), then whatever else is already
/// queued, run them all in one transaction, commit, then answer each.
fn run_writer(conn: Connection, rx: crossbeam_channel::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.exec("BEGIN IMMEDIATE", []) {
            tracing::error!(error = %e, "cannot begin a write transaction");
            for job in jobs {
                job(None)(Ok(()));
            }
            continue;
        }
        for job in jobs {
            replies.push(job(Some(&conn)));
        }
        let commit = conn.exec("COMMIT", []).map(drop).map_err(|e| {
            tracing::error!(error = %e, "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        for reply in replies {
            reply(commit.clone().map_err(|m| StorageError::Corrupt(format!("commit failed: {m}"))));
        }
    }
    tracing::debug!("database writer stopped");
}
