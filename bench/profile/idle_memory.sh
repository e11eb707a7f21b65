#!/usr/bin/env bash
# Idle memory per connection: RSS (/proc/PID/status) and the Lua heap
# (collectgarbage("count") after a full collection, written by
# heap_wrapper.lua once a second) before and while `loadgen idle` holds N
# connections. Used for bench/PROFILE.md ("Memory and 16 KiB, session 4").
#
#   bash bench/profile/idle_memory.sh turbo|core|evlua N
#
# PAUSE=P sets the Lua GC pause (collectgarbage("setpause", P)) first;
# SO_DIR=DIR loads DIR/turbo_ws.so instead of build/turbo_ws.so;
# GARBAGE=1 stops the Lua GC: the "Lua heap" is then all that Lua
# allocated per connection, garbage of the handshake included.
# Needs build/turbo_ws.so and bench/target/release/loadgen.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$1 N=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT; [ -n "${KEEP:-}" ] && trap 'echo "kept $TMP" >&2' EXIT
export LUA_CPATH="${SO_DIR:-$ROOT/build}/?.so;;" HEAP_OUT=$TMP/heap
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LUA_PATH="$ROOT/bench/servers/?.lua;;" taskset -c 0 luajit "$ROOT/bench/profile/heap_wrapper.lua" "$ROOT/bench/servers/${SERVER}_echo.lua" "$PORT" >/dev/null 2>"$TMP/server.err" &
PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do [ -s "$HEAP_OUT" ] && break; sleep 0.1; done
sleep 1.2
rss0=$(awk '/VmRSS/{print $2}' "/proc/$PID/status"); heap0=$(cat "$HEAP_OUT")
# The evlua face finds its handler module (bench/servers/bench_handlers)
# from the path.
URL_PATH=/; [ "$SERVER" = evlua ] && URL_PATH=/bench_handlers/echo
taskset -c 1 "$ROOT/bench/target/release/loadgen" idle "ws://127.0.0.1:$PORT$URL_PATH" "$N" 600 >"$TMP/idle.json" &
LG=$!
# Measured once every connection is open (loadgen prints its line then)
# and the heap file was rewritten since.
for _ in $(seq 600); do [ -s "$TMP/idle.json" ] && break; sleep 0.1; done
sleep 2.2
rss1=$(awk '/VmRSS/{print $2}' "/proc/$PID/status"); heap1=$(cat "$HEAP_OUT")
kill $PID; wait $PID 2>/dev/null || true
kill $LG 2>/dev/null; wait $LG 2>/dev/null || true
python3 - "$TMP/idle.json" "$SERVER" "$rss0" "$rss1" "$heap0" "$heap1" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))["conns"]
server, r0, r1, h0, h1 = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
print(f"{server} held {n}: RSS {r0} -> {r1} KiB = {(r1 - r0) * 1024 / n:.0f} B/conn; "
      f"Lua heap {h0:.0f} -> {h1:.0f} KiB = {(h1 - h0) * 1024 / n:.0f} B/conn")
PY
