//! `turbo_ws.core.http_session()`: a session (`engine::http_session`,
//! idle connections kept per origin) as Lua userdata, and the `session`
//! option of `http_request` read back from it.

use std::ffi::CStr;
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataMethods, Value};

use crate::binding::args;
use crate::binding::userdata::{self, Object};
use crate::engine::http_session::Session;

/// A session as Lua holds it.
pub(crate) struct SessionHandle(pub Rc<Session>);

impl Object for SessionHandle {
    const NAME: &'static CStr = c"turbo_ws session";
}

impl UserData for SessionHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("close", |_, this, ()| {
            this.0.close();
            Ok(())
        });
        methods.add_method("idle", |_, this, ()| Ok(this.0.idle_count()));
    }
}

/// The `session` option of `http_request`.
pub(crate) fn from_option(func: &str, v: Value) -> mlua::Result<Option<Rc<Session>>> {
    let bad = |got: &Value| {
        args::misuse(
            func,
            format!("bad option 'session' (http_session expected, got {})", args::type_name(got)),
        )
    };
    match v {
        Value::Nil => Ok(None),
        Value::UserData(ud) => match ud.borrow::<SessionHandle>() {
            Ok(handle) => Ok(Some(handle.0.clone())),
            Err(_) => Err(bad(&Value::UserData(ud.clone()))),
        },
        other => Err(bad(&other)),
    }
}

/// Registers `http_session` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "http_session",
        lua.create_function(|lua, ()| userdata::create(lua, SessionHandle(Rc::new(Session::default()))))?,
    )?;
    Ok(())
}
