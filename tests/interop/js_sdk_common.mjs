// What the matrix-js-sdk interop scripts share: the Node 20 polyfill the
// SDK needs, bounded waits on the SDK's events and requests, a quiet
// per-client logger, loading the SDK from the directory `npm ci` installed,
// registration through user-interactive auth, and starting a sync loop.

import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export const TIMEOUT_MS = 30_000;
export const PASSWORD = "interop password 1";

// matrix-js-sdk declares Node 22 or later and uses Promise.withResolvers,
// which Node 20 lacks; nothing else it needs here is missing there.
// Defined before the SDK is loaded.
Promise.withResolvers ??= function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
    });
    return { promise, resolve, reject };
};

// The SDK's global logger writes debug lines through console.debug/info/log
// (stdout); stdout is kept for this script's own result lines.
const debug = Boolean(process.env.PLEXUS_JS_SDK_DEBUG);
for (const method of ["debug", "info", "log", "trace"]) {
    console[method] = debug ? (...args) => process.stderr.write(args.join(" ") + "\n") : () => {};
}

export function fail(what) {
    process.stderr.write(`FAILED: ${what}\n`);
    process.exit(1);
}

export function ok(what) {
    process.stdout.write(`ok: ${what}\n`);
}

process.on("unhandledRejection", (reason) => fail(`unhandled rejection: ${reason?.stack ?? reason}`));

/** Resolves with the first `event` from `emitter` whose arguments satisfy
 * `matches` (which returns the value to resolve with, or undefined). Set up
 * before the action that causes the event, so nothing is missed. */
export function waitFor(what, emitter, event, matches) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            emitter.off(event, listener);
            reject(timedOut(what));
        }, TIMEOUT_MS);
        function listener(...args) {
            let value;
            try {
                value = matches(...args);
            } catch (e) {
                value = undefined;
                process.stderr.write(`error while checking ${what}: ${e.stack ?? e}\n`);
            }
            if (value !== undefined) {
                clearTimeout(timer);
                emitter.off(event, listener);
                resolve(value);
            }
        }
        emitter.on(event, listener);
    });
}

export function timedOut(what) {
    return new Error(`timed out after ${TIMEOUT_MS / 1000} s waiting for ${what}`);
}

/** Awaits `promise` (a request to the server), failing after the timeout
 * with `what` named. */
export function bounded(what, promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(timedOut(what)), TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A logger for one client: warnings and errors to stderr (prefixed with
 * the user's name), the rest only when debugging. */
export function clientLogger(prefix) {
    const write = (level) => (...args) => {
        const text = args.map((a) =>
            a instanceof Error ? (a.stack ?? a.message) : typeof a === "object" ? safeJson(a) : String(a),
        );
        process.stderr.write(`[${prefix}] ${level}: ${text.join(" ")}\n`);
    };
    const quiet = debug ? write("debug") : () => {};
    return {
        trace: quiet,
        debug: quiet,
        info: quiet,
        warn: write("warn"),
        error: write("error"),
        getChild: (child) => clientLogger(`${prefix} ${child}`),
    };
}

function safeJson(value) {
    try {
        return JSON.stringify(value);
    } catch {
        return String(value);
    }
}

export async function loadSdk(sdkDir) {
    const require = createRequire(join(sdkDir, "package.json"));
    return import(pathToFileURL(require.resolve("matrix-js-sdk")).href);
}

/** Registers through the user-interactive auth flow of an open server:
 * the first request returns the session, the second answers the
 * `m.login.dummy` stage. */
export async function register(sdk, baseUrl, username) {
    const anonymous = sdk.createClient({ baseUrl, logger: clientLogger(`${username} registration`) });
    const request = { username, password: PASSWORD, initial_device_display_name: "matrix-js-sdk" };
    let session;
    try {
        await bounded(`${username}'s registration to start`, anonymous.registerRequest(request));
        fail(`${username} registered without user-interactive auth`);
    } catch (e) {
        if (e.httpStatus !== 401 || !e.data?.session) {
            fail(`${username} registration did not start a UIA session: ${e}`);
        }
        session = e.data.session;
    }
    const auth = { type: "m.login.dummy", session };
    const response = await bounded(`${username}'s registration`, anonymous.registerRequest({ ...request, auth }));
    ok(`${username} registers as ${response.user_id}`);
    return sdk.createClient({
        baseUrl,
        userId: response.user_id,
        deviceId: response.device_id,
        accessToken: response.access_token,
        logger: clientLogger(username),
    });
}

/** Starts the client's sync loop (`options` for `startClient`) and waits
 * until its first sync is in. */
export async function startSyncing(sdk, client, options = {}) {
    // The SDK logs why a sync step fails and retries it.
    const prepared = waitFor(
        `${client.getUserId()}'s first sync (sync state PREPARED)`,
        client,
        sdk.ClientEvent.Sync,
        (state) => (state === "PREPARED" ? true : undefined),
    );
    await bounded(`${client.getUserId()}'s client to start`, client.startClient({ initialSyncLimit: 10, ...options }));
    await prepared;
    ok(`${client.getUserId()} syncs`);
}


/** Logs `userId` in again with its password: a new device, as a second
 * client (or a reinstalled one) would. */
export async function login(sdk, baseUrl, userId, label) {
    const anonymous = sdk.createClient({ baseUrl, logger: clientLogger(`${label} login`) });
    const identifier = { type: "m.id.user", user: userId };
    const request = { type: "m.login.password", identifier, password: PASSWORD };
    const response = await bounded(`${label}'s login`, anonymous.loginRequest(request));
    return sdk.createClient({
        baseUrl,
        userId: response.user_id,
        deviceId: response.device_id,
        accessToken: response.access_token,
        logger: clientLogger(label),
    });
}
