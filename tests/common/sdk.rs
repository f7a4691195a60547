//! matrix-sdk helpers for the test crates that run sync loops (they need
//! `#![recursion_limit = "256"]`, so they are kept out of `common`).

use std::time::Duration;

/// Runs a matrix-sdk client's sync loop in the background.
pub fn spawn_sync(client: &matrix_sdk::Client) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        let _ = client.sync(matrix_sdk::config::SyncSettings::default().timeout(Duration::from_secs(2))).await;
    })
}
