//! turbo_ws: a WebSocket server and client for LuaJIT, written in Rust.
//!
//! `require "turbo_ws"` loads this library. Rust owns the bytes (sockets,
//! HTTP, framing, TLS); Lua owns the application. The Lua-visible native
//! API is the `turbo_ws.core` table; the three compatible faces (Turbo,
//! coro-websocket, evlua) are Lua files under `lua/`, embedded here and
//! registered in `package.preload`.
//!
//! Two layers in Rust: `engine` (the protocol, connections, servers,
//! clients, pub/sub; knows nothing of Lua) and `binding` (the only code
//! touching Lua, including the module entry points in `binding::module`).
//! docs/architecture.md has the map.

pub(crate) mod binding;
pub(crate) mod engine;
#[doc(hidden)]
pub mod fuzz_api;
