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
//!
//! A method called with `.` instead of `:` (or on the wrong object) fails
//! in mlua before it runs, with mlua's words and its Rust type names
//! (``bad argument `self` to `HubHandle.subscribe` ``); a wrapped method
//! knows its Lua name and says it the way every other misuse is said:
//! `turbo_ws hub:subscribe: bad argument #1 'self' (hub expected, got string)`.

use std::ffi::{c_int, CStr};

use mlua::{ffi, Lua, Table};

/// The registry field holding the metatable of mlua's error objects.
const ERROR_METATABLE: &CStr = c"turbo_ws.mlua_error_metatable";

/// What mlua's error objects say before the reason, and where their
/// traceback starts.
const RUNTIME_PREFIX: &[u8] = b"runtime error: ";
const TRACEBACK: &[u8] = b"\nstack traceback:";

/// The start of mlua's error for a method's `self` of the wrong type.
const BAD_SELF: &[u8] = b"bad argument `self` to `";

/// Calls the function in upvalue 1 with this call's arguments and returns
/// what it returns; an mlua error object it raises is raised again as its
/// message (a string). A method has its Lua name in upvalue 2
/// ("turbo_ws connection:send", the object's name first).
unsafe extern "C-unwind" fn call_plain(state: *mut ffi::lua_State) -> c_int {
    let nargs = ffi::lua_gettop(state);
    // Read now: the call consumes the arguments.
    let self_type = ffi::lua_type(state, 1);
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
            if reason.starts_with(BAD_SELF)
                && ffi::lua_type(state, ffi::lua_upvalueindex(2)) == ffi::LUA_TSTRING
            {
                push_bad_self(state, self_type);
            } else {
                ffi::lua_pushlstring(state, reason.as_ptr().cast(), reason.len());
            }
        }
    }
    // Nothing of Rust's that needs dropping is alive here: lua_error unwinds.
    ffi::lua_error(state)
}

/// Pushes the error for a method called on something that is not its
/// object, named as the method in upvalue 2 names it.
unsafe fn push_bad_self(state: *mut ffi::lua_State, self_type: c_int) {
    let method = CStr::from_ptr(ffi::lua_tostring(state, ffi::lua_upvalueindex(2))).to_bytes();
    let object = object_name(method);
    let got = CStr::from_ptr(ffi::lua_typename(state, self_type)).to_bytes();
    let mut text = Vec::with_capacity(method.len() + object.len() + got.len() + 48);
    text.extend_from_slice(method);
    text.extend_from_slice(b": bad argument #1 'self' (");
    text.extend_from_slice(object);
    text.extend_from_slice(b" expected, got ");
    text.extend_from_slice(got);
    // Anything but another userdata is most likely a call with '.'.
    text.extend_from_slice(if self_type == ffi::LUA_TUSERDATA { b")" } else { b"; call it with ':')" });
    ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
}

/// "connection" in "turbo_ws connection:send", "hub" in "turbo_ws.pubsub hub:publish".
fn object_name(method: &[u8]) -> &[u8] {
    let start = method.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
    let end = method.iter().rposition(|&b| b == b':').unwrap_or(method.len());
    method.get(start..end).unwrap_or(method)
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
    unsafe { lua.exec_raw::<()>(table, |state| wrap_functions_at(state, 1, None)) }
}

/// [`wrap_functions`] for the method table of a userdata type, its methods
/// named `object` ("turbo_ws connection") and their own name: a method
/// called on anything else says so in those words.
pub fn wrap_methods(lua: &Lua, table: &Table, object: &CStr) -> mlua::Result<()> {
    // SAFETY: protected by exec_raw, with the table at index 1.
    unsafe { lua.exec_raw::<()>(table, |state| wrap_functions_at(state, 1, Some(object))) }
}

/// [`wrap_functions`] for the table at `index` of a raw Lua stack; with
/// `object`, its functions are methods of that object.
///
/// # Safety
/// `index` is a table on `state`'s stack; five more slots are free.
pub unsafe fn wrap_functions_at(state: *mut ffi::lua_State, index: c_int, object: Option<&CStr>) {
    let table = ffi::lua_absindex(state, index);
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, table) != 0 {
        if ffi::lua_iscfunction(state, -1) != 0 {
            ffi::lua_pushvalue(state, -2);
            ffi::lua_pushvalue(state, -2);
            let upvalues = match object {
                Some(object) if ffi::lua_type(state, -2) == ffi::LUA_TSTRING => {
                    ffi::lua_pushfstring(
                        state,
                        c"%s:%s".as_ptr(),
                        object.as_ptr(),
                        ffi::lua_tostring(state, -2),
                    );
                    2
                }
                _ => 1,
            };
            ffi::lua_pushcclosure(state, call_plain, upvalues);
            // Setting a field that exists during lua_next is allowed.
            ffi::lua_rawset(state, table);
        }
        ffi::lua_pop(state, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::{object_name, reason};

    #[test]
    fn a_methods_object_is_the_word_before_its_colon() {
        assert_eq!(object_name(b"turbo_ws connection:send"), b"connection");
        assert_eq!(object_name(b"turbo_ws.pubsub hub:publish"), b"hub");
    }

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
