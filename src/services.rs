//! `Services`: every domain service of a running server, wired together
//! once at start (storage, the commit pipeline and its listeners, the room
//! server, federation, streams, push, keys, media, search, reports, delayed
//! events, calls), and shared by the handlers as axum state. A second
//! storage backend or a broker-backed notifier plugs in here and nowhere
//! else.

use std::{net::SocketAddr, sync::Arc};

use crate::{
    appservice::{AppserviceListener, Appservices},
    calls::Calls,
    commit::{CommitListener, CommitPipeline, LocalNotifier, Notifier},
    config::Config,
    delayed::{DelayedEvents, DelayedStateCanceller},
    e2ee::E2ee,
    federation::{Federation, listener::FederationListener},
    media::Media,
    push::{Push, PushEvaluation},
    rate_limit::RateLimiters,
    reports::Reports,
    rooms::Rooms,
    search::{Search, SearchIndexer},
    server_key::{self, ServerKey},
    storage::{self, Storage},
    streams::Streams,
    sync::Syncer,
    users::{self, Users},
};

/// Every service of a running server, shared by all handlers.
pub struct Services {
    pub config: Arc<Config>,
    pub db: Arc<dyn Storage>,
    pub server_key: Arc<ServerKey>,
    pub users: Users,
    pub rooms: Arc<Rooms>,
    pub streams: Arc<Streams>,
    pub e2ee: E2ee,
    pub media: Media,
    pub notifier: Arc<dyn Notifier>,
    pub sync: Syncer,
    pub rate_limits: Arc<RateLimiters>,
    pub federation: Arc<Federation>,
    pub push: Arc<Push>,
    pub search: Search,
    pub appservice: Arc<Appservices>,
    pub reports: Reports,
    pub delayed: Arc<DelayedEvents>,
    pub calls: Calls,
}

/// What handlers receive as axum state.
pub type AppState = Arc<Services>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Key(#[from] server_key::ServerKeyError),
    #[error("cannot open the database: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("cannot prepare registration: {0}")]
    Users(#[from] users::UsersError),
    #[error("cannot set up federation: {0}")]
    Federation(String),
    #[error("cannot set up push delivery: {0}")]
    Push(String),
    #[error("cannot load the application services: {0}")]
    Appservice(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

impl Services {
    /// Opens the data dir, key and database: everything but the listeners.
    /// The CLI uses this alone to manage users without a running server.
    pub async fn open(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let data_dir = &config.server.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let server_key = Arc::new(ServerKey::load_or_create(data_dir)?);
        // The one place that names a storage backend.
        let db: Arc<dyn Storage> = Arc::new(storage::SqliteStore::open(&data_dir.join("plexus.db"), &config.storage)?);
        // The typing stream is not stored: it starts at the boot time in
        // milliseconds, above any position a previous run handed out.
        let typing_start = storage::now_ms();
        let notifier =
            Arc::new(LocalNotifier::new(db.events_position().await?, db.misc_position().await?, typing_start));
        let commits = Arc::new(CommitPipeline::new());
        let rooms = Arc::new(Rooms::new(db.clone(), config.clone(), server_key.clone(), commits.clone()));
        let e2ee = E2ee::new(db.clone(), config.clone(), commits.clone());
        let federation = Federation::new(config.clone(), db.clone(), server_key.clone(), rooms.clone(), e2ee.clone())
            .map_err(StartError::Federation)?;
        let streams = Arc::new(Streams::new(db.clone(), config.clone(), commits.clone(), rooms.clone(), typing_start));
        let push =
            Arc::new(Push::new(db.clone(), config.clone(), streams.clone(), rooms.clone()).map_err(StartError::Push)?);
        let appservice =
            Arc::new(Appservices::open(&config, db.clone(), streams.clone()).map_err(StartError::Appservice)?);
        // The listeners of every commit, in the order they run: push rules
        // are evaluated first (a sync that returns an event counts it, and
        // the device of a sync still waiting for it gets no push), then
        // syncs are woken, then other servers are told, then the search
        // index is updated (it delays no sync and no other server, and the
        // sender's 200 still waits for it, so what a client sent it can
        // find), then delayed state events that a state event overtook are
        // cancelled (before the 200, so the sender's next request sees it),
        // then appservice transactions are queued (stored before the 200,
        // so nothing acknowledged is lost for them).
        let listeners: Vec<Arc<dyn CommitListener>> = vec![
            Arc::new(PushEvaluation::new(&push)),
            notifier.clone(),
            Arc::new(FederationListener::new(&federation)),
            Arc::new(SearchIndexer::new(db.clone())),
            Arc::new(DelayedStateCanceller::new(db.clone())),
            Arc::new(AppserviceListener::new(&appservice)),
        ];
        commits.install(listeners).map_err(|e| StartError::Federation(e.into()))?;
        let users = Users::new(db.clone(), config.clone(), commits.clone());
        // Each appservice acts as its sender user, which must exist.
        for a in appservice.all() {
            users.ensure_user(&a.sender).await?;
        }
        let exempt = appservice.clone();
        let rate_limits = Arc::new(RateLimiters::new(
            &config.rate_limits,
            Arc::new(move |user: &ruma::OwnedUserId| exempt.is_rate_limit_exempt(user)),
        ));
        let sync =
            Syncer::new(db.clone(), rooms.clone(), streams.clone(), notifier.clone(), push.active_syncs().clone());
        let delayed = Arc::new(DelayedEvents::new(db.clone(), rooms.clone(), config.clone(), rate_limits.clone()));
        // Other servers' media comes through federation.
        let media = Media::new(db.clone(), config.clone(), Some(federation.clone()));
        Ok(Arc::new(Self {
            delayed,
            federation,
            push,
            search: Search::new(db.clone(), rooms.clone(), config.clone()),
            reports: Reports::new(db.clone(), rooms.clone(), config.clone()),
            calls: Calls::new(config.clone()),
            users,
            appservice,
            streams,
            e2ee,
            media,
            rooms,
            notifier,
            sync,
            rate_limits,
            server_key,
            db,
            config,
        }))
    }
}
