#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, M failed".
# A suite that crashes or prints no count is counted as one failure.
set -uo pipefail
cd "$(dirname "$0")/.."

LOG_DIR=${LOG_DIR:-build/test-logs}
mkdir -p "$LOG_DIR"
total_pass=0
total_fail=0

record() { # name passed failed
  printf '== %-28s %5d passed, %d failed\n' "$1" "$2" "$3"
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
}

# cargo test: sums the "test result:" lines.
suite_cargo() {
  local log=$LOG_DIR/cargo.log
  timeout 900 cargo test --release --locked >"$log" 2>&1
  local rc=$?
  local p f
  p=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
  f=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; tail -30 "$log"; fi
  [ "$f" -gt 0 ] && grep -E 'FAILED|panicked' "$log" | head -20
  record "cargo test" "$p" "$f"
}

# busted under LuaJIT, TAP output: counts "ok" and "not ok" lines. The
# specs against independent peers need Python `websockets` from the
# conformance virtualenv, made first; a spec skipped for want of it counts
# as failed (named in the output), not as passed.
suite_busted() {
  local log=$LOG_DIR/busted.log
  bash tests/conformance/install.sh >"$LOG_DIR/venv.log" 2>&1 || tail -5 "$LOG_DIR/venv.log"
  timeout 900 busted -o TAP >"$log" 2>&1
  local rc=$?
  local p f skipped
  p=$(grep -E '^ok ' "$log" | grep -vc '# SKIP')
  skipped=$(grep -cE '^ok .*# SKIP' "$log")
  f=$(( $(grep -cE '^not ok ' "$log") + skipped ))
  [ "$skipped" -gt 0 ] && grep -E '^ok .*# SKIP' "$log" | head -5
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; tail -30 "$log"; fi
  [ "$f" -gt 0 ] && grep -A12 -E '^not ok ' "$log" | head -80
  record "busted (LuaJIT)" "$p" "$f"
}

# One command, one test: passes when it exits 0.
suite_cmd() { # name command...
  local name=$1; shift
  local log=$LOG_DIR/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log
  if timeout 300 "$@" >"$log" 2>&1; then
    record "$name" 1 0
  else
    tail -20 "$log"
    record "$name" 0 1
  fi
}

# A suite that prints its own "name: N passed, M failed" line.
suite_counted() { # name command...
  local name=$1; shift
  local log=$LOG_DIR/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log
  timeout 1200 "$@" >"$log" 2>&1
  local rc=$?
  local line p f
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=$(echo " $line" | sed -nE 's/.*[^0-9]([0-9]+) passed, ([0-9]+) failed.*/\1/p')
  f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  [ "$f" -gt 0 ] && tail -30 "$log"
  record "$name" "$p" "$f"
}

suite_cargo
suite_busted
suite_cmd "smoke lua5.1" env LUA_CPATH="./build/?.so;;" lua5.1 tests/smoke.lua
suite_cmd "smoke lua5.4" env LUA_CPATH="./build/lua54/?.so;;" lua5.4 tests/smoke.lua
suite_cmd "smoke luajit" env LUA_CPATH="./build/?.so;;" luajit tests/smoke.lua
suite_cmd "luarocks make" bash scripts/rock-check.sh
suite_cmd "luarocks install src.rock" bash scripts/rock-check.sh install
suite_counted "layout (docs/architecture.md rules)" python3 scripts/layout-check.py
suite_counted "doc check" env LUA_CPATH="./build/?.so;;" luajit tests/doc_check.lua
suite_counted "browser (chromium)" bash scripts/browser-test.sh
suite_counted "autobahn server, Turbo face (quick)" bash scripts/conformance.sh quick server
suite_counted "autobahn client, core (quick)" bash scripts/conformance.sh quick client-core
suite_counted "autobahn client, coro face (quick)" bash scripts/conformance.sh quick client-coro
suite_counted "autobahn server, evlua face (quick)" bash scripts/conformance.sh quick server-evlua
suite_counted "autobahn client, Turbo face (quick)" bash scripts/conformance.sh quick client-turbo

echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ]
