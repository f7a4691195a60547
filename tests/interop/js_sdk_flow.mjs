// A third client library against Plexus: matrix-js-sdk (npm), the SDK
// behind Element Web, runs its own sync loop for two users. Alice creates a
// direct chat and invites bob, bob joins when his client sees the invite,
// alice talks and types, bob marks her message read; each step is observed
// through the SDK's own events. Every wait is bounded; on a timeout or an
// error the script exits non-zero naming what did not arrive.
//
// Usage: node js_sdk_flow.mjs BASE_URL SDK_DIR
// SDK_DIR is the directory where `npm ci` installed tests/interop/js
// (its package.json pins matrix-js-sdk). Set PLEXUS_JS_SDK_DEBUG=1 to see
// the SDK's debug log on stderr.

import { bounded, fail, loadSdk, ok, register, startSyncing, waitFor, TIMEOUT_MS } from "./js_sdk_common.mjs";

const BODY = "hello from matrix-js-sdk";
const ALICE_NAME = "Alice in js";

async function main(baseUrl, sdkDir) {
    const sdk = await loadSdk(sdkDir);
    const alice = await register(sdk, baseUrl, "alice_js");
    const bob = await register(sdk, baseUrl, "bob_js");
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();
    try {
        await startSyncing(sdk, alice);
        await startSyncing(sdk, bob);

        // Bob accepts the invite his client shows him, as a user would. The
        // membership event fires while the sync that carries the invite is
        // still being processed; the room is in bob's store once that sync
        // has announced it.
        const bobInvited = waitFor(
            "bob's client to see the invite",
            bob,
            sdk.RoomMemberEvent.Membership,
            (_event, member) => (member.userId === bobId && member.membership === "invite" ? member.roomId : undefined),
        );
        const bobJoined = bobInvited.then(async (invitedTo) => {
            if (!bob.getRoom(invitedTo)) {
                await waitFor(`the invited room ${invitedTo} in bob's store`, bob, sdk.ClientEvent.Room, (room) =>
                    room.roomId === invitedTo || bob.getRoom(invitedTo) ? true : undefined,
                );
            }
            const invited = bob.getRoom(invitedTo);
            const inviter = invited.getMember(bobId)?.events.member?.getSender();
            if (invited.getMyMembership() !== "invite" || inviter !== aliceId) {
                fail(`bob's invited room shows membership ${invited.getMyMembership()} from ${inviter}`);
            }
            // The chat has no name: the SDK names it after the inviter,
            // whose membership the invite state carries.
            ok(`bob sees the invite from ${inviter}, named "${invited.name}"`);
            return bounded("bob's join", bob.joinRoom(invitedTo));
        });
        const aliceSeesBobJoin = waitFor(
            "alice's client to see bob join",
            alice,
            sdk.RoomMemberEvent.Membership,
            (_event, member) => (member.userId === bobId && member.membership === "join" ? member.roomId : undefined),
        );

        await bounded("alice's display name change", alice.setDisplayName(ALICE_NAME));
        const creation = alice.createRoom({ is_direct: true, preset: "trusted_private_chat", invite: [bobId] });
        const { room_id: roomId } = await bounded("alice's createRoom", creation);
        ok(`alice creates ${roomId} and invites bob`);
        const joinedRoom = await bobJoined;
        if (joinedRoom.roomId !== roomId) fail(`bob joined ${joinedRoom.roomId}, not ${roomId}`);
        ok("bob joins");
        if ((await aliceSeesBobJoin) !== roomId) fail("alice saw bob join another room");
        ok("alice sees bob join");

        const bobGetsMessage = waitFor(
            "alice's message in bob's live timeline",
            bob,
            sdk.RoomEvent.Timeline,
            (event, room, toStart) => {
                const fromAlice = event.getType() === "m.room.message" && event.getSender() === aliceId;
                return room?.roomId === roomId && !toStart && fromAlice ? event : undefined;
            },
        );
        const { event_id: sentId } = await bounded("alice's message send", alice.sendTextMessage(roomId, BODY));
        ok(`alice sends ${sentId}`);
        const message = await bobGetsMessage;
        if (message.getId() !== sentId) fail(`bob's timeline got ${message.getId()}, alice sent ${sentId}`);
        ok(`bob receives alice's message: ${message.getContent().body}`);

        const bobSeesTyping = waitFor(
            "alice typing in bob's client",
            bob,
            sdk.RoomMemberEvent.Typing,
            (_event, member) => {
                const aliceTypes = member.userId === aliceId && member.typing;
                return member.roomId === roomId && aliceTypes ? true : undefined;
            },
        );
        await bounded("alice's typing notice", alice.sendTyping(roomId, true, TIMEOUT_MS));
        await bobSeesTyping;
        ok("bob sees alice typing");

        const messageId = message.getId();
        const aliceSeesReceipt = waitFor(
            "bob's read receipt in alice's client",
            alice,
            sdk.RoomEvent.Receipt,
            (event, room) => {
                const bobRead = event.getContent()[messageId]?.["m.read"]?.[bobId];
                return room.roomId === roomId && bobRead ? true : undefined;
            },
        );
        await bounded("bob's read receipt to be sent", bob.sendReadReceipt(message));
        await aliceSeesReceipt;
        const readUpTo = alice.getRoom(roomId)?.getEventReadUpTo(bobId);
        if (readUpTo !== messageId) fail(`alice's client has bob read up to ${readUpTo}, not ${messageId}`);
        ok(`alice sees bob's read receipt on ${readUpTo}`);
    } finally {
        alice.stopClient();
        bob.stopClient();
    }
}

const [baseUrl, sdkDir] = process.argv.slice(2);
if (!baseUrl || !sdkDir) fail("usage: node js_sdk_flow.mjs BASE_URL SDK_DIR");
main(baseUrl, sdkDir).then(
    () => process.exit(0),
    (e) => fail(e instanceof Error && e.message.startsWith("timed out") ? e.message : (e?.stack ?? String(e))),
);
