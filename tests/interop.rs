//! Interoperability with a second client library: matrix-nio (Python)
//! runs `tests/interop/nio_flow.py` against a real server. `.ci/run`
//! installs matrix-nio in a virtualenv and sets `PLEXUS_NIO_PYTHON` to its
//! interpreter; without it the test says so and does nothing.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn matrix_nio_registers_talks_syncs_and_paginates() {
    let Ok(python) = std::env::var("PLEXUS_NIO_PYTHON") else {
        eprintln!("PLEXUS_NIO_PYTHON is not set: skipping the matrix-nio interop flow (CI runs it)");
        return;
    };
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/nio_flow.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&server.base_url)
        .output()
        .await
        .expect("the interop script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "matrix-nio flow failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: bob receives alice's message"), "{stdout}");
}
