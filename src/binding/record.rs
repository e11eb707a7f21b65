//! Tables of plain values handed to Lua (a request's `info`, an HTTP
//! answer, a URL's parts), made in one protected call.
//!
//! mlua protects every table and string operation on its own, and under
//! LuaJIT each protected call allocates fresh C closures: ~150 bytes of
//! garbage and ~700 instructions per `Table::set` or `create_string`. A
//! request's `info` table took ~60 of them per handshake. Here the
//! entries are gathered in Rust first and the table is built with the C
//! API inside one `exec_raw`.

use mlua::{ffi, Lua, Table};

/// One field's value.
pub enum Field<'a> {
    Bytes(&'a [u8]),
    Integer(i64),
    Boolean(bool),
    /// `{{name, value}, ...}`, e.g. header fields in order.
    Pairs(&'a [(&'a [u8], &'a [u8])]),
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(s: &'a str) -> Self {
        Field::Bytes(s.as_bytes())
    }
}

impl<'a> From<&'a [u8]> for Field<'a> {
    fn from(b: &'a [u8]) -> Self {
        Field::Bytes(b)
    }
}

/// A new table with the given fields; a `None` field is left out (nil).
pub fn build(lua: &Lua, fields: &[(&str, Option<Field<'_>>)]) -> mlua::Result<Table> {
    let present = fields.iter().filter(|(_, v)| v.is_some()).count();
    // SAFETY: protected by exec_raw (a memory error unwinds to it); the
    // closure owns nothing that needs dropping. It pushes at most five
    // values (record, key, list, pair, string), checked first, and
    // leaves the record alone on the stack.
    unsafe {
        lua.exec_raw::<Table>((), |state| {
            ffi::luaL_checkstack(state, 5, std::ptr::null());
            ffi::lua_createtable(state, 0, present as _);
            for (name, field) in fields {
                let Some(field) = field else { continue };
                push_bytes(state, name.as_bytes());
                push_field(state, field);
                ffi::lua_rawset(state, -3);
            }
        })
    }
}

unsafe fn push_bytes(state: *mut ffi::lua_State, bytes: &[u8]) {
    ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
}

unsafe fn push_field(state: *mut ffi::lua_State, field: &Field<'_>) {
    match *field {
        Field::Bytes(b) => push_bytes(state, b),
        Field::Integer(n) => ffi::lua_pushinteger(state, n as _),
        Field::Boolean(b) => ffi::lua_pushboolean(state, b as _),
        Field::Pairs(pairs) => {
            ffi::lua_createtable(state, pairs.len() as _, 0);
            for (i, (name, value)) in pairs.iter().enumerate() {
                ffi::lua_createtable(state, 2, 0);
                push_bytes(state, name);
                ffi::lua_rawseti(state, -2, 1);
                push_bytes(state, value);
                ffi::lua_rawseti(state, -2, 2);
                ffi::lua_rawseti(state, -2, (i + 1) as _);
            }
        }
    }
}
