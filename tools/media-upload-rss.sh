#!/usr/bin/env bash
# Measures the server's peak resident memory (VmHWM) while a 100 MB file is
# uploaded and downloaded, to show uploads stream to disk rather than being
# held in memory. Starts a release build of Plexus on a loopback port with
# a throwaway data dir; prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
port=18448
cat > "$work/plexus.toml" <<CONF
[server]
server_name = "bench.test"
listen = ["127.0.0.1:$port"]
data_dir = "$work/data"
[registration]
mode = "open"
[rate_limits]
enabled = false
[media]
max_upload_bytes = 209715200
[logging]
level = "warn"
CONF
./target/release/plexus --config "$work/plexus.toml" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 50); do curl -sf "$base/_matrix/client/versions" >/dev/null && break; sleep 0.1; done
session=$(curl -s -XPOST "$base/_matrix/client/v3/register" -d '{"username":"bench","password":"benchmark password"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["session"])')
token=$(curl -s -XPOST "$base/_matrix/client/v3/register" -d "{\"username\":\"bench\",\"password\":\"benchmark password\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$session\"}}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
hwm_kb() { awk '/^VmHWM/ {print $2}' /proc/$pid/status; }
before=$(rss_kb)
hwm_before=$(hwm_kb)  # registration hashes a password with argon2 (19 MiB)
head -c 104857600 /dev/urandom > "$work/file.bin"
uri=$(curl -s -XPOST "$base/_matrix/media/v3/upload?filename=file.bin" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/octet-stream' --data-binary @"$work/file.bin" | python3 -c 'import json,sys;print(json.load(sys.stdin)["content_uri"])')
id=${uri##*/}
curl -s "$base/_matrix/client/v1/media/download/bench.test/$id" -H "Authorization: Bearer $token" -o "$work/back.bin"
cmp -s "$work/file.bin" "$work/back.bin" && same=true || same=false
peak=$(hwm_kb)
echo "{\"bench\":\"media-upload-rss\",\"file_mb\":100,\"rss_before_kb\":$before,\"peak_before_upload_kb\":$hwm_before,\"peak_rss_kb\":$peak,\"round_trip_identical\":$same}"
