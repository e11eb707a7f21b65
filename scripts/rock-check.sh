#!/usr/bin/env bash
# Checks the packaging.
#   rock-check.sh           `luarocks make --tree` of the development
#                           rockspec builds and installs, and a fresh luajit
#                           finds the module through `luarocks path`.
#   rock-check.sh install   the release: the versioned rockspec matches
#                           Cargo.toml and builds as the development one,
#                           `make rock`'s source rock installs with
#                           `luarocks install ./turbo_ws-<version>-1.src.rock`
#                           into a LuaJIT (5.1) tree and a Lua 5.4 tree from
#                           a directory holding nothing else, and each
#                           interpreter loads that version.
# The install builds the crate from the unpacked rock with CARGO_TARGET_DIR
# set to ./target (which `make build`/`make build54` filled), so only the
# crate itself is compiled, not its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

check_make() {
  local tree
  tree=$(mktemp -d)
  trap "rm -rf '$tree' turbo_ws.so" EXIT
  luarocks make --tree "$tree" rockspec/turbo_ws-scm-1.rockspec
  env -u LUA_CPATH_5_1 LUA_CPATH="$(luarocks --tree "$tree" path --lr-cpath)" \
    luajit -e 'local t = require "turbo_ws"; assert(t.core.listen); print("installed turbo_ws " .. t.VERSION)'
}

# The `build = {...}` part of a rockspec: both rockspecs must build alike.
build_part() { sed -n '/^build = {/,$p' "$1"; }

# The crate's own artifacts have no hash in their names (it is a cdylib),
# so the rock's build wrote over the checkout's. Removing them makes the
# next cargo build in the checkout relink from the checkout's sources
# instead of taking the rock's files as up to date.
forget_rock_build() {
  local dir
  for dir in "$root/target/release" "$root/target/lua54/release"; do
    rm -f "$dir"/libturbo_ws.so "$dir"/libturbo_ws.rlib "$dir"/deps/libturbo_ws.so "$dir"/deps/libturbo_ws.rlib
  done
}

check_install() {
  local version work
  version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -1)
  local rockspec=rockspec/turbo_ws-$version-1.rockspec
  [ -f "$rockspec" ] || { echo "no $rockspec for Cargo.toml's version $version" >&2; exit 1; }
  grep -q "^version = \"$version-1\"$" "$rockspec" || { echo "$rockspec: version is not $version-1" >&2; exit 1; }
  grep -q "dir = \"turbo_ws-$version\"" "$rockspec" || { echo "$rockspec: source.dir is not turbo_ws-$version" >&2; exit 1; }
  if ! diff <(build_part rockspec/turbo_ws-scm-1.rockspec) <(build_part "$rockspec"); then
    echo "$rockspec builds differently from turbo_ws-scm-1.rockspec" >&2
    exit 1
  fi

  work=$(mktemp -d)
  trap "rm -rf '$work'; forget_rock_build" EXIT
  ROCK_DIR="$work/rocks" bash scripts/make-rock.sh
  local rock=turbo_ws-$version-1.src.rock
  export CARGO_TARGET_DIR=$root/target
  local lua_version interpreter tree
  for pair in 5.1:luajit 5.4:lua5.4; do
    lua_version=${pair%%:*} interpreter=${pair#*:}
    tree=$work/tree-$lua_version
    # --only-server: no rock server but the rock's own directory is asked.
    (cd "$work/rocks" && luarocks --lua-version "$lua_version" install --tree "$tree" \
      --only-server="$work/rocks" "./$rock")
    env -u LUA_CPATH_5_1 -u LUA_CPATH_5_4 -u LUA_PATH_5_4 -u LUA_PATH_5_1 \
      LUA_CPATH="$(luarocks --lua-version "$lua_version" --tree "$tree" path --lr-cpath)" \
      "$interpreter" -e "local t = require 'turbo_ws'
        assert(t.core.listen and t.websocket.WebSocketHandler)
        assert(t.VERSION == '$version', 'installed ' .. tostring(t.VERSION) .. ', expected $version')
        print('$interpreter: installed turbo_ws ' .. t.VERSION .. ' from $rock')"
  done
}

case "${1:-make}" in
  make) check_make ;;
  install) check_install ;;
  *) echo "usage: rock-check.sh [make|install]" >&2; exit 2 ;;
esac
