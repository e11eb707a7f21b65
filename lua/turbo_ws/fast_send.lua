--- turbo_ws.fast_send -- the faces' cheap way to send a message (LuaJIT).
--
-- `conn:send` is a Lua C API method call through mlua (argument
-- conversion, a userdata borrow, three results): it cost more than the
-- send itself. Under LuaJIT the faces call the core's C function instead,
-- through the FFI (a call the JIT compiles), with the Lua string's bytes
-- (not copied):
--
--   if fast_send and fast_send(handle, msg, #msg, binary and 1 or 0) == 0 then
--     -- queued
--   else
--     -- conn:send(msg, binary): raises or answers as always
--   end
--
-- 0 means the message was queued. Any other answer changed nothing (not
-- open, queue full, text not UTF-8): `conn:send` then reports why, exactly
-- as without the fast path.
--
-- `handle` is `conn:_send_handle()`: a number the core knows the
-- connection by (nil when it has none: then there is no fast path). It
-- holds no address: once the connection is gone the same number finds
-- nothing, and the answer is 1 (src/binding/fast_send.rs).
--
-- This module is false without the FFI (PUC Lua): faces use `conn:send`.

local core = require "turbo_ws.core"

local ok, ffi = pcall(require, "ffi")
if not ok or core._send_entry == nil then return false end

return ffi.cast("int (*)(uint64_t, const char *, size_t, int)", core._send_entry)
