"""A bridge built on mautrix's AppService, driven by tests/appservice.rs.

Usage: mautrix_bridge.py HOMESERVER_URL SERVER_NAME PORT AS_TOKEN HS_TOKEN

It serves the application service API on 127.0.0.1:PORT and reports what
it receives as JSON lines on stdout: transactions' events and ephemeral
data, user and alias queries and failed transactions. It reads commands from stdin,
one JSON object a line, and answers each with a JSON line
{"done": <cmd>, ...} (or {"error": ...}):
  ping                     the bridge pings itself through the homeserver
  register {localpart}     a ghost registers with m.login.application_service
  join {localpart, room}   a ghost joins a room
  send {localpart, room, text}  a ghost sends a message (?user_id=)
  fail {on: bool}          transactions are answered 500 while on
  quit
"""

import asyncio
import json
import sys

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def report(**line) -> None:
    print(json.dumps(line), flush=True)


class Bridge(AppService):
    failing = False

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["transaction_id"]
        if self.failing:
            report(kind="failed", txn_id=txn_id)
            return web.json_response({"errcode": "M_UNKNOWN", "error": "bridge down"}, status=500)
        data = await request.json()
        report(kind="transaction", txn_id=txn_id, ephemeral_keys=sorted(k for k in data if "ephemeral" in k))
        return await super()._http_handle_transaction(request)


async def main() -> None:
    hs_url, server_name, port, as_token, hs_token = sys.argv[1:6]
    bridge = Bridge(
        server=hs_url,
        domain=server_name,
        as_token=as_token,
        hs_token=hs_token,
        bot_localpart="bridgebot",
        id="mautrix_test",
        state_store=MemoryASStateStore(),
        ephemeral_events=True,
    )
    bridge.synchronous_handlers = True

    async def query_user(user_id: str):
        report(kind="query_user", user_id=user_id)
        # The bridge creates the ghost on demand, as bridges do.
        await bridge.intent.user(user_id).ensure_registered()
        return {}

    bridge.query_user = query_user

    async def query_alias(alias: str):
        report(kind="query_alias", alias=alias)
        localpart = alias[1:].split(":", 1)[0]
        await bridge.intent.create_room(alias_localpart=localpart, name="bridged lobby")
        return {}

    bridge.query_alias = query_alias

    @bridge.matrix_event_handler
    async def on_event(event) -> None:
        raw = event.serialize()
        report(kind="event", type=str(raw.get("type")), sender=raw.get("sender"),
               room_id=raw.get("room_id"), content=raw.get("content"), state_key=raw.get("state_key"))

    # mautrix serves no third-party lookups; a bridge adds its own.
    async def protocol(request: web.Request) -> web.Response:
        if request.match_info["protocol"] != "fakechat":
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no such protocol"}, status=404)
        return web.json_response({
            "user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://example.org/icon",
            "field_types": {"nick": {"regexp": ".*", "placeholder": "nick"},
                            "channel": {"regexp": "#.*", "placeholder": "#channel"}},
            "instances": [{"desc": "Fake Chat", "fields": {}, "network_id": "fakenet"}],
        })

    async def thirdparty_user(request: web.Request) -> web.Response:
        nick = request.query.get("nick", "")
        report(kind="thirdparty_user", nick=nick)
        return web.json_response([{"userid": f"@bridge_{nick}:{server_name}", "protocol": "fakechat",
                                   "fields": {"nick": nick}}])

    bridge.app.router.add_route("GET", "/_matrix/app/v1/thirdparty/protocol/{protocol}", protocol)
    bridge.app.router.add_route("GET", "/_matrix/app/v1/thirdparty/user/{protocol}", thirdparty_user)

    await bridge.start(host="127.0.0.1", port=int(port))
    report(kind="ready")

    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd["cmd"]
        try:
            if name == "quit":
                break
            elif name == "ping":
                duration = await bridge.ping_self("ping-txn-1")
                report(done=name, duration_ms=duration)
            elif name == "register":
                ghost = bridge.intent.user(f"@{cmd['localpart']}:{server_name}")
                await ghost.ensure_registered()
                report(done=name, user_id=ghost.mxid)
            elif name == "join":
                ghost = bridge.intent.user(f"@{cmd['localpart']}:{server_name}")
                await ghost.join_room(cmd["room"])
                report(done=name)
            elif name == "send":
                ghost = bridge.intent.user(f"@{cmd['localpart']}:{server_name}")
                event_id = await ghost.send_text(cmd["room"], cmd["text"])
                report(done=name, event_id=event_id)
            elif name == "fail":
                bridge.failing = cmd["on"]
                report(done=name)
            else:
                report(error=f"unknown command {name}")
        except Exception as e:  # reported to the test, which fails with it
            report(error=f"{name}: {type(e).__name__}: {e}")
    await bridge.stop()


if __name__ == "__main__":
    asyncio.run(main())
