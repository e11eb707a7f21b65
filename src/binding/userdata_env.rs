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
    const KEY: &str = "turbo_ws.userdata_env";
    let env: mlua::Table = match lua.named_registry_value::<Option<mlua::Table>>(KEY)? {
        Some(env) => env,
        None => {
            let env = lua.create_table()?;
            lua.set_named_registry_value(KEY, &env)?;
            env
        }
    };
    // SAFETY: the closure runs protected with (ud, env) as its stack;
    // lua_setfenv pops env and sets it as the userdata's environment.
    unsafe {
        lua.exec_raw::<()>((ud, env), |state| {
            mlua::ffi::lua_setfenv(state, 1);
        })
    }
}

#[cfg(not(any(feature = "lua51", feature = "luajit")))]
fn share_env(_lua: &Lua, _ud: &AnyUserData) -> mlua::Result<()> {
    Ok(())
}
