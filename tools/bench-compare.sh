#!/usr/bin/env bash
# Before/after figures for a change to a hot path: runs the Plexus scenarios
# of tools/bench.sh (e2e latency, fan-out to 100 and 1,000, throughput, held
# syncs) against two release builds of Plexus, alternating A and B for each
# scenario so that drift on a shared machine hits both alike, and prints one
# table. Nothing is written to docs/.
#
#   tools/bench-compare.sh BEFORE_REV AFTER_REV     # git revisions, built here
#   ROUNDS=2 tools/bench-compare.sh 52a490e HEAD    # each scenario twice per build
#   ONLY=idle-longpoll tools/bench-compare.sh A B   # one case (latency, fanout100,
#                                                   # throughput, idle-longpoll, idle-ws, fanout1000)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_REV AFTER_REV" >&2; exit 2; }
rounds=${ROUNDS:-1}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for side in a b; do git -C "$root" worktree remove --force "$work/src-$side" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building loadgen and both revisions"
# One target directory for both builds: dependencies are built once.
target="$root/target/compare"
CARGO_TARGET_DIR="$target" cargo build --release --quiet -p loadgen
cp "$target/release/loadgen" "$work/loadgen"
loadgen="$work/loadgen"
declare -A bin
for side in a b; do
    rev=$1; [ "$side" = b ] && rev=$2
    git -C "$root" worktree add --detach --quiet "$work/src-$side" "$rev"
    (cd "$work/src-$side" && CARGO_TARGET_DIR="$target" cargo build --release --quiet -p plexus)
    cp "$target/release/plexus" "$work/plexus-$side"
    bin[$side]="$work/plexus-$side"
done

start() { # side
    local dir="$work/run-$1"
    rm -rf "$dir"; mkdir -p "$dir"
    cat > "$dir/plexus.toml" <<CONF
[server]
server_name = "bench.plexus"
listen = ["127.0.0.1:18600"]
data_dir = "$dir/data"
[registration]
mode = "open"
[rate_limits]
enabled = false
[logging]
level = "warn"
CONF
    "${bin[$1]}" --config "$dir/plexus.toml" > "$dir/log" 2>&1 &
    pid=$!; pids+=("$pid")
    for _ in $(seq 300); do curl -sf http://127.0.0.1:18600/_matrix/client/versions >/dev/null && return 0; sleep 0.2; done
    echo "plexus ($1) did not start" >&2; return 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

run() { # side label [ws] scenario args... (a fresh server per scenario)
    local side=$1 label=$2; shift 2
    if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$label" ]; then return 0; fi
    local transport=longpoll
    if [ "$1" = ws ]; then transport=ws; shift; fi
    start "$side"
    echo "-- $side: $label"
    "$loadgen" --base-url http://127.0.0.1:18600 --label "$side" --server-pid "$pid" --transport "$transport" "$@" \
        | tail -1 | python3 -c "import json,sys; r=json.load(sys.stdin); r['case']='$label'; print(json.dumps(r))" \
        >> "$work/results.jsonl"
    stop
}

for _ in $(seq "$rounds"); do
    for side in a b; do run "$side" latency latency --messages 200; done
    for side in a b; do run "$side" fanout100 fanout --members 100 --rate 5 --messages 20; done
    for side in a b; do run "$side" throughput throughput --pairs 10 --in-flight 4 --seconds 10; done
    for side in a b; do run "$side" idle-longpoll idle --connections 10000 --seconds 10; done
    for side in a b; do run "$side" idle-ws ws idle --connections 10000 --seconds 10; done
    for side in a b; do run "$side" fanout1000 fanout --members 1000 --rate 10 --messages 20; done
done

python3 - "$work/results.jsonl" "$1" "$2" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
before, after = sys.argv[2], sys.argv[3]
def vals(side, case, *path):
    out = []
    for r in rows:
        if r["server"] == side and r["case"] == case:
            v = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                out.append(v)
    return out
measures = [
    ("e2e latency p50 (ms)", "latency", ("e2e", "p50_ms")),
    ("e2e latency p99 (ms)", "latency", ("e2e", "p99_ms")),
    ("fan-out to 100 p50 (ms)", "fanout100", ("delivery", "p50_ms")),
    ("fan-out to 100 p99 (ms)", "fanout100", ("delivery", "p99_ms")),
    ("fan-out to 1,000 at 10/s p50 (ms)", "fanout1000", ("delivery", "p50_ms")),
    ("fan-out to 1,000 at 10/s p99 (ms)", "fanout1000", ("delivery", "p99_ms")),
    ("fan-out missed deliveries (100 / 1,000)", None, None),
    ("throughput accepted (msg/s)", "throughput", ("accepted_per_s",)),
    ("held syncs at 10,000, long-poll (KB each)", "idle-longpoll", ("kb_per_connection",)),
    ("held syncs at 10,000, WebSocket (KB each)", "idle-ws", ("kb_per_connection",)),
]
fmt = lambda xs: " / ".join(f"{x:,.2f}" for x in xs) if xs else "–"
print(f"\n| measure | before ({before}) | after ({after}) |\n|---|---|---|")
for name, case, path in measures:
    if case is None:
        m = lambda s: [*vals(s, "fanout100", "missed"), *vals(s, "fanout1000", "missed")]
        print(f"| {name} | {fmt(m('a'))} | {fmt(m('b'))} |")
        continue
    print(f"| {name} | {fmt(vals('a', case, *path))} | {fmt(vals('b', case, *path))} |")
PY
