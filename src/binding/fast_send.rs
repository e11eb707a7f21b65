//! `conn:send` for LuaJIT's FFI (lua/turbo_ws/fast_send.lua): a plain C
//! call instead of a Lua C API method call through mlua, which cost more
//! than the send itself. The faces call it directly; the core API's
//! `conn:send` is a Lua method that calls it (`SEND_METHOD`).
//!
//! Lua never holds an address: a connection's handle is a number, an
//! index into this thread's table of open connections plus a generation
//! that changes whenever the slot is given back. A stale handle (its
//! connection gone, its slot reused) finds nothing, so a handle kept
//! longer than its connection, or a made-up one, cannot reach freed
//! memory; `fast_send` then declines and the face's `conn:send` reports
//! whatever is the matter.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use mlua::{LightUserData, Lua, Table};

use crate::engine::connection::Shared;
use crate::engine::frame;

/// Bits of a handle for the slot index: up to 16 million connections per
/// thread have a handle (more get none and use `conn:send`).
const INDEX_BITS: u32 = 24;
/// Generations wrap within 29 bits, so a handle fits a Lua number
/// (53 bits) exactly.
const GENERATION_MASK: u64 = (1 << 29) - 1;

#[derive(Default)]
struct Slot {
    generation: u64,
    shared: Option<Weak<Shared>>,
}

/// The open connections of this thread that have a handle.
#[derive(Default)]
struct Handles {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

thread_local! {
    static TABLE: RefCell<Handles> = RefCell::new(Handles::default());
}

impl Handles {
    fn insert(&mut self, shared: Weak<Shared>) -> Option<u64> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < 1 << INDEX_BITS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[index];
        slot.shared = Some(shared);
        Some(slot.generation << INDEX_BITS | index as u64)
    }

    fn slot(&self, handle: u64) -> Option<(usize, &Slot)> {
        let index = (handle & ((1 << INDEX_BITS) - 1)) as usize;
        let slot = self.slots.get(index)?;
        (slot.generation == handle >> INDEX_BITS).then_some((index, slot))
    }

    fn get(&self, handle: u64) -> Option<Rc<Shared>> {
        self.slot(handle)?.1.shared.as_ref()?.upgrade()
    }

    fn release(&mut self, handle: u64) {
        let Some((index, _)) = self.slot(handle) else { return };
        let slot = &mut self.slots[index];
        slot.shared = None;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
    }
}

/// A connection's handle, given back to the table when dropped (with the
/// connection's userdata).
pub struct Handle(Option<u64>);

impl Handle {
    pub fn new(shared: &Rc<Shared>) -> Handle {
        let weak = Rc::downgrade(shared);
        Handle(TABLE.try_with(|t| t.try_borrow_mut().ok()?.insert(weak)).ok().flatten())
    }

    /// The handle as Lua sees it (`conn:_send_handle()`), if it has one.
    pub fn number(&self) -> Option<f64> {
        self.0.map(|n| n as f64)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(handle) = self.0 {
            // At thread exit the table may be gone already: nothing to give back.
            let _ = TABLE.try_with(|t| {
                if let Ok(mut t) = t.try_borrow_mut() {
                    t.release(handle);
                }
            });
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
/// `data` points at `len` readable bytes (a Lua string the caller holds
/// for the call).
unsafe extern "C" fn fast_send(handle: u64, data: *const u8, len: usize, binary: c_int) -> c_int {
    if data.is_null() && len > 0 {
        return 1;
    }
    let bytes: &[u8] = if len == 0 { &[] } else { std::slice::from_raw_parts(data, len) };
    // No unwinding may cross the C boundary; a panic becomes "not sent".
    let sent = catch_unwind(AssertUnwindSafe(|| {
        let shared = TABLE.try_with(|t| t.try_borrow().ok()?.get(handle)).ok().flatten();
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
/// looked up in a weak table by its userdata), else the mlua method, which
/// then raises or answers as always. Nil without the FFI.
const SEND_METHOD: &str = r#"
local method, handles = ...
local fast_send = require "turbo_ws.fast_send"
if not fast_send then return nil end
local type = type
return function(conn, data, binary)
  local handle = handles[conn]
  if handle and type(data) == "string" and (binary == nil or binary == true or binary == false)
     and fast_send(handle, data, #data, binary and 1 or 0) == 0 then
    return true, nil, nil
  end
  return method(conn, data, binary)
end
"#;

/// Where the handles of this state's connection userdata are kept for
/// the Lua `send` method.
const HANDLES_KEY: &str = "turbo_ws.send_handles";

/// The weak table (userdata -> handle) the Lua `send` method reads, after
/// putting that method in place of mlua's in the connections' method
/// table on first use (mlua's stays there as `_send`). None when there
/// is no FFI, or the methods are not a table.
pub fn method_handles(lua: &Lua, ud: &mlua::AnyUserData) -> mlua::Result<Option<Table>> {
    match lua.named_registry_value::<mlua::Value>(HANDLES_KEY)? {
        mlua::Value::Table(handles) => return Ok(Some(handles)),
        mlua::Value::Nil => {}
        _ => return Ok(None),
    }
    // Tried once per state: false marks "no Lua send method here".
    lua.set_named_registry_value(HANDLES_KEY, false)?;
    let mlua::Value::Table(methods) = ud.metatable()?.get::<mlua::Value>("__index")? else {
        return Ok(None);
    };
    let method: mlua::Function = methods.raw_get("send")?;
    let handles = lua.create_table()?;
    let weak_keys = lua.create_table()?;
    weak_keys.raw_set("__mode", "k")?;
    handles.set_metatable(Some(weak_keys))?;
    let send: Option<mlua::Function> =
        lua.load(SEND_METHOD).set_name("=turbo_ws.send").call((method.clone(), handles.clone()))?;
    let Some(send) = send else { return Ok(None) };
    methods.raw_set("_send", method)?;
    methods.raw_set("send", send)?;
    lua.set_named_registry_value(HANDLES_KEY, &handles)?;
    Ok(Some(handles))
}

/// Adds `core._send_entry`, the address of [`fast_send`], for the faces.
pub fn register(_lua: &Lua, core: &Table) -> mlua::Result<()> {
    let entry: unsafe extern "C" fn(u64, *const u8, usize, c_int) -> c_int = fast_send;
    core.set("_send_entry", LightUserData(entry as *mut c_void))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_handle_finds_nothing_even_when_its_slot_is_reused() {
        let mut table = Handles::default();
        let first = table.insert(Weak::new()).expect("a slot");
        table.release(first);
        let second = table.insert(Weak::new()).expect("a slot");
        assert_eq!(first & ((1 << INDEX_BITS) - 1), second & ((1 << INDEX_BITS) - 1), "slot reused");
        assert_ne!(first, second, "with another generation");
        assert!(table.slot(first).is_none());
        assert!(table.slot(second).is_some());
        // Releasing a stale handle leaves the new owner alone.
        table.release(first);
        assert!(table.slot(second).is_some());
    }

    #[test]
    fn unknown_handles_find_nothing() {
        let mut table = Handles::default();
        table.insert(Weak::new()).expect("a slot");
        assert!(table.get(0).is_none());
        assert!(table.get(12345).is_none());
    }
}
