// A guest as Element Web makes one: matrix-js-sdk registers a guest
// (`registerGuest`, `setGuest(true)`), starts its sync loop as a guest,
// previews a world-readable room with `peekInRoom`, is refused a room that
// does not let guests in, joins one that does and talks there, which
// alice's client receives; creating a room is refused to it. Every wait is
// bounded; on a timeout or an error the script exits non-zero naming what
// did not arrive.
//
// Usage: node js_sdk_guest.mjs BASE_URL SDK_DIR (the server must allow guests)

import { bounded, clientLogger, fail, loadSdk, ok, register, startSyncing, waitFor } from "./js_sdk_common.mjs";

const ROOM_NAME = "Guests Welcome";
const MESSAGE = "hello as a guest";

async function main(baseUrl, sdkDir) {
    const sdk = await loadSdk(sdkDir);
    const alice = await register(sdk, baseUrl, "alice_host");
    const anonymous = sdk.createClient({ baseUrl, logger: clientLogger("guest registration") });
    const credentials = await bounded("the guest's registration", anonymous.registerGuest({ body: {} }));
    const guest = sdk.createClient({
        baseUrl,
        userId: credentials.user_id,
        deviceId: credentials.device_id,
        accessToken: credentials.access_token,
        logger: clientLogger("guest"),
    });
    guest.setGuest(true);
    const guestId = guest.getUserId();
    try {
        await startSyncing(sdk, alice);
        await startSyncing(sdk, guest);
        ok("the guest's client syncs");

        const open = alice.createRoom({
            preset: "public_chat",
            name: ROOM_NAME,
            initial_state: [
                { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } },
                { type: "m.room.guest_access", state_key: "", content: { guest_access: "can_join" } },
            ],
        });
        const { room_id: openId } = await bounded("alice's room open to guests", open);
        const closed = alice.createRoom({ preset: "public_chat", name: "Members Only" });
        const { room_id: closedId } = await bounded("alice's room closed to guests", closed);

        const preview = await bounded("the guest's peek", guest.peekInRoom(openId));
        if (preview.name !== ROOM_NAME) fail(`the guest's preview names the room "${preview.name}"`);
        ok(`the guest previews "${preview.name}"`);
        guest.stopPeeking();

        try {
            await bounded("the guest's join of the closed room", guest.joinRoom(closedId));
            fail("the guest joined a room closed to guests");
        } catch (e) {
            if (e.errcode !== "M_FORBIDDEN") fail(`joining the closed room failed otherwise: ${e}`);
            ok(`the guest may not join a room closed to guests: ${e.errcode}`);
        }

        const aliceGetsMessage = waitFor("the guest's message in alice's timeline", alice, sdk.RoomEvent.Timeline, (event, room) =>
            room?.roomId === openId && event.getSender() === guestId && event.getContent().body === MESSAGE
                ? event
                : undefined,
        );
        await bounded("the guest's join", guest.joinRoom(openId));
        ok("the guest joins the room open to guests");
        await bounded("the guest's message", guest.sendTextMessage(openId, MESSAGE));
        await aliceGetsMessage;
        ok(`alice receives the guest's message: ${MESSAGE}`);

        try {
            await bounded("the guest's createRoom", guest.createRoom({ name: "A guest's room" }));
            fail("the guest created a room");
        } catch (e) {
            if (e.errcode !== "M_GUEST_ACCESS_FORBIDDEN") fail(`createRoom failed otherwise: ${e}`);
            ok(`the guest may not create a room: ${e.errcode}`);
        }
    } finally {
        guest.stopPeeking();
        alice.stopClient();
        guest.stopClient();
    }
}

const [baseUrl, sdkDir] = process.argv.slice(2);
if (!baseUrl || !sdkDir) fail("usage: node js_sdk_guest.mjs BASE_URL SDK_DIR");
main(baseUrl, sdkDir).then(
    () => process.exit(0),
    (e) => fail(e instanceof Error && e.message.startsWith("timed out") ? e.message : (e?.stack ?? String(e))),
);
