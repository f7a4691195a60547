//! Interoperability with other client libraries against a real server:
//! matrix-nio (Python) runs `tests/interop/nio_flow.py`, matrix-js-sdk
//! (Node) runs `tests/interop/js_sdk_flow.mjs`, `js_sdk_relations.mjs`,
//! `js_sdk_peek.mjs` and `js_sdk_guest.mjs` (sharing `js_sdk_common.mjs`). `.ci/run` installs matrix-nio in a
//! virtualenv and sets `PLEXUS_NIO_PYTHON` to its interpreter, and installs matrix-js-sdk with `npm ci` in
//! `tests/interop/js` and sets `PLEXUS_JS_SDK_DIR` to that directory;
//! without the variable a test says so and does nothing. `PLEXUS_NODE`
//! names another `node` than the one on the path.

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

/// Runs the matrix-js-sdk script `name` (in `tests/interop`) against a fresh
/// server; returns its result lines, or `None` when the SDK is not installed.
async fn run_js_sdk_script(name: &str) -> Option<(Vec<String>, String)> {
    run_js_sdk_script_with(name, |_| {}).await
}

/// `run_js_sdk_script` against a server whose test configuration `adjust`
/// changes first.
async fn run_js_sdk_script_with(
    name: &str,
    adjust: impl FnOnce(&mut plexus::config::Config),
) -> Option<(Vec<String>, String)> {
    let Ok(sdk_dir) = std::env::var("PLEXUS_JS_SDK_DIR") else {
        eprintln!("PLEXUS_JS_SDK_DIR is not set: skipping the matrix-js-sdk interop flow {name} (CI runs it)");
        return None;
    };
    let server = TestServer::start_with(adjust).await;
    let script = format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"));
    let node = std::env::var("PLEXUS_NODE").unwrap_or_else(|_| "node".to_owned());
    // The script bounds each of its waits; this bounds the whole run, so a
    // hung Node process fails the test instead of holding CI.
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new(node).arg(script).arg(&server.base_url).arg(&sdk_dir).kill_on_drop(true).output(),
    )
    .await
    .expect("the matrix-js-sdk flow finishes within 3 minutes")
    .expect("node runs the interop script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // The SDK's warnings and errors, shown with --nocapture.
    eprintln!("{stderr}");
    assert!(output.status.success(), "matrix-js-sdk flow {name} failed:\n{stdout}\n{stderr}");
    let lines = stdout.lines().map(str::to_owned).collect();
    Some((lines, format!("{stdout}\n{stderr}")))
}

fn assert_lines(lines: &[String], expected: &[&str], output: &str) {
    for line in expected {
        assert!(lines.iter().any(|l| l == line), "missing {line:?} in:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_js_sdk_syncs_invites_joins_talks_types_and_reads() {
    let Some((lines, output)) = run_js_sdk_script("js_sdk_flow.mjs").await else { return };
    assert_lines(
        &lines,
        &[
            "ok: @alice_js:plexus.test syncs",
            "ok: @bob_js:plexus.test syncs",
            "ok: bob sees the invite from @alice_js:plexus.test, named \"Alice in js\"",
            "ok: bob joins",
            "ok: alice sees bob join",
            "ok: bob receives alice's message: hello from matrix-js-sdk",
            "ok: bob sees alice typing",
        ],
        &output,
    );
    let sent = lines
        .iter()
        .find_map(|l| l.strip_prefix("ok: alice sends "))
        .unwrap_or_else(|| panic!("alice's message was not sent:\n{output}"));
    assert!(sent.starts_with('$'), "{sent}");
    let receipt = format!("ok: alice sees bob's read receipt on {sent}");
    assert_lines(&lines, &[receipt.as_str()], &output);
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_js_sdk_round_trips_a_reply_edits_a_reaction_and_a_thread() {
    let Some((lines, output)) = run_js_sdk_script("js_sdk_relations.mjs").await else { return };
    assert_lines(
        &lines,
        &[
            "ok: bob sees alice's post",
            "ok: alice sees bob's reply to her post",
            "ok: bob sees the post edited to \"first edit\"",
            "ok: bob sees the post edited to \"second edit\"",
            "ok: alice sees one 👍 on her post",
            "ok: alice's client opens a thread on her post",
            "ok: alice's thread holds bob's reply",
            "ok: alice redacts the second edit",
            "ok: a fresh client shows the post as \"first edit\"",
            "ok: a fresh client has the thread summary: 1 reply, bob participated",
            "ok: a fresh client lists the thread (all and participated)",
            "ok: a fresh client reads the 👍 through /relations",
        ],
        &output,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_js_sdk_previews_a_world_readable_room_then_joins_it() {
    let Some((lines, output)) = run_js_sdk_script("js_sdk_peek.mjs").await else { return };
    assert_lines(
        &lines,
        &[
            "ok: bob previews the room named \"Peek Preview\"",
            "ok: bob's preview shows alice's message: hello, whoever is looking",
            "ok: bob's preview receives alice's live message: said while bob looks",
            "ok: bob joins the previewed room",
            "ok: alice receives bob's message: bob joined and says hi",
        ],
        &output,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn matrix_js_sdk_guest_syncs_previews_and_joins_a_room_open_to_guests() {
    let allow_guests = |c: &mut plexus::config::Config| c.registration.allow_guest_access = true;
    let Some((lines, output)) = run_js_sdk_script_with("js_sdk_guest.mjs", allow_guests).await else { return };
    assert_lines(
        &lines,
        &[
            "ok: the guest's client syncs",
            "ok: the guest previews \"Guests Welcome\"",
            "ok: the guest may not join a room closed to guests: M_FORBIDDEN",
            "ok: the guest joins the room open to guests",
            "ok: alice receives the guest's message: hello as a guest",
            "ok: the guest may not create a room: M_GUEST_ACCESS_FORBIDDEN",
        ],
        &output,
    );
}
