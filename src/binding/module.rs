//! The module's entry points, `luaopen_turbo_ws` and
//! `luaopen_turbo_ws_compat`: they build the `turbo_ws.core` table from
//! every binding module's `register`, put the embedded Lua files (the
//! faces) in `package.preload`, and load the face the entry stands for.

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_lua.rs"));
}

use mlua::{Function, Lua, Table, Value};

/// Makes every embedded Lua file `require`-able by its module name.
///
/// For development, `TURBO_WS_LUA_DIR=lua` loads the faces from that
/// directory instead, so editing a face needs no rebuild.
fn register_embedded(lua: &Lua) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    if let Ok(dir) = std::env::var("TURBO_WS_LUA_DIR") {
        let path: String = package.get("path")?;
        package.set("path", format!("{dir}/?.lua;{path}"))?;
        return Ok(());
    }
    let preload: Table = package.get("preload")?;
    for (name, chunk_name, source) in embedded::MODULES {
        let loader = lua.load(*source).set_name(*chunk_name).into_function()?;
        preload.set(*name, loader)?;
    }
    Ok(())
}

/// Makes `turbo_ws.core` and the embedded Lua modules available in this
/// Lua state (once; a second load, e.g. after busted resets
/// package.loaded, registers them again), and attaches libuv when the
/// program uses luv. Loads no face: that is the caller's choice.
fn load_core(lua: &Lua) -> mlua::Result<()> {
    crate::engine::signals::ignore_sigpipe();
    crate::engine::signals::reset_interpreter_sigint();
    let core = lua.create_table()?;
    crate::binding::ioloop::register(lua, &core)?;
    crate::binding::server::register(lua, &core)?;
    crate::binding::client::register(lua, &core)?;
    crate::binding::http_client::register(lua, &core)?;
    crate::binding::http_session::register(lua, &core)?;
    crate::binding::pubsub::register(lua, &core)?;
    crate::binding::workers::register(lua, &core)?;
    crate::binding::toolkit::register(lua, &core)?;
    crate::binding::fd_watch::register(lua, &core)?;
    crate::binding::fast_send::register(lua, &core)?;
    crate::binding::message_copy::register(lua, &core)?;
    core.set("VERSION", env!("CARGO_PKG_VERSION"))?;
    crate::binding::plain_errors::find_error_metatable(lua)?;
    crate::binding::plain_errors::wrap_functions(lua, &core)?;

    register_embedded(lua)?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("turbo_ws.core", &core)?;
    let require: Function = lua.globals().get("require")?;
    require.call::<Table>("turbo_ws.luv")?.get::<Function>("attach_when_loaded")?.call::<()>(())
}

/// `require "turbo_ws"`: the core, and the `turbo_ws` table of the Turbo
/// face (which defines Turbo's globals, as `require "turbo"` does).
#[mlua::lua_module]
fn turbo_ws(lua: &Lua) -> mlua::Result<Value> {
    load_core(lua)?;
    let turbo_ws: Value = lua.globals().get::<Function>("require")?.call("turbo_ws.main")?;
    // luvit's require loads a C module found by path into its own cache,
    // not package.loaded; the faces' `require "turbo_ws"` must find it.
    lua.globals().get::<Table>("package")?.get::<Table>("loaded")?.set("turbo_ws", &turbo_ws)?;
    Ok(turbo_ws)
}

/// `require "turbo_ws.compat"` before `turbo_ws` itself is loaded: Lua's
/// C searcher finds this entry in turbo_ws.so. It loads the core, not the
/// Turbo face: a program that only asks for `coro-websocket` or evlua's
/// modules gets no Turbo globals.
#[mlua::lua_module(name = "turbo_ws_compat")]
fn turbo_ws_compat(lua: &Lua) -> mlua::Result<Value> {
    let package: Table = lua.globals().get("package")?;
    if package.get::<Table>("loaded")?.get::<Value>("turbo_ws.core")?.is_nil() {
        load_core(lua)?;
    }
    // `require "turbo_ws.compat"` is already in progress: run its loader directly.
    let preload: Table = package.get("preload")?;
    let loader: Function = match preload.get::<Option<Function>>("turbo_ws.compat")? {
        Some(loader) => loader,
        // Development mode (TURBO_WS_LUA_DIR): the face files are on package.path.
        None => {
            let searchpath: Function = package.get("searchpath")?;
            let path: String = searchpath.call(("turbo_ws.compat", package.get::<String>("path")?))?;
            lua.load(std::path::Path::new(&path)).into_function()?
        }
    };
    loader.call("turbo_ws.compat")
}
