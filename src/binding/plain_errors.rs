//! Errors raised by turbo_ws's Rust functions reach Lua as plain strings.
//!
//! mlua raises a Rust function's error as a userdata of its own (so that a
//! Rust caller further up gets the `mlua::Error` back). A Lua program's
//! `pcall` would then get a userdata, not a string: its text starts with
//! "runtime error: " and carries a traceback, and `err:match(...)` fails.
//! So every function of `turbo_ws.core` and every method of its userdata
//! is called through [`call_plain`], which raises such an error again as
//! its message alone, as a C library's `luaL_error` would:
//! `turbo_ws.connect: bad argument #1 'url' (string expected, got nil)`.
//! Any other error value (a Lua callback's string or table) passes as it is.

use std::ffi::{c_int, CStr};

use mlua::{ffi, Lua, Table};

/// The registry field holding the metatable of mlua's error objects.
const ERROR_METATABLE: &CStr = c"turbo_ws.mlua_error_metatable";

/// What mlua's error objects say before the reason, and where their
/// traceback starts.
const RUNTIME_PREFIX: &[u8] = b"runtime error: ";
const TRACEBACK: &[u8] = b"\nstack traceback:";

/// Calls the function in upvalue 1 with this call's arguments and returns
/// what it returns; an mlua error object it raises is raised again as its
/// message (a string).
unsafe extern "C-unwind" fn call_plain(state: *mut ffi::lua_State) -> c_int {
    let nargs = ffi::lua_gettop(state);
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
    ffi::lua_insert(state, 1);
    if ffi::lua_pcall(state, nargs, ffi::LUA_MULTRET, 0) == ffi::LUA_OK {
        return ffi::lua_gettop(state);
    }
    if is_mlua_error(state) && ffi::luaL_callmeta(state, -1, c"__tostring".as_ptr()) != 0 {
        let mut len = 0;
        let text = ffi::lua_tolstring(state, -1, &mut len);
        if !text.is_null() {
            let reason = reason(std::slice::from_raw_parts(text as *const u8, len));
            ffi::lua_pushlstring(state, reason.as_ptr().cast(), reason.len());
        }
    }
    // Nothing of Rust's that needs dropping is alive here: lua_error unwinds.
    ffi::lua_error(state)
}

/// Whether the value on top of the stack is one of mlua's error objects.
unsafe fn is_mlua_error(state: *mut ffi::lua_State) -> bool {
    if ffi::lua_type(state, -1) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(state, -1) == 0 {
        return false;
    }
    ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, ERROR_METATABLE.as_ptr());
    let same = ffi::lua_rawequal(state, -1, -2) != 0;
    ffi::lua_pop(state, 2);
    same
}

/// The reason in an mlua error's text: without the "runtime error: " mlua
/// puts before a `mlua::Error::RuntimeError` and the traceback after it.
fn reason(text: &[u8]) -> &[u8] {
    let end = text.windows(TRACEBACK.len()).position(|w| w == TRACEBACK).unwrap_or(text.len());
    let text = &text[..end];
    text.strip_prefix(RUNTIME_PREFIX).unwrap_or(text)
}

/// Keeps the metatable of mlua's error objects in the registry (once per
/// state), for [`call_plain`] to tell them from other error values.
pub fn find_error_metatable(lua: &Lua) -> mlua::Result<()> {
    let probe = lua.create_function(|_, ()| Err::<(), _>(mlua::Error::runtime("probe")))?;
    // SAFETY: protected by exec_raw, with `probe` at index 1; the stack is
    // left empty.
    unsafe {
        lua.exec_raw::<()>(probe, |state| {
            if ffi::lua_pcall(state, 0, 0, 0) != ffi::LUA_OK && ffi::lua_getmetatable(state, -1) != 0 {
                ffi::lua_setfield(state, ffi::LUA_REGISTRYINDEX, ERROR_METATABLE.as_ptr());
            }
            ffi::lua_settop(state, 0);
        })
    }
}

/// Puts [`call_plain`] around every C function in `table`. Each table is
/// wrapped once: `core` is made anew by each load of the module, a
/// userdata type's methods once per Lua state (`userdata::create`).
pub fn wrap_functions(lua: &Lua, table: &Table) -> mlua::Result<()> {
    // SAFETY: protected by exec_raw, with the table at index 1.
    unsafe { lua.exec_raw::<()>(table, |state| wrap_functions_at(state, 1)) }
}

/// [`wrap_functions`] for the table at `index` of a raw Lua stack.
///
/// # Safety
/// `index` is a table on `state`'s stack; two more slots are free.
pub unsafe fn wrap_functions_at(state: *mut ffi::lua_State, index: c_int) {
    let table = ffi::lua_absindex(state, index);
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, table) != 0 {
        if ffi::lua_iscfunction(state, -1) != 0 {
            ffi::lua_pushvalue(state, -2);
            ffi::lua_pushvalue(state, -2);
            ffi::lua_pushcclosure(state, call_plain, 1);
            // Setting a field that exists during lua_next is allowed.
            ffi::lua_rawset(state, table);
        }
        ffi::lua_pop(state, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn the_reason_is_the_text_without_mluas_prefix_and_traceback() {
        let text = b"runtime error: turbo_ws.x: bad argument #1 'a' (string expected, got nil)\nstack traceback:\n\t[C]: in ?";
        assert_eq!(reason(text), b"turbo_ws.x: bad argument #1 'a' (string expected, got nil)");
        assert_eq!(
            reason(b"bad argument `self` to `Connection.close`: x\nstack traceback:\n"),
            b"bad argument `self` to `Connection.close`: x"
        );
        assert_eq!(reason(b"memory error: not enough memory"), b"memory error: not enough memory");
    }
}
