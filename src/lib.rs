//! Plexus, a Matrix homeserver. This crate root wires the services together
//! (`Services`), starts the listeners and stops them (`Server`). See
//! `docs/architecture.md` for the map of modules and their invariants.

pub mod client;
pub mod config;
pub mod e2ee;
pub mod federation;
pub mod http;
pub mod media;
pub mod rooms;
pub mod server_key;
pub mod storage;
pub mod streams;
pub mod sync;
pub mod users;

/// The ruma version Plexus is built on, for tests and tools that check its output.
pub use ruma;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    config::Config, e2ee::E2ee, federation::Federation, http::rate_limit::RateLimiters, media::Media, rooms::Rooms,
    server_key::ServerKey, storage::Db, streams::Streams, sync::notifier::Notifier, users::Users,
};

/// Every service of a running server, shared by all handlers.
pub struct Services {
    pub config: Arc<Config>,
    pub db: Db,
    pub server_key: Arc<ServerKey>,
    pub users: Users,
    pub rooms: Arc<Rooms>,
    pub streams: Arc<Streams>,
    pub e2ee: E2ee,
    pub media: Media,
    pub notifier: Arc<Notifier>,
    pub sync: sync::Syncer,
    pub rate_limits: RateLimiters,
    pub federation: Arc<Federation>,
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
        let db = Db::open(&data_dir.join("plexus.db"), &config.storage)?;
        let notifier =
            Arc::new(Notifier::new(db.events_position().await?, db.misc_position().await?, storage::now_ms()));
        let rooms = Arc::new(Rooms::new(db.clone(), config.clone(), server_key.clone(), notifier.clone()));
        let federation = Federation::new(config.clone(), db.clone(), server_key.clone(), rooms.clone())
            .map_err(StartError::Federation)?;
        let sender = federation.sender.clone();
        rooms.set_outbound(Arc::new(move |destinations| sender.wake(destinations)));
        let e2ee = E2ee::new(db.clone(), config.clone(), notifier.clone());
        let weak = Arc::downgrade(&federation);
        e2ee.set_device_change_hook(Arc::new(move |user| {
            if let Some(federation) = weak.upgrade() {
                tokio::spawn(async move { federation.send_device_list_update(&user).await });
            }
        }));
        let streams = Arc::new(Streams::new(db.clone(), config.clone(), notifier.clone(), rooms.clone()));
        let weak = Arc::downgrade(&federation);
        streams.set_presence_hook(Arc::new(move |row, servers| {
            if let Some(federation) = weak.upgrade() {
                tokio::spawn(async move { federation.send_presence(row, servers).await });
            }
        }));
        let syncer = sync::Syncer::new(db.clone(), rooms.clone(), streams.clone(), notifier.clone());
        Ok(Arc::new(Self {
            federation,
            users: Users::new(db.clone(), config.clone()),
            streams,
            e2ee,
            media: Media::new(db.clone(), config.clone()),
            rooms,
            notifier,
            sync: syncer,
            rate_limits: RateLimiters::new(&config.rate_limits),
            server_key,
            db,
            config,
        }))
    }
}

/// A running server.
pub struct Server {
    pub services: AppState,
    /// The addresses actually bound (useful when a port was 0).
    pub addrs: Vec<SocketAddr>,
    /// The federation listener's bound addresses.
    pub federation_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts every listener of `config`.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let services = Services::open(config).await?;
        if let Some(token) = services.users.ensure_registration_token().await? {
            tracing::warn!(
                registration_token = %token,
                "first start: created a registration token. Open {} in any Matrix client \
                 (Element: choose 'Edit' homeserver), register, and enter this token when asked. \
                 It is shown only this once.",
                services.config.public_base_url(),
            );
        }

        let (shutdown, _) = watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for addr in &services.config.server.listen {
            let listener =
                TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr: *addr, source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen { addr: *addr, source })?;
            addrs.push(bound);
            let app = http::app(services.clone());
            tasks.push(tokio::spawn(http::serve(listener, app, shutdown.subscribe())));
            tracing::info!(%bound, server_name = %services.config.server.server_name, "listening for clients");
        }
        let mut federation_addrs = Vec::new();
        if services.config.federation.enabled {
            let fed = &services.config.federation;
            services.federation.sender.start(&services.federation).await;
            if let (Some(cert), Some(key)) = (&fed.tls_cert, &fed.tls_key) {
                federation::tls::install_crypto_provider();
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| StartError::Federation(format!("cannot load the TLS certificate or key: {e}")))?;
                for addr in &fed.listen {
                    let listener = std::net::TcpListener::bind(addr)
                        .map_err(|source| StartError::Listen { addr: *addr, source })?;
                    listener.set_nonblocking(true).map_err(|source| StartError::Listen { addr: *addr, source })?;
                    let bound = listener.local_addr().map_err(|source| StartError::Listen { addr: *addr, source })?;
                    federation_addrs.push(bound);
                    let server = axum_server::from_tcp_rustls(listener, tls.clone())
                        .map_err(|source| StartError::Listen { addr: *addr, source })?;
                    let handle = axum_server::Handle::new();
                    let app = http::federation_app(services.clone());
                    let mut stop = shutdown.subscribe();
                    let stopper = handle.clone();
                    tokio::spawn(async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                    });
                    tasks.push(tokio::spawn(async move {
                        let app = tower::ServiceExt::map_request(app, |req: ::http::Request<hyper::body::Incoming>| {
                            req.map(axum::body::Body::new)
                        });
                        let service = axum::ServiceExt::<::http::Request<hyper::body::Incoming>>::into_make_service_with_connect_info::<
                            SocketAddr,
                        >(app);
                        if let Err(e) = server.handle(handle).serve(service).await {
                            tracing::error!(error = %e, "federation listener failed");
                        }
                    }));
                    tracing::info!(%bound, "listening for federation (HTTPS)");
                }
            }
        }
        Ok(Self { services, addrs, federation_addrs, shutdown, tasks })
    }

    /// Resolves when any listener stops (it should not, unless it fails).
    pub async fn wait(&mut self) {
        if let Some(task) = self.tasks.first_mut() {
            let _ = task.await;
        }
    }

    /// Stops accepting requests, lets running ones finish, and closes the
    /// database after its last commit.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.services.db.close();
    }
}
