#!/usr/bin/env bash
# Where a client's time goes, in numbers that are stable on a noisy machine:
# instructions (valgrind callgrind) and system calls (strace -c) per echoed
# message, for the client side of issue 16 (bench.py's client part).
#
#   bash bench/profile/client_profile.sh CLIENT CONNS INFLIGHT SECONDS OUT_DIR
#
# CLIENT: loadgen (the Rust load generator), turbo (bench/clients/turbo_client.lua),
# coro (bench/clients/coro_client.lua), coro-luv (the same under luv's uv.run()).
# The echo server is uWebSockets (bench/target/anchors/uws_echo; with
# ECHO_SERVER=tungstenite bench.py's tokio-tungstenite one), natively on CPU 0; the client runs under the tool on CPU 1, 32 B text messages, each
# written on its own. Every figure is an echo run minus a baseline run that
# opens the same connections and holds them as long without sending, so
# start-up, handshakes and the idle loop cancel out. Prints one line per tool
# (TOOLS=callgrind or TOOLS=strace: that one only).
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(dirname "$HERE")"
[ $# -eq 5 ] || { sed -n 2,14p "$0"; exit 2; }
CLIENT=$1 CONNS=$2 INFLIGHT=$3 SECONDS_=$4 OUT=$5
mkdir -p "$OUT"
LOADGEN="$HERE/target/release/loadgen"
case ${ECHO_SERVER:-uws} in
    uws) SERVER_BIN="$HERE/target/anchors/uws_echo" ;;
    tungstenite) SERVER_BIN="$HERE/target/release/echo_tungstenite" ;;
    *) echo "unknown ECHO_SERVER $ECHO_SERVER"; exit 2 ;;
esac
# SO_DIR=<dir with a turbo_ws.so>: another build (A/B against build/).
export LUA_CPATH="${SO_DIR:-$ROOT/build}/?.so;;" BENCH_WARMUP=0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# client_cmd URL INFLIGHT: the client's command line; INFLIGHT 0 is the baseline.
client_cmd() {
    local url=$1 w=$2
    case $CLIENT in
        loadgen) if [ "$w" = 0 ]; then echo "$LOADGEN idle $url $CONNS $SECONDS_"
                 else echo "$LOADGEN echo $url $CONNS $w 32 text $SECONDS_ 0 --write=each"; fi ;;
        turbo) echo "luajit $HERE/clients/turbo_client.lua $url $CONNS $w $SECONDS_" ;;
        coro) echo "luajit $HERE/clients/coro_client.lua $url $CONNS $w $SECONDS_" ;;
        coro-luv) echo "luajit $HERE/clients/coro_client.lua $url $CONNS $w $SECONDS_ luv" ;;
        *) echo "unknown client $CLIENT" >&2; exit 2 ;;
    esac
}

# run TOOL INFLIGHT TAG: a fresh echo server, the client under TOOL against
# it; prints the number of messages the client counted.
run() {
    local tool=$1 w=$2 tag=$3 port spid cmd
    port=$(free_port)
    taskset -c 0 "$SERVER_BIN" "$port" >/dev/null 2>&1 &
    spid=$!
    wait_port "$port" || { echo "server did not listen" >&2; kill "$spid"; exit 1; }
    cmd=$(client_cmd "ws://127.0.0.1:$port/" "$w")
    case $tool in
        callgrind) taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.callgrind" \
                       $cmd >"$OUT/$tag.out" 2>"$OUT/$tag.valgrind.log" ;;
        strace) taskset -c 1 strace -f -c -o "$OUT/$tag.strace" $cmd >"$OUT/$tag.out" 2>/dev/null ;;
    esac
    kill -TERM "$spid"
    wait "$spid" 2>/dev/null || true
    # $tag.loadgen.json: the counts, where per_message.py and callers.py look.
    if [ "$w" = 0 ]; then echo 0; else
        python3 -c 'import json,sys
line = next(l for l in open(sys.argv[1]) if l.startswith("{"))
open(sys.argv[2], "w").write(line)
print(json.loads(line)["msgs"])' "$OUT/$tag.out" "$OUT/$tag.loadgen.json"; fi
}

total_ir() { grep -m1 '^summary:\|^totals:' "$1" | awk '{print $2}'; }

TOOLS=${TOOLS:-callgrind strace} # TOOLS=callgrind: instructions only
if [[ " $TOOLS " == *" callgrind "* ]]; then
msgs=$(run callgrind "$INFLIGHT" cg-echo)
run callgrind 0 cg-base >/dev/null
ir=$(total_ir "$OUT/cg-echo.callgrind"); base=$(total_ir "$OUT/cg-base.callgrind")
echo "callgrind client $CLIENT ${CONNS}x${INFLIGHT} 32B: $msgs msgs, Ir $ir - baseline $base = $(( (ir - base) / msgs )) instructions per message"

fi

[[ " $TOOLS " == *" strace "* ]] || exit 0
msgs=$(run strace "$INFLIGHT" st-echo)
run strace 0 st-base >/dev/null
python3 "$HERE/profile/strace_per_message.py" "$OUT/st-echo.strace" "$OUT/st-base.strace" "$msgs" "client $CLIENT ${CONNS}x${INFLIGHT} 32B"
