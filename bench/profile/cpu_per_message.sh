#!/usr/bin/env bash
# What the kernel side of an echo costs, untraced: user and system CPU
# time, page faults and context switches per echoed message, read from
# /proc/PID/stat and /proc/PID/status of the server around a loadgen run
# (the server on CPU 0, the generator on CPU 1, as profile.sh). Wall-clock
# figures swing with the machine's load; compare runs made back to back.
#
#   bash bench/profile/cpu_per_message.sh SERVER CONNS INFLIGHT SIZE text|binary SECONDS
#
# SERVER as for profile.sh: turbo, core, evlua, uws, fastwebsockets.
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(dirname "$HERE")"
[ $# -eq 6 ] || { sed -n 2,10p "$0"; exit 2; }
SERVER=$1 CONNS=$2 INFLIGHT=$3 SIZE=$4 KIND=$5 SECONDS_=$6
export LUA_CPATH="$ROOT/build/?.so;;"
case $SERVER in
    turbo) CMD=(luajit "$HERE/servers/turbo_echo.lua"); PATH_=/ ;;
    evlua) CMD=(luajit "$HERE/servers/evlua_echo.lua"); PATH_=/bench_handlers/echo ;;
    core) CMD=(luajit "$HERE/servers/core_echo.lua"); PATH_=/ ;;
    uws) CMD=("$HERE/target/anchors/uws_echo"); PATH_=/ ;;
    fastwebsockets) CMD=("$HERE/target/release/echo_fastws"); PATH_=/ ;;
    *) echo "unknown server $SERVER"; exit 2 ;;
esac
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "${CMD[@]}" "$port" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# Warm-up 1 s (JIT, buffers), counted from the snapshot taken after it.
out=$(mktemp)
snap() { python3 - "$pid" <<'PY'
import sys
pid = sys.argv[1]
f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
st = {l.split(":")[0]: l.split()[1] for l in open(f"/proc/{pid}/status") if "ctxt_switches" in l}
print(f[7], f[11], f[12], st["voluntary_ctxt_switches"], st["nonvoluntary_ctxt_switches"])  # minflt utime stime vcs ivcs
PY
}
taskset -c 1 "$HERE/target/release/loadgen" echo "ws://127.0.0.1:$port$PATH_" "$CONNS" "$INFLIGHT" "$SIZE" "$KIND" \
    "$SECONDS_" 1 --write=each >"$out" &
lg=$!
sleep 1.2
before=$(snap)
wait $lg
after=$(snap)
python3 - "$out" "$before" "$after" "$SERVER ${CONNS}x${INFLIGHT} ${SIZE}B" "$SECONDS_" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
b = list(map(int, sys.argv[2].split())); a = list(map(int, sys.argv[3].split()))
d = [x - y for x, y in zip(a, b)]
hz = os.sysconf("SC_CLK_TCK")
# Messages in the measured window: loadgen counts after its 1 s warm-up.
m = r["msgs"]
print(f"{sys.argv[4]}: {m} msgs in {sys.argv[5]} s; per message: user {d[1]/hz/m*1e6:.2f} us, "
      f"sys {d[2]/hz/m*1e6:.2f} us, page faults {d[0]/m:.3f}, voluntary switches {d[3]/m:.3f}, "
      f"involuntary {d[4]/m:.4f}")
PY
rm -f "$out"
