-- The development rockspec: `luarocks make --local
-- rockspec/turbo_ws-scm-1.rockspec` in a checkout builds the native module
-- with cargo and installs turbo_ws.so (the Lua faces are embedded).
-- Releases have their own rockspec (turbo_ws-<version>-1.rockspec, same
-- build) that `make rock` packs into a source rock.
package = "turbo_ws"
version = "scm-1"
source = {
  url = "git+https://example.invalid/turbo_ws.git",
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
