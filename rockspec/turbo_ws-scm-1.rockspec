-- `luarocks make --local rockspec/turbo_ws-scm-1.rockspec` builds the native
-- module with cargo and installs turbo_ws.so (the Lua faces are embedded).
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
  -- The Lua ABI decides the mlua feature: LuaJIT/5.1 share one, 5.4 has its own.
  build_command = [[
    case "$(LUA)" in
      *5.4*) FEATURES="--no-default-features --features lua54"; TARGET=target/lua54 ;;
      *)     FEATURES=""; TARGET=target ;;
    esac
    cargo build --release --locked --target-dir $TARGET $FEATURES &&
    cp $TARGET/release/libturbo_ws.so turbo_ws.so
  ]],
  install = {
    lib = { turbo_ws = "turbo_ws.so" },
  },
}
