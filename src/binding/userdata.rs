//! Userdata made for every connection and every request, without a table
//! each of their own.
//!
//! Under Lua 5.1 and LuaJIT mlua gives each new userdata an empty table
//! of its own as environment (its store for user values): 64 bytes of Lua
//! heap per connection held, and per request made. turbo_ws keeps no user
//! values on these userdata, so they share one empty table instead (a
//! Lua program could reach it only through `debug.getfenv`). Other Lua
//! versions have no such table: there this is `create_userdata`.

use mlua::{AnyUserData, Lua, UserData};

/// `lua.create_userdata(value)`, sharing the environment table (5.1, LuaJIT).
pub fn create<T: UserData + 'static>(lua: &Lua, value: T) -> mlua::Result<AnyUserData> {
    let ud = lua.create_userdata(value)?;
    share_env(lua, &ud)?;
    Ok(ud)
}

#[cfg(any(feature = "lua51", feature = "luajit"))]
fn share_env(lua: &Lua, ud: &AnyUserData) -> mlua::Result<()> {
    use mlua::ffi;
    const KEY: &std::ffi::CStr = c"turbo_ws.userdata_env";
    // SAFETY: protected by exec_raw (one call, not one per registry
    // access: mlua's each allocate closures under LuaJIT), with `ud` at
    // index 1. The shared table is found in the registry under KEY (put
    // there the first time); lua_setfenv pops it as the userdata's
    // environment.
    unsafe {
        lua.exec_raw::<()>(ud, |state| {
            ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, KEY.as_ptr());
            if ffi::lua_istable(state, -1) == 0 {
                ffi::lua_pop(state, 1);
                ffi::lua_createtable(state, 0, 0);
                ffi::lua_pushvalue(state, -1);
                ffi::lua_setfield(state, ffi::LUA_REGISTRYINDEX, KEY.as_ptr());
            }
            ffi::lua_setfenv(state, 1);
        })
    }
}

#[cfg(not(any(feature = "lua51", feature = "luajit")))]
fn share_env(_lua: &Lua, _ud: &AnyUserData) -> mlua::Result<()> {
    Ok(())
}
