-- turbo_ws 0.1.0. `make rock` packs this rockspec with the release tarball
-- turbo_ws-0.1.0.tar.gz into turbo_ws-0.1.0-1.src.rock, which
-- `luarocks install ./turbo_ws-0.1.0-1.src.rock` builds (cargo, --locked:
-- nothing is fetched but crates) and installs: turbo_ws.so, the Lua faces
-- embedded. The version follows Cargo.toml (scripts/rock-check.sh checks).
package = "turbo_ws"
version = "0.1.0-1"
source = {
  -- Where the release tarball is published: the one line to change once
  -- the repository has a public home (keep the file name).
  url = "https://example.invalid/turbo_ws/releases/download/v0.1.0/turbo_ws-0.1.0.tar.gz",
  dir = "turbo_ws-0.1.0",
}
description = {
  summary = "Fast, strict WebSocket server and client for LuaJIT (Turbo, coro-websocket and evlua compatible)",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "command",
  -- The Lua ABI decides the mlua feature: LuaJIT/5.1 share one, 5.4 has its
  -- own (and its own target directory, as `make build54`). CARGO_TARGET_DIR,
  -- when set, is used instead of ./target, so crates already compiled there
  -- are reused (scripts/rock-check.sh builds from an unpacked rock that way).
  -- luarocks exports CC for Lua C modules; cargo picks the C compiler of
  -- crates with C parts (ring) itself, as in `make build`, so compiled
  -- crates stay valid for both.
  build_command = [[
    case "$(LUA)" in
      *5.4*) FEATURES="--no-default-features --features lua54"; SUB=/lua54 ;;
      *)     FEATURES=""; SUB= ;;
    esac
    TARGET="${CARGO_TARGET_DIR:-target}$SUB"
    env -u CC cargo build --release --locked --target-dir "$TARGET" $FEATURES &&
    cp "$TARGET/release/libturbo_ws.so" turbo_ws.so
  ]],
  install = {
    lib = { turbo_ws = "turbo_ws.so" },
  },
}
