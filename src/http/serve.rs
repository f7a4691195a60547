//! The client listener's accept loop: hyper's HTTP/1 server (with upgrades,
//! for the WebSocket sync), one task per connection, and a graceful stop.
//!
//! axum's `serve` does the same through hyper-util's HTTP/1-or-2 builder.
//! This loop exists for what a held long-poll costs: a connection's task
//! here is 280 bytes plus the boxed connection, against 2.4 KB in one piece
//! when the connection is pinned inside the task, and the version sniffing
//! of the auto builder is skipped (clients speak HTTP/1.1 to Plexus; HTTP/2
//! would come from a reverse proxy, which talks HTTP/1.1 upstream).

use std::{net::SocketAddr, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt;

/// How long a client may take to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` turns true, then lets requests in
/// flight finish.
pub async fn serve(listener: TcpListener, app: super::App, mut stop: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let (done_tx, _) = watch::channel(());
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            req.map(Body::new)
        });
        // Boxed, and the box moved into the task: pinning the connection
        // inside the task's future would make that future hold it twice.
        let mut conn =
            Box::pin(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades());
        let mut stop = stop.clone();
        let done = done_tx.subscribe();
        tokio::spawn(async move {
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(error = %e, %addr, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    done_tx.closed().await;
}
