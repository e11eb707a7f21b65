#!/usr/bin/env bash
# Autobahn|Testsuite against turbo_ws: `conformance.sh quick|full [server|client|both]`.
# quick skips 9.* (limits/performance) and 12.*/13.* (permessage-deflate).
# Results are appended to tests/conformance/RESULTS.md for full runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
side=${2:-both}
export LUA_CPATH="$PWD/build/?.so;;"
export AGENT=turbo_ws
if [ "$mode" = full ]; then
  export RESULTS="$PWD/tests/conformance/RESULTS.md"
fi
port_server=${CONFORMANCE_SERVER_PORT:-9101}
port_client=${CONFORMANCE_CLIENT_PORT:-9102}
status=0
if [ "$side" = server ] || [ "$side" = both ]; then
  bash tests/conformance/run.sh server "luajit tests/conformance/echo_server.lua $port_server" "$port_server" "$mode" || status=1
fi
if [ "$side" = client ] || [ "$side" = both ]; then
  bash tests/conformance/run.sh client "luajit tests/conformance/client_driver.lua" "$port_client" "$mode" || status=1
fi
exit $status
