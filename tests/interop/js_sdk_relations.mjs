// Relations through matrix-js-sdk, with the SDK's thread support on as
// Element Web runs it. Alice posts; bob replies, reacts and answers in a
// thread; alice edits her post twice and redacts the second edit. Each step
// is observed live through the SDK's events, then a fresh client of bob's
// (a new login, first sync from scratch) must rebuild the same picture from
// what the server bundles: the post shows the first edit, the thread root
// carries its summary, the thread list (`/threads`) has the thread, and
// `/relations` lists the reaction. Every wait is bounded.
//
// Usage: node js_sdk_relations.mjs BASE_URL SDK_DIR

import { bounded, fail, loadSdk, login, ok, register, startSyncing, waitFor } from "./js_sdk_common.mjs";

const THREADS = { threadSupport: true };

/** Resolves with the first live timeline event in `roomId` of `client` that
 * `matches`. */
function timelineEvent(sdk, client, roomId, what, matches) {
    return waitFor(what, client, sdk.RoomEvent.Timeline, (event, room, toStart) =>
        room?.roomId === roomId && !toStart && matches(event) ? event : undefined,
    );
}

async function main(baseUrl, sdkDir) {
    const sdk = await loadSdk(sdkDir);
    const alice = await register(sdk, baseUrl, "alice_rel");
    const bob = await register(sdk, baseUrl, "bob_rel");
    const bobId = bob.getUserId();
    const clients = [alice, bob];
    try {
        await startSyncing(sdk, alice, THREADS);
        await startSyncing(sdk, bob, THREADS);
        if (!alice.supportsThreads()) fail("the SDK does not see thread support on the server");

        const { room_id: roomId } = await bounded("alice's createRoom", alice.createRoom({ preset: "public_chat" }));
        await bounded("bob's join", bob.joinRoom(roomId));
        ok(`bob joins alice's room ${roomId}`);

        const bobSeesPost = timelineEvent(sdk, bob, roomId, "alice's post at bob", (e) => e.getType() === "m.room.message");
        const { event_id: postId } = await bounded("alice's post", alice.sendTextMessage(roomId, "original post"));
        const post = await bobSeesPost;
        if (post.getId() !== postId) fail(`bob saw ${post.getId()} for alice's post ${postId}`);
        ok("bob sees alice's post");

        // A reply, as Element sends it: m.in_reply_to.
        const aliceSeesReply = timelineEvent(sdk, alice, roomId, "bob's reply at alice", (e) => e.replyEventId === postId);
        const reply = { msgtype: "m.text", body: "> original post\n\na reply", "m.relates_to": { "m.in_reply_to": { event_id: postId } } };
        await bounded("bob's reply", bob.sendMessage(roomId, reply));
        const seenReply = await aliceSeesReply;
        ok(`alice sees bob's reply to ${seenReply.replyEventId === postId ? "her post" : seenReply.replyEventId}`);

        // Two edits; bob's client replaces the post's content each time.
        const edits = [];
        for (const text of ["first edit", "second edit"]) {
            const replaced = waitFor(`bob's client to apply "${text}"`, bob, sdk.MatrixEventEvent.Replaced, (event) =>
                event.getId() === postId && event.getContent().body === text ? true : undefined,
            );
            const edit = {
                msgtype: "m.text",
                body: `* ${text}`,
                "m.new_content": { msgtype: "m.text", body: text },
                "m.relates_to": { rel_type: "m.replace", event_id: postId },
            };
            const { event_id: editId } = await bounded(`alice's ${text}`, alice.sendMessage(roomId, edit));
            edits.push(editId);
            await replaced;
            ok(`bob sees the post edited to "${text}"`);
        }

        // A reaction: alice's client aggregates it under the post.
        const reacted = waitFor("bob's reaction at alice", alice, sdk.RoomEvent.Timeline, (event) =>
            event.getType() === "m.reaction" && event.getRelation()?.event_id === postId ? true : undefined,
        );
        const reaction = { "m.relates_to": { rel_type: "m.annotation", event_id: postId, key: "👍" } };
        await bounded("bob's reaction", bob.sendEvent(roomId, "m.reaction", reaction));
        await reacted;
        const annotations = alice
            .getRoom(roomId)
            .relations.getChildEventsForEvent(postId, "m.annotation", "m.reaction")
            ?.getSortedAnnotationsByKey();
        const thumbs = annotations?.find(([key]) => key === "👍");
        if (!thumbs || thumbs[1].size !== 1) fail(`alice's client aggregates ${JSON.stringify(annotations)}`);
        ok("alice sees one 👍 on her post");

        // A thread reply: alice's client opens a thread on her post.
        const aliceRoom = alice.getRoom(roomId);
        const threadStarted = waitFor("the thread in alice's client", aliceRoom, sdk.ThreadEvent.New, (thread) =>
            thread.id === postId ? thread : undefined,
        );
        // The reply's id is read from alice's side: when the server's sync
        // echo reaches bob's client before the answer to its PUT, as it
        // does here on loopback, matrix-js-sdk 43 leaves a thread event's
        // send promise unresolved (the event itself is sent and synced).
        const threadReply = { msgtype: "m.text", body: "in a thread" };
        bob.sendMessage(roomId, postId, threadReply).catch((e) => fail(`bob's thread reply: ${e}`));
        const thread = await threadStarted;
        ok("alice's client opens a thread on her post");
        const replyInThread = () => thread.events.find((e) => e.getSender() === bobId && e.getContent().body === "in a thread");
        for (let i = 0; i < 100 && !replyInThread(); i++) await new Promise((r) => setTimeout(r, 100));
        if (!replyInThread()) fail("bob's thread reply is not in alice's thread timeline");
        const threadReplyId = replyInThread().getId();
        ok("alice's thread holds bob's reply");

        // The second edit is redacted: the post falls back to the first.
        await bounded("alice's redaction of the second edit", alice.redactEvent(roomId, edits[1]));
        ok("alice redacts the second edit");

        // Bob on a new device: everything from the server's bundles.
        const fresh = await login(sdk, baseUrl, bobId, "bob's second client");
        clients.push(fresh);
        await startSyncing(sdk, fresh, THREADS);
        const room = fresh.getRoom(roomId);
        if (!room) fail("the room is not in the fresh client");
        const freshPost = room.findEventById(postId) ?? (await bounded("the post", fresh.fetchRoomEvent(roomId, postId)));
        const replacement = freshPost.getServerAggregatedRelation?.("m.replace") ?? freshPost.unsigned?.["m.relations"]?.["m.replace"];
        if (replacement?.event_id !== edits[0]) fail(`the bundled edit is ${JSON.stringify(replacement)}, not ${edits[0]}`);
        const content = freshPost.getContent?.() ?? replacement.content["m.new_content"];
        if (content.body !== "first edit") fail(`the fresh client shows "${content.body}"`);
        ok(`a fresh client shows the post as "${content.body}"`);

        const summary = freshPost.getServerAggregatedRelation?.("m.thread") ?? freshPost.unsigned?.["m.relations"]?.["m.thread"];
        if (summary?.count !== 1 || summary.latest_event?.event_id !== threadReplyId || !summary.current_user_participated) {
            fail(`the bundled thread summary is ${JSON.stringify(summary)}`);
        }
        ok("a fresh client has the thread summary: 1 reply, bob participated");

        // As Element's thread panel does: the two thread lists, then /threads.
        await bounded("the fresh client's thread timelines", room.createThreadsTimelineSets());
        await bounded("the fresh client's thread list", room.fetchRoomThreads());
        const listed = room.threadsTimelineSets[0]?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? [];
        if (!listed.includes(postId)) fail(`the thread list has ${JSON.stringify(listed)}`);
        const mine = room.threadsTimelineSets[1]?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? [];
        if (!mine.includes(postId)) fail(`bob's participated thread list has ${JSON.stringify(mine)}`);
        ok("a fresh client lists the thread (all and participated)");

        const relations = await bounded(
            "the fresh client's /relations",
            fresh.relations(roomId, postId, "m.annotation", "m.reaction"),
        );
        const keys = relations.events.map((e) => e.getRelation()?.key);
        if (keys.length !== 1 || keys[0] !== "👍") fail(`/relations lists ${JSON.stringify(keys)}`);
        ok("a fresh client reads the 👍 through /relations");
    } finally {
        for (const client of clients) client.stopClient();
    }
}

const [baseUrl, sdkDir] = process.argv.slice(2);
if (!baseUrl || !sdkDir) fail("usage: node js_sdk_relations.mjs BASE_URL SDK_DIR");
main(baseUrl, sdkDir).then(
    () => process.exit(0),
    (e) => fail(e instanceof Error && e.message.startsWith("timed out") ? e.message : (e?.stack ?? String(e))),
);
