#!/usr/bin/env bash
# Checks the rockspec: `luarocks make --local` builds and installs, and a
# fresh luajit finds the module through `luarocks path`.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree" turbo_ws.so' EXIT
luarocks make --tree "$tree" rockspec/turbo_ws-scm-1.rockspec
eval "$(luarocks --tree "$tree" path)"
env -u LUA_CPATH_5_1 LUA_CPATH="$(luarocks --tree "$tree" path --lr-cpath)" \
  luajit -e 'local t = require "turbo_ws"; assert(t.core.listen); print("installed turbo_ws " .. t.VERSION)'
