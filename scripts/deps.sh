#!/usr/bin/env bash
# Installs the Debian packages turbo_ws needs, if missing.
#   deps.sh        build and run: LuaJIT, Lua 5.1/5.4, luarocks, busted, openssl,
#                  zip (make rock)
#   deps.sh test   also what the test suites use: Chromium (browser test),
#                  redis-server (pub/sub tests), lua-luv (libuv loop tests),
#                  Lua 5.4 headers (luarocks install check), Node.js (if no
#                  node is on PATH)
set -euo pipefail

packages=(luajit lua5.1 lua5.4 luarocks lua-busted python3-venv ca-certificates openssl zip)
if [ "${1:-}" = test ]; then
  # liblua5.4-dev: luarocks wants Lua 5.4's headers before it builds a
  # rock for 5.4 (the crate needs none); rock-check.sh install does.
  packages+=(chromium redis-server iproute2 lua-luv liblua5.4-dev)
  command -v node >/dev/null || packages+=(nodejs npm)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
