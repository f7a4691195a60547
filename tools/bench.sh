#!/usr/bin/env bash
# Runs the same load scenarios against Plexus (release build) and Synapse
# (pip `matrix-synapse`, SQLite, rate limits raised, bcrypt_rounds 4) on
# loopback, one after the other, and writes docs/performance.md.
#
#   tools/bench.sh            # full run
#   QUICK=1 tools/bench.sh    # smaller sizes, for a smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
results="$work/results.jsonl"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
    latency_n=50; fan_members=20; fan_msgs=10; big_fan_members=50; tp_secs=3; idle_conns=200; idle_big=1000; idle_secs=3; is_rooms=10; is_events=20; join_members=20; search_msgs=2000; search_big=5000; reactions=100
else
    latency_n=200; fan_members=100; fan_msgs=20; big_fan_members=1000; tp_secs=10; idle_conns=1000; idle_big=10000; idle_secs=10; is_rooms=50; is_events=100; join_members=100; search_msgs=10000; search_big=100000; reactions=1000
fi

echo "== building"
cargo build --release --quiet -p plexus -p loadgen
loadgen="$root/target/release/loadgen"

venv="${SYNAPSE_VENV:-$HOME/.cache/plexus-bench-synapse}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "== installing matrix-synapse into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check matrix-synapse
fi
synapse_version=$("$venv/bin/python" -c 'import synapse; print(synapse.__version__)')

wait_up() {
    for _ in $(seq 300); do curl -sf "$1/_matrix/client/versions" >/dev/null && return 0; sleep 0.2; done
    echo "server at $1 did not start" >&2; return 1
}

start_plexus() {
    rm -rf "$work/plexus"; mkdir -p "$work/plexus"
    cat > "$work/plexus/plexus.toml" <<CONF
[server]
server_name = "bench.plexus"
listen = ["127.0.0.1:18600"]
data_dir = "$work/plexus/data"
[registration]
mode = "open"
[rate_limits]
enabled = false
[logging]
level = "warn"
CONF
    "$root/target/release/plexus" --config "$work/plexus/plexus.toml" > "$work/plexus/log" 2>&1 &
    plexus_pid=$!; pids+=("$plexus_pid")
    sleep 0.5
    wait_up http://127.0.0.1:18600
}

start_synapse() {
    rm -rf "$work/synapse"; mkdir -p "$work/synapse"
    (cd "$work/synapse" && "$venv/bin/python" -m synapse.app.homeserver --server-name bench.synapse \
        --config-path homeserver.yaml --generate-config --report-stats=no >/dev/null)
    "$venv/bin/python" - "$work/synapse" <<'PY'
import sys, yaml
d = sys.argv[1]
path = f"{d}/homeserver.yaml"
c = yaml.safe_load(open(path))
c["listeners"] = [{"port": 18700, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                   "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}]
c["database"] = {"name": "sqlite3", "args": {"database": f"{d}/homeserver.db"}}
c["enable_registration"] = True
c["enable_registration_without_verification"] = True
c["bcrypt_rounds"] = 4
c["suppress_key_server_warning"] = True
c["trusted_key_servers"] = []
fast = {"per_second": 100000, "burst_count": 1000000}
for k in ["rc_message", "rc_registration", "rc_room_creation", "rc_presence", "rc_delayed_event_mgmt"]:
    c[k] = dict(fast)
c["rc_login"] = {"address": dict(fast), "account": dict(fast), "failed_attempts": dict(fast)}
c["rc_joins"] = {"local": dict(fast), "remote": dict(fast)}
c["rc_joins_per_room"] = dict(fast)
c["rc_invites"] = {"per_room": dict(fast), "per_user": dict(fast), "per_issuer": dict(fast)}
c["log_config"] = None
yaml.safe_dump(c, open(path, "w"))
PY
    "$venv/bin/python" -m synapse.app.homeserver --config-path "$work/synapse/homeserver.yaml" > "$work/synapse/log" 2>&1 &
    synapse_pid=$!; pids+=("$synapse_pid")
    wait_up http://127.0.0.1:18700
}

run() { # label url pid [transport] scenario args...
    local label=$1 url=$2 pid=$3; shift 3
    local transport=longpoll
    if [ "$1" = ws ]; then transport=ws; shift; fi
    echo "-- $label ($transport): $*"
    "$loadgen" --base-url "$url" --label "$label" --server-pid "$pid" --transport "$transport" "$@" | tee -a "$work/out.txt" | tail -1 >> "$results"
}

scenarios() { # label url pid is_plexus
    local label=$1 url=$2 pid=$3 plexus=$4
    run "$label" "$url" "$pid" latency --messages "$latency_n"
    [ "$plexus" = 1 ] && run "$label" "$url" "$pid" ws latency --messages "$latency_n"
    run "$label" "$url" "$pid" fanout --members "$fan_members" --rate 5 --messages "$fan_msgs"
    run "$label" "$url" "$pid" throughput --pairs 10 --in-flight 4 --seconds "$tp_secs"
    run "$label" "$url" "$pid" idle --connections "$idle_conns" --seconds "$idle_secs"
    run "$label" "$url" "$pid" initial-sync --rooms "$is_rooms" --events "$is_events"
    run "$label" "$url" "$pid" join --members "$join_members"
    # Late, as it leaves a thousand users behind. Plexus only: Synapse takes
    # minutes on this machine just to start a thousand sync loops.
    [ "$plexus" = 1 ] && run "$label" "$url" "$pid" fanout --members "$big_fan_members" --rate 10 --messages "$fan_msgs"
    run "$label" "$url" "$pid" relations --reactions "$reactions"
    run "$label" "$url" "$pid" search --messages "$search_msgs"
    # Relations and search last, so that their large database does not weigh
    # on the figures above. Search over 100,000 messages is Plexus only:
    # filling Synapse with that many takes longer than the rest of the run.
    [ "$plexus" = 1 ] && run "$label" "$url" "$pid" search --messages "$search_big"
    return 0
}

echo "== plexus"
start_plexus
idle_rss_plexus=$(awk '/^VmRSS/ {print $2}' /proc/$plexus_pid/status)
scenarios plexus http://127.0.0.1:18600 "$plexus_pid" 1
peak_plexus=$(awk '/^VmHWM/ {print $2}' /proc/$plexus_pid/status)
kill "$plexus_pid"; wait "$plexus_pid" 2>/dev/null || true
# Memory per held sync is measured on a fresh server each time: memory freed
# by an earlier run is reused and would hide the cost.
for transport in longpoll ws; do
    start_plexus
    if [ "$transport" = ws ]; then
        run plexus http://127.0.0.1:18600 "$plexus_pid" ws idle --connections "$idle_big" --seconds "$idle_secs"
    else
        run plexus http://127.0.0.1:18600 "$plexus_pid" idle --connections "$idle_big" --seconds "$idle_secs"
    fi
    kill "$plexus_pid"; wait "$plexus_pid" 2>/dev/null || true
done

echo "== synapse $synapse_version"
start_synapse
idle_rss_synapse=$(awk '/^VmRSS/ {print $2}' /proc/$synapse_pid/status)
scenarios synapse http://127.0.0.1:18700 "$synapse_pid" 0
peak_synapse=$(awk '/^VmHWM/ {print $2}' /proc/$synapse_pid/status)
kill "$synapse_pid"; wait "$synapse_pid" 2>/dev/null || true

python3 - "$results" "$root/docs/performance.md" "$synapse_version" "$idle_rss_plexus" "$idle_rss_synapse" "$peak_plexus" "$peak_synapse" "$quick" <<'PY'
import json, sys, platform, datetime, os, subprocess
results, out, syn_version, idle_p, idle_s, peak_p, peak_s, quick = sys.argv[1:]
rows = [json.loads(l) for l in open(results) if l.strip().startswith("{")]
def find(server, scenario, transport="longpoll", **match):
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario and r["transport"] == transport and all(r.get(k) == v for k, v in match.items()):
            return r
    return None
def get(r, *path):
    for p in path:
        if r is None: return None
        r = r.get(p)
    return r
lines = []
def row(name, s, p, lower_better=True, unit=""):
    if s is None and p is None: return
    fmt = lambda v: "–" if v is None else (f"{v:,.2f}{unit}" if isinstance(v, float) else f"{v:,}{unit}")
    ratio = "–"
    if isinstance(s, (int, float)) and isinstance(p, (int, float)) and s and p:
        ratio = f"{(s / p) if lower_better else (p / s):,.1f}× better" if ((p < s) if lower_better else (p > s)) else f"{(p / s) if lower_better else (s / p):,.1f}× worse"
    lines.append(f"| {name} | {fmt(s)} | {fmt(p)} | {ratio} |")
for metric, key in [("send p50 (ms)", ("send", "p50_ms")), ("send p99 (ms)", ("send", "p99_ms")),
                    ("end-to-end p50 (ms)", ("e2e", "p50_ms")), ("end-to-end p99 (ms)", ("e2e", "p99_ms"))]:
    row(f"latency: {metric}", get(find("synapse", "latency"), *key), get(find("plexus", "latency"), *key))
row("latency over WebSocket: end-to-end p50 (ms)", None, get(find("plexus", "latency", "ws"), "e2e", "p50_ms"))
row("latency over WebSocket: end-to-end p99 (ms)", None, get(find("plexus", "latency", "ws"), "e2e", "p99_ms"))
for rate in (5.0, 10.0):
    f_s, f_p = find("synapse", "fanout", rate=rate), find("plexus", "fanout", rate=rate)
    members = get(f_p, "members")
    row(f"fan-out to {members} members at {rate:g}/s: p50 (ms)", get(f_s, "delivery", "p50_ms"), get(f_p, "delivery", "p50_ms"))
    row(f"fan-out to {members} members at {rate:g}/s: p99 (ms)", get(f_s, "delivery", "p99_ms"), get(f_p, "delivery", "p99_ms"))
    row(f"fan-out to {members} members: missed deliveries", get(f_s, "missed"), get(f_p, "missed"))
row("throughput, 10 pairs x 4 in flight: accepted msg/s", get(find("synapse", "throughput"), "accepted_per_s"), get(find("plexus", "throughput"), "accepted_per_s"), lower_better=False)
row("throughput: delivered msg/s", get(find("synapse", "throughput"), "delivered_per_s"), get(find("plexus", "throughput"), "delivered_per_s"), lower_better=False)
i_s = find("synapse", "idle")
for r in rows:
    if r["scenario"] == "idle" and r["server"] == "plexus":
        same = i_s if i_s and i_s["connections"] == r["connections"] and r["transport"] == "longpoll" else None
        row(f"held syncs ({r['connections']:,}, {r['transport']}): KB of RSS per sync", get(same, "kb_per_connection"), r.get("kb_per_connection"))
row("idle server RSS (MB)", int(idle_s) / 1024, int(idle_p) / 1024)
row("peak RSS over the whole run (MB)", int(peak_s) / 1024, int(peak_p) / 1024)
is_s, is_p = find("synapse", "initial-sync"), find("plexus", "initial-sync")
row(f"initial sync, {get(is_p,'rooms')} rooms x {get(is_p,'events')} messages: p50 (ms)", get(is_s, "initial_sync", "p50_ms"), get(is_p, "initial_sync", "p50_ms"))
row("/messages over 1,000 events, pages of 100 (ms)", get(is_s, "messages_1000_ms"), get(is_p, "messages_1000_ms"))
j_s, j_p = find("synapse", "join"), find("plexus", "join")
row(f"join a room of {get(j_p,'members')} + first sync (ms)", get(j_s, "join_and_sync_ms"), get(j_p, "join_and_sync_ms"))
r_s, r_p = find("synapse", "relations"), find("plexus", "relations")
n = get(r_p, "reactions")
row(f"/relations of an event with {n} reactions, all pages of 100 (ms)", get(r_s, "all_pages", "p50_ms"), get(r_p, "all_pages", "p50_ms"))
row(f"/relations, first 50 of {n} annotations: p50 (ms)", get(r_s, "first_page", "p50_ms"), get(r_p, "first_page", "p50_ms"))
row(f"/event with bundled aggregations ({n} reactions, a thread): p50 (ms)", get(r_s, "event", "p50_ms"), get(r_p, "event", "p50_ms"))
for r in rows:
    if r["scenario"] == "search" and r["server"] == "plexus":
        same = find("synapse", "search", messages=r["messages"])
        row(f"search over {r['messages']:,} messages, a rare word ranked: p50 (ms)", get(same, "ranked", "p50_ms"), get(r, "ranked", "p50_ms"))
        row(f"search over {r['messages']:,} messages, a common word newest first: p50 (ms)", get(same, "recent", "p50_ms"), get(r, "recent", "p50_ms"))
        row(f"search over {r['messages']:,} messages, its next page: p50 (ms)", get(same, "next_page", "p50_ms"), get(r, "next_page", "p50_ms"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
cores = os.cpu_count()
mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
doc = f"""# Performance: Plexus and Synapse side by side

Measured by `tools/bench.sh` on {datetime.date.today().isoformat()} (Plexus commit `{commit}`{', QUICK sizes' if quick == '1' else ''}).
Both servers ran on loopback on the same machine, one after the other, with
SQLite, registration open and rate limits off (Synapse: `bcrypt_rounds: 4`).
The load generator (`tools/loadgen`, release build) speaks only the
client-server API and ran on the same cores.

- Machine: {cores} cores ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}
- Synapse {syn_version} (pip `matrix-synapse`, SQLite); Plexus release build
- Command: `tools/bench.sh`

| measure | Synapse | Plexus | Plexus vs Synapse |
|---|---|---|---|
""" + "\n".join(lines) + """

Each row comes from one JSON line of `loadgen`; the raw lines of this run
follow. Latencies are from the client's side: "send" is the `PUT /send`
round trip, "end-to-end" is from the start of the send to the event
appearing in the other user's sync. The fan-out to 1,000 members runs last
and against Plexus only: Synapse takes minutes on this machine just to start
a thousand sync loops.

```
""" + "\n".join(json.dumps(r, sort_keys=True) for r in rows) + """
```
"""
open(out, "w").write(doc)
print(doc)
PY
