#!/usr/bin/env bash
# Autobahn|Testsuite against turbo_ws:
#   conformance.sh quick|full [server|server-evlua|client-core|client-coro|client-turbo|all]
#   server: fuzzingclient against a Turbo-face echo server (Lua on_message);
#   server-evlua: the same against an evlua-face echo server (handle_message);
#   client: fuzzingserver against three Lua drivers, one on the native core,
#           one on the coro-websocket face and one on the Turbo face's
#           WebSocketClient.
# quick skips 9.* (limits/performance) and 12.*/13.* (permessage-deflate).
# Full runs append their tables to tests/conformance/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
side=${2:-all}
export LUA_CPATH="$PWD/build/?.so;;"
if [ "$mode" = full ]; then
  export RESULTS="$PWD/tests/conformance/RESULTS.md"
fi
status=0
run() { # agent side command port
  AGENT=$1 bash tests/conformance/run.sh "$2" "$3" "$4" "$mode" || status=1
}
case "$side" in server | all) run turbo_ws-turbo server "luajit tests/conformance/turbo_echo_server.lua 9101" 9101 ;; esac
case "$side" in server-evlua | all) SERVER_PATH=/bench_handlers/echo run turbo_ws-evlua server "luajit tests/conformance/evlua_echo_server.lua 9104" 9104 ;; esac
case "$side" in client-core | all) run turbo_ws-core client "luajit tests/conformance/client_driver.lua" 9102 ;; esac
case "$side" in client-coro | all) run turbo_ws-coro client "luajit tests/conformance/coro_client_driver.lua" 9103 ;; esac
case "$side" in client-turbo | all) run turbo_ws-turbo-client client "luajit tests/conformance/turbo_client_driver.lua" 9105 ;; esac
exit $status
