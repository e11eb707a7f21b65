//! Protocol rules the Lua faces share, exported from the engine so that no
//! face keeps its own copy: today the close-code rule.
//!
//! `core.valid_close_code(code) -> boolean`: whether `code` may be sent and
//! received in a close frame (`frame::check_close_code`). Any Lua value is
//! accepted; what is not a whole number in 0–65535 is simply not valid.

use mlua::{Lua, Table, Value};

fn valid_close_code(v: &Value) -> bool {
    let code = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(x) => *x,
        _ => return false,
    };
    code.fract() == 0.0
        && (0.0..=65535.0).contains(&code)
        && crate::engine::frame::check_close_code(code as u16)
}

/// Registers the shared rules in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set("valid_close_code", lua.create_function(|_, v: Value| Ok(valid_close_code(&v)))?)?;
    Ok(())
}
