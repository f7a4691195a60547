//! `Server`: the listeners of a running server (clients over HTTP/1, other
//! servers over TLS), started on `Services` and stopped gracefully.

use std::net::SocketAddr;

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    api,
    config::Config,
    federation, http,
    services::{AppState, Services, StartError},
};

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

        // Pushes queued before a restart go out now.
        services.push.start_delivery().await;
        // Delayed events scheduled before a restart are sent when due (at
        // once if their time has passed).
        services.delayed.start().await;
        // So do appservice transactions, the one in flight under its id.
        services.appservice.start_delivery().await;
        let (shutdown, _) = watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for addr in &services.config.server.listen {
            let listener =
                TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr: *addr, source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen { addr: *addr, source })?;
            addrs.push(bound);
            let app = api::app(services.clone());
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
                    let app = api::federation_app(services.clone());
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
        self.services.sync.close();
        for task in self.tasks {
            let _ = task.await;
        }
        self.services.push.stop_delivery();
        self.services.delayed.stop().await;
        self.services.appservice.stop_delivery();
        self.services.db.close();
    }
}
