#!/usr/bin/env bash
# What Lua objects one idle connection keeps: lua_census.lua's census of
# everything reachable from the registry, taken before and while
# `loadgen idle` holds N connections; prints the labels whose count grew,
# as objects and bytes per connection (bench/PROFILE.md, "Session 5: idle
# memory").
#
#   bash bench/profile/lua_census.sh turbo|core|evlua N [MIN_BYTES_PER_CONN]
#
# SO_DIR=DIR loads DIR/turbo_ws.so instead of build/turbo_ws.so.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$1 N=$2 MIN=${3:-1}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LUA_CPATH="${SO_DIR:-$ROOT/build}/?.so;;" CENSUS_TRIGGER=$TMP/census
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LUA_PATH="$ROOT/bench/servers/?.lua;;" taskset -c 0 luajit "$ROOT/bench/profile/lua_census.lua" "$ROOT/bench/servers/${SERVER}_echo.lua" "$PORT" >/dev/null 2>"$TMP/server.err" &
PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
sleep 1
take() {  # take OUT: one census into OUT
  touch "$CENSUS_TRIGGER"
  for _ in $(seq 600); do [ -e "$CENSUS_TRIGGER" ] || break; sleep 0.1; done
  mv "$CENSUS_TRIGGER.out" "$1"
}
take "$TMP/before"
# The evlua face finds its handler module (bench/servers/bench_handlers)
# from the path.
URL_PATH=/; [ "$SERVER" = evlua ] && URL_PATH=/bench_handlers/echo
taskset -c 1 "$ROOT/bench/target/release/loadgen" idle "ws://127.0.0.1:$PORT$URL_PATH" "$N" 600 >"$TMP/idle.json" &
LG=$!
for _ in $(seq 600); do [ -s "$TMP/idle.json" ] && break; sleep 0.1; done
sleep 1
take "$TMP/held"
kill $PID; wait $PID 2>/dev/null || true
kill $LG 2>/dev/null; wait $LG 2>/dev/null || true
python3 - "$TMP/idle.json" "$TMP/before" "$TMP/held" "$MIN" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))["conns"]
def read(path):
    out = {}
    for line in open(path):
        c, b, label = line.rstrip("\n").split("\t", 2)
        out[label] = (int(c), int(b))
    return out
before, held, min_b = read(sys.argv[2]), read(sys.argv[3]), float(sys.argv[4])
rows, total = [], 0
for label, (c, b) in held.items():
    c0, b0 = before.get(label, (0, 0))
    if label == "<collectgarbage count>":
        gc = (b - b0) / n
        continue
    db = (b - b0) / n
    total += db
    if db >= min_b or c - c0 > 0 and db >= min_b:
        rows.append((db, (c - c0) / n, label))
print(f"held {n}; collectgarbage('count') grew {gc:.0f} B/conn; census {total:.0f} B/conn")
print(f"{'B/conn':>8} {'objs/conn':>9}  label")
for db, dc, label in sorted(rows, reverse=True):
    print(f"{db:8.1f} {dc:9.2f}  {label}")
PY
