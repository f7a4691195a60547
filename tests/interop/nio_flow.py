"""A second client library against Plexus: matrix-nio (PyPI) registers,
logs in, creates a room, invites, joins, talks, syncs, paginates, types,
marks read, edits its profile and logs out. Exits non-zero on any
mismatch. Usage: nio_flow.py BASE_URL
"""

import asyncio
import sys

from nio import (
    AsyncClient,
    JoinResponse,
    LoginResponse,
    LogoutResponse,
    ProfileGetDisplayNameResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

PASSWORD = "interop password 1"


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


async def texts_after_sync(client, room_id, since):
    resp = await client.sync(timeout=10000, since=since)
    check(isinstance(resp, SyncResponse), f"{client.user} syncs")
    room = resp.rooms.join.get(room_id)
    bodies = [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)] if room else []
    return resp.next_batch, bodies


async def main(base):
    alice = AsyncClient(base, "alice_nio")
    bob = AsyncClient(base, "bob_nio")
    try:
        for client, name in ((alice, "alice_nio"), (bob, "bob_nio")):
            resp = await client.register(name, PASSWORD, device_name="nio")
            check(isinstance(resp, RegisterResponse), f"{name} registers: {resp}")

        resp = await alice.login(PASSWORD, device_name="nio second device")
        check(isinstance(resp, LoginResponse), f"alice logs in: {resp}")

        resp = await alice.room_create(name="Interop", topic="nio meets plexus", invite=[bob.user_id])
        check(isinstance(resp, RoomCreateResponse), f"alice creates a room: {resp}")
        room_id = resp.room_id

        first = await bob.sync(timeout=0)
        check(room_id in first.rooms.invite, "bob sees the invite in sync")
        resp = await bob.join(room_id)
        check(isinstance(resp, JoinResponse), f"bob joins: {resp}")
        bob_since = (await bob.sync(timeout=0)).next_batch

        resp = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
        check(isinstance(resp, RoomSendResponse), f"alice sends: {resp}")
        bob_since, bodies = await texts_after_sync(bob, room_id, bob_since)
        check(bodies == ["hello from nio"], f"bob receives alice's message: {bodies}")

        await bob.room_typing(room_id, True, timeout=10000)
        await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "and hello back"})
        await alice.sync(timeout=0)
        resp = await alice.room_messages(room_id, start="", limit=10)
        check(isinstance(resp, RoomMessagesResponse), f"alice paginates: {resp}")
        texts = [e.body for e in resp.chunk if isinstance(e, RoomMessageText)]
        check(texts[:2] == ["and hello back", "hello from nio"], f"history is newest first: {texts}")

        resp = await bob.room_read_markers(room_id, fully_read_event=resp.chunk[0].event_id, read_event=resp.chunk[0].event_id)
        check(type(resp).__name__ == "RoomReadMarkersResponse", f"bob marks read: {resp}")

        await alice.set_displayname("Alice via nio")
        resp = await bob.get_displayname(alice.user_id)
        check(isinstance(resp, ProfileGetDisplayNameResponse) and resp.displayname == "Alice via nio", f"profile: {resp}")

        resp = await alice.logout()
        check(isinstance(resp, LogoutResponse), f"alice logs out: {resp}")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
