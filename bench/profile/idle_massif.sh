#!/usr/bin/env bash
# The Rust (malloc) heap of a server holding N idle connections:
# valgrind massif, a detailed snapshot taken with vgdb before and while
# `loadgen idle` holds them (a peak snapshot would catch handshakes in
# flight). Read with massif_tree.py:
#
#   bash bench/profile/idle_massif.sh turbo 2000 /tmp/m
#   python3 bench/profile/massif_tree.py /tmp/m 2000 2 20 /tmp/m.before
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$1 N=$2 OUT=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LUA_CPATH="${SO_DIR:-$ROOT/build}/?.so;;" HEAP_OUT=$TMP/heap
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 valgrind --tool=massif --massif-out-file="$OUT.all" luajit "$ROOT/bench/profile/heap_wrapper.lua" \
    "$ROOT/bench/servers/${SERVER}_echo.lua" "$PORT" >/dev/null 2>"$TMP/massif.err" &
PID=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
sleep 3
vgdb --pid=$PID detailed_snapshot "$OUT.before" >/dev/null
taskset -c 1 "$ROOT/bench/target/release/loadgen" idle "ws://127.0.0.1:$PORT/" "$N" 12 >"$TMP/idle.json" &
LG=$!
sleep 9
vgdb --pid=$PID detailed_snapshot "$OUT" >/dev/null
wait $LG || true
kill $PID; wait $PID 2>/dev/null || true
cat "$TMP/idle.json"
