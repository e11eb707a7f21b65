--- turbo_ws.message_copy -- the faces' way to get an incoming message into
-- memory of their own (LuaJIT), with one copy and no Lua string.
--
-- A connection whose callbacks set `_on_message_length(length, binary)`
-- (instead of `on_message(data, binary)`) is called with the message's
-- length. During that call, before anything could yield,
--
--   local buf = ffi.new("unsigned char[?]", length + 1)
--   if message_copy(buf, length) ~= 0 then ... end   -- 0: copied
--
-- copies the message's bytes into `buf`. Any other answer copied nothing:
-- no message is being handed over (the call already yielded or
-- returned), or `length` is not the message's. Lua never holds the
-- message's address (src/binding/message_copy.rs).
--
-- This module is false without the FFI (PUC Lua): faces use on_message.

local core = require "turbo_ws.core"

local ok, ffi = pcall(require, "ffi")
if not ok or core._copy_entry == nil then return false end

return ffi.cast("int (*)(unsigned char *, size_t)", core._copy_entry)
