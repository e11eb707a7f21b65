//! `conn:send` for LuaJIT's FFI (lua/turbo_ws/fast_send.lua): a plain C
//! call instead of a Lua C API method call through mlua, which cost more
//! than the send itself. The faces call it directly; the core API's
//! `conn:send` is a Lua method that calls it (`SEND_METHOD`).
//!
//! Lua never holds an address: a connection's handle is a number, an
//! index into the loop's table of open connections (`send_handles`) plus a generation
//! that changes whenever the slot is given back. A stale handle (its
//! connection gone, its slot reused) finds nothing, so a handle kept
//! longer than its connection, or a made-up one, cannot reach freed
//! memory; `fast_send` then declines and the face's `conn:send` reports
//! whatever is the matter.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use mlua::{LightUserData, Lua, Table};

use crate::binding::ioloop;
use crate::engine::connection::Shared;
use crate::engine::frame;

/// A connection's handle, given back to the table when dropped (with the
/// connection's userdata).
pub struct Handle(Option<u64>);

impl Handle {
    pub fn new(shared: &Rc<Shared>) -> Handle {
        let weak = Rc::downgrade(shared);
        let table = ioloop::current().map(|lp| lp.send_handles());
        Handle(table.and_then(|t| t.try_borrow_mut().ok()?.insert(weak)))
    }

    /// The handle as Lua sees it (`conn:_send_handle()`), if it has one.
    pub fn number(&self) -> Option<f64> {
        self.0.map(|n| n as f64)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(handle) = self.0 {
            // The loop is never freed (it is leaked), so its table is there.
            if let Some(mut t) = ioloop::current().and_then(|lp| lp.send_handles().try_borrow_mut().ok()) {
                t.release(handle);
            }
        }
    }
}

/// A message's opcode, or None for text that is not UTF-8 (which may
/// only be sent as binary).
pub fn message_opcode(bytes: &[u8], binary: bool) -> Option<u8> {
    if binary {
        Some(frame::BINARY)
    } else {
        std::str::from_utf8(bytes).is_ok().then_some(frame::TEXT)
    }
}

/// `conn:send(data, binary)` as a C function. Returns 0 when the message
/// was queued and 1 when it was not, for any reason (unknown handle, not
/// open, queue full, text not UTF-8, a caught panic); then nothing changed
/// and the face calls `conn:send`, which raises or answers as always.
///
/// # Safety
/// `data` points at `len` readable bytes (a Lua string or an FFI byte
/// buffer the caller holds for the call).
unsafe extern "C" fn fast_send(handle: u64, data: *const u8, len: usize, binary: c_int) -> c_int {
    if data.is_null() && len > 0 {
        return 1;
    }
    let bytes: &[u8] = if len == 0 { &[] } else { std::slice::from_raw_parts(data, len) };
    // No unwinding may cross the C boundary; a panic becomes "not sent".
    let sent = catch_unwind(AssertUnwindSafe(|| {
        let shared = ioloop::current().and_then(|lp| lp.send_handles().try_borrow().ok()?.get(handle));
        let Some(shared) = shared else { return false };
        let Some(opcode) = message_opcode(bytes, binary != 0) else { return false };
        shared.try_send(bytes, |out, p| out.push_message(opcode, p))
    }));
    match sent {
        Ok(true) => 0,
        _ => 1,
    }
}

/// `conn:send` in Lua: the FFI call when it can (the connection's handle
/// looked up in a weak table by its userdata, put there at its first
/// send: the faces keep the handle themselves, so most connections never
/// take a slot), else the mlua method, which then raises or answers as
/// always. Nil without the FFI.
const SEND_METHOD: &str = r#"
local method, handles, send_handle = ...
local fast_send = require "turbo_ws.fast_send"
if not fast_send then return nil end
local type, pcall = type, pcall
return function(conn, data, binary)
  local handle = handles[conn]
  if handle == nil then
    -- (Not a connection: the method below raises as it always did.)
    local ok, number = pcall(send_handle, conn)
    if ok then handle = number or false; handles[conn] = handle end
  end
  if handle and type(data) == "string" and (binary == nil or binary == true or binary == false)
     and fast_send(handle, data, #data, binary and 1 or 0) == 0 then
    return true, nil, nil
  end
  return method(conn, data, binary)
end
"#;

/// Puts the Lua `send` method in place of mlua's in the connections'
/// method table (mlua's stays there as `_send`), once per Lua state
/// (`userdata::Object::prepare_methods`). Nothing without the FFI.
pub fn install_send_method(lua: &Lua, methods: &Table) -> mlua::Result<()> {
    let method: mlua::Function = methods.raw_get("send")?;
    let send_handle: mlua::Function = methods.raw_get("_send_handle")?;
    let handles = lua.create_table()?;
    let weak_keys = lua.create_table()?;
    weak_keys.raw_set("__mode", "k")?;
    handles.set_metatable(Some(weak_keys))?;
    let send: Option<mlua::Function> =
        lua.load(SEND_METHOD).set_name("=turbo_ws.send").call((method.clone(), handles, send_handle))?;
    if let Some(send) = send {
        methods.raw_set("_send", method)?;
        methods.raw_set("send", send)?;
    }
    Ok(())
}

/// Adds `core._send_entry`, the address of [`fast_send`], for the faces.
pub fn register(_lua: &Lua, core: &Table) -> mlua::Result<()> {
    let entry: unsafe extern "C" fn(u64, *const u8, usize, c_int) -> c_int = fast_send;
    core.set("_send_entry", LightUserData(entry as *mut c_void))
}
