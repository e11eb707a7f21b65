#!/usr/bin/env bash
# Where the server's time goes, in numbers that are stable on a noisy
# machine: instructions (valgrind callgrind) and system calls (strace -c)
# per echoed message. Used for bench/PROFILE.md.
#
#   bash bench/profile/profile.sh SERVER CONNS INFLIGHT SIZE text|binary SECONDS OUT_DIR
#
# SERVER: turbo (bench/servers/turbo_echo.lua), turbo-nogc (the same, GC stopped), evlua, evlua-nogc, core, uws
# (bench/target/anchors/uws_echo), fastwebsockets. The generator writes each
# message with its own write (the default, browser-like). Every figure is
# the difference between an echo run and a baseline run that only opens and
# holds the same connections, so start-up and handshakes cancel out.
# Server on CPU 0, generator on CPU 1. Prints one summary line per tool.
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(dirname "$HERE")"
[ $# -eq 7 ] || { sed -n 2,14p "$0"; exit 2; }
SERVER=$1 CONNS=$2 INFLIGHT=$3 SIZE=$4 KIND=$5 SECONDS_=$6 OUT=$7
mkdir -p "$OUT"
LOADGEN="$HERE/target/release/loadgen"
export LUA_CPATH="${SO_DIR:-$ROOT/build}/?.so;;"  # SO_DIR: another build to compare
case $SERVER in
    turbo) CMD=(luajit "$HERE/servers/turbo_echo.lua"); PATH_=/ ;;
    # The same with Lua's garbage collector stopped: the difference is GC cost.
    turbo-nogc) CMD=(luajit -e "collectgarbage('stop')" "$HERE/servers/turbo_echo.lua"); PATH_=/ ;;
    evlua) CMD=(luajit "$HERE/servers/evlua_echo.lua"); PATH_=/bench_handlers/echo ;;
    evlua-nogc) CMD=(luajit -e "collectgarbage('stop')" "$HERE/servers/evlua_echo.lua"); PATH_=/bench_handlers/echo ;;
    core) CMD=(luajit "$HERE/servers/core_echo.lua"); PATH_=/ ;;
    uws) CMD=("$HERE/target/anchors/uws_echo"); PATH_=/ ;;
    fastwebsockets) CMD=("$HERE/target/release/echo_fastws"); PATH_=/ ;;
    *) echo "unknown server $SERVER"; exit 2 ;;
esac
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# run TOOL LOAD TAG: starts the server under TOOL, applies LOAD (echo|idle),
# stops the server; prints the number of messages echoed.
run() {
    local tool=$1 load=$2 tag=$3 port pid msgs=0
    port=$(free_port)
    case $tool in
        callgrind) taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.callgrind" \
                       "${CMD[@]}" "$port" >/dev/null 2>"$OUT/$tag.valgrind.log" & ;;
        strace) taskset -c 0 strace -f -c -o "$OUT/$tag.strace" "${CMD[@]}" "$port" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    wait_port "$port" || { echo "server did not listen" >&2; kill "$pid"; exit 1; }
    if [ "$load" = echo ]; then
        # Warm-up 0: every echo of the run is counted (but those still in
        # flight when it stops, at most CONNS x INFLIGHT).
        taskset -c 1 "$LOADGEN" echo "ws://127.0.0.1:$port$PATH_" "$CONNS" "$INFLIGHT" "$SIZE" "$KIND" \
            "$SECONDS_" 0 --write=each >"$OUT/$tag.loadgen.json"
        msgs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["msgs"])' "$OUT/$tag.loadgen.json")
    else
        taskset -c 1 "$LOADGEN" idle "ws://127.0.0.1:$port$PATH_" "$CONNS" 1 >"$OUT/$tag.loadgen.json"
    fi
    sleep 0.5
    # strace: stop the traced server (its child), then strace writes its summary.
    local victim=$pid
    if [ "$tool" = strace ]; then victim=$(ps --ppid "$pid" -o pid= | head -1); fi
    kill -TERM $victim
    wait "$pid" 2>/dev/null || true
    echo "$msgs"
}

total_ir() { grep -m1 '^summary:\|^totals:' "$1" | awk '{print $2}'; }

msgs=$(run callgrind echo cg-echo)
run callgrind idle cg-base >/dev/null
ir=$(total_ir "$OUT/cg-echo.callgrind"); base=$(total_ir "$OUT/cg-base.callgrind")
echo "callgrind $SERVER ${CONNS}x${INFLIGHT} ${SIZE}B: $msgs msgs, Ir $ir - baseline $base = $(( (ir - base) / msgs )) instructions per message"

msgs=$(run strace echo st-echo)
run strace idle st-base >/dev/null
python3 "$HERE/profile/strace_per_message.py" "$OUT/st-echo.strace" "$OUT/st-base.strace" "$msgs" "$SERVER ${CONNS}x${INFLIGHT} ${SIZE}B"
