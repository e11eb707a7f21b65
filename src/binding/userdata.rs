//! Every userdata turbo_ws gives Lua (connections, requests, servers,
//! hubs, watchers, HTTP sessions) is made by [`create`], which does two
//! things mlua does not:
//!
//! - The first time a type is made in a Lua state, its methods are put
//!   behind `plain_errors` (so their errors reach Lua as strings) and the
//!   type may add to its method table ([`Object::prepare_methods`]: the
//!   connection's Lua `send`).
//! - Under Lua 5.1 and LuaJIT mlua gives each new userdata an empty table
//!   of its own as environment (its store for user values): 64 bytes of
//!   Lua heap per connection held, and per request made. turbo_ws keeps no
//!   user values on its userdata, so they share one empty table instead
//!   (a Lua program could reach it only through `debug.getfenv`). Other Lua
//!   versions have no such table.

use std::any::TypeId;
use std::ffi::CStr;

use mlua::{AnyUserData, Lua, Table, UserData, Value};

use crate::binding::plain_errors;

/// A userdata type of turbo_ws's.
pub trait Object: UserData + 'static {
    /// Who its methods are in misuse errors: "turbo_ws connection" names
    /// `turbo_ws connection:send` (docs/core.md's word for it last).
    const NAME: &'static CStr;

    /// Called once per Lua state with the type's method table, after its
    /// methods were wrapped.
    fn prepare_methods(_lua: &Lua, _methods: &Table) -> mlua::Result<()> {
        Ok(())
    }
}

/// The types whose method tables this Lua state has prepared.
#[derive(Default)]
struct Prepared(Vec<TypeId>);

/// `lua.create_userdata(value)`, its type's methods prepared, sharing the
/// environment table (5.1, LuaJIT).
pub fn create<T: Object>(lua: &Lua, value: T) -> mlua::Result<AnyUserData> {
    let ud = lua.create_userdata(value)?;
    if !is_prepared::<T>(lua) {
        prepare::<T>(lua, &ud)?;
    }
    share_env(lua, &ud)?;
    Ok(ud)
}

fn is_prepared<T: 'static>(lua: &Lua) -> bool {
    lua.app_data_ref::<Prepared>().is_some_and(|p| p.0.contains(&TypeId::of::<T>()))
}

/// Wraps the methods of `ud`'s type and lets the type add its own (mlua
/// keeps one method table per type, the `__index` of every instance's
/// metatable).
fn prepare<T: Object>(lua: &Lua, ud: &AnyUserData) -> mlua::Result<()> {
    if let Value::Table(methods) = ud.metatable()?.get::<Value>("__index")? {
        plain_errors::wrap_methods(lua, &methods, T::NAME)?;
        T::prepare_methods(lua, &methods)?;
    }
    match lua.app_data_mut::<Prepared>() {
        Some(mut prepared) => prepared.0.push(TypeId::of::<T>()),
        None => {
            lua.set_app_data(Prepared(vec![TypeId::of::<T>()]));
        }
    }
    Ok(())
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
