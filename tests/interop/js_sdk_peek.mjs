// Room previews as Element Web makes them: matrix-js-sdk's `peekInRoom`,
// which reads the room's `/rooms/{roomId}/initialSync` and then long-polls
// the legacy `/events?room_id=` for what comes next. Alice opens a
// world-readable room and talks in it; bob, not in the room, previews it
// (its name, alice's message, and a message sent while he looks), then
// joins and answers, which alice's client receives. Every wait is bounded;
// on a timeout or an error the script exits non-zero naming what did not
// arrive.
//
// Usage: node js_sdk_peek.mjs BASE_URL SDK_DIR

import { bounded, fail, loadSdk, ok, register, startSyncing, waitFor } from "./js_sdk_common.mjs";

const ROOM_NAME = "Peek Preview";
const FIRST = "hello, whoever is looking";
const LIVE = "said while bob looks";
const ANSWER = "bob joined and says hi";

async function main(baseUrl, sdkDir) {
    const sdk = await loadSdk(sdkDir);
    const alice = await register(sdk, baseUrl, "alice_peek");
    const bob = await register(sdk, baseUrl, "bob_peek");
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();
    try {
        await startSyncing(sdk, alice);
        await startSyncing(sdk, bob);

        const creation = alice.createRoom({
            preset: "public_chat",
            name: ROOM_NAME,
            initial_state: [
                { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } },
            ],
        });
        const { room_id: roomId } = await bounded("alice's createRoom", creation);
        await bounded("alice's first message", alice.sendTextMessage(roomId, FIRST));
        ok(`alice opens ${roomId} to readers`);

        const preview = await bounded("bob's peek into the room", bob.peekInRoom(roomId));
        if (preview.getMyMembership() === "join") fail("bob's preview says he is in the room");
        if (preview.name !== ROOM_NAME) fail(`bob's preview names the room "${preview.name}"`);
        ok(`bob previews the room named "${preview.name}"`);
        const seen = preview
            .getLiveTimeline()
            .getEvents()
            .filter((e) => e.getType() === "m.room.message")
            .map((e) => e.getContent().body);
        if (!seen.includes(FIRST)) fail(`bob's preview shows ${JSON.stringify(seen)}`);
        ok(`bob's preview shows alice's message: ${FIRST}`);

        // The SDK's first `/events` starts from the moment it reaches the
        // server, which this script cannot observe: alice repeats herself
        // until bob's preview shows it.
        const bobSeesLive = waitFor("alice's live message in bob's preview", preview, sdk.RoomEvent.Timeline, (event) =>
            event.getType() === "m.room.message" && event.getContent().body === LIVE ? event : undefined,
        );
        let seenLive = false;
        bobSeesLive.then(() => (seenLive = true), () => {});
        for (let attempt = 0; attempt < 20 && !seenLive; attempt++) {
            await bounded("alice's live message", alice.sendTextMessage(roomId, LIVE));
            await Promise.race([bobSeesLive, new Promise((resolve) => setTimeout(resolve, 1000))]);
        }
        const live = await bobSeesLive;
        if (live.getSender() !== aliceId) fail(`the live message came from ${live.getSender()}`);
        ok(`bob's preview receives alice's live message: ${LIVE}`);

        // Joining ends the preview, as Element Web does.
        bob.stopPeeking();
        const aliceGetsAnswer = waitFor("bob's answer in alice's timeline", alice, sdk.RoomEvent.Timeline, (event, room) =>
            room?.roomId === roomId && event.getSender() === bobId && event.getContent().body === ANSWER
                ? event
                : undefined,
        );
        await bounded("bob's join", bob.joinRoom(roomId));
        ok("bob joins the previewed room");
        await bounded("bob's answer", bob.sendTextMessage(roomId, ANSWER));
        await aliceGetsAnswer;
        ok(`alice receives bob's message: ${ANSWER}`);
    } finally {
        bob.stopPeeking();
        alice.stopClient();
        bob.stopClient();
    }
}

const [baseUrl, sdkDir] = process.argv.slice(2);
if (!baseUrl || !sdkDir) fail("usage: node js_sdk_peek.mjs BASE_URL SDK_DIR");
main(baseUrl, sdkDir).then(
    () => process.exit(0),
    (e) => fail(e instanceof Error && e.message.startsWith("timed out") ? e.message : (e?.stack ?? String(e))),
);
