//! Argument checks shared by every Lua-visible function, so that misuse is
//! reported the same way everywhere:
//! `turbo_ws.connect: bad argument #2 'options' (table expected, got number)`.

use mlua::{Function, Table, Value};

/// The error for argument `n` (named `name`) of function `func`.
pub fn bad(func: &str, n: usize, name: &str, expected: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{func}: bad argument #{n} '{name}' ({expected} expected, got {})",
        type_name(got)
    ))
}

/// The type name Lua's own `type()` gives (mlua says "integer" for some numbers).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) | Value::Number(_) => "number",
        other => other.type_name(),
    }
}

/// A misuse that is not about one argument's type.
pub fn misuse(func: &str, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{func}: {message}"))
}

pub fn function(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Function> {
    match v {
        Value::Function(f) => Ok(f),
        other => Err(bad(func, n, name, "function", &other)),
    }
}

pub fn number(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<f64> {
    match v {
        Value::Integer(i) => Ok(i as f64),
        Value::Number(x) if x.is_finite() => Ok(x),
        other => Err(bad(func, n, name, "finite number", &other)),
    }
}

/// A finite number that is not negative.
pub fn non_negative(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<f64> {
    let got = v.clone();
    let x = number(func, n, name, v)?;
    if x < 0.0 {
        return Err(bad(func, n, name, "non-negative number", &got));
    }
    Ok(x)
}

/// A whole number in `0..=max`.
pub fn count(func: &str, n: usize, name: &str, v: Value, max: u64) -> mlua::Result<u64> {
    whole_in(func, n, name, v, 0, max)
}

/// A whole number from `min` to `max`.
pub fn whole_in(func: &str, n: usize, name: &str, v: Value, min: u64, max: u64) -> mlua::Result<u64> {
    let got = v.clone();
    let x = number(func, n, name, v)?;
    if x < min as f64 || x.fract() != 0.0 || x > max as f64 {
        return Err(bad(func, n, name, &format!("whole number from {min} to {max}"), &got));
    }
    Ok(x as u64)
}

pub fn string(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<mlua::LuaString> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(bad(func, n, name, "string", &other)),
    }
}

/// A string that must be UTF-8 (a close reason, a header of text), or nil.
pub fn opt_string(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Option<String>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => match s.to_str() {
            Ok(text) => Ok(Some(text.to_owned())),
            Err(_) => Err(misuse(func, format!("bad argument #{n} '{name}' (invalid UTF-8)"))),
        },
        other => Err(bad(func, n, name, "string", &other)),
    }
}

pub fn opt_bool(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Option<bool>> {
    match v {
        Value::Nil => Ok(None),
        Value::Boolean(b) => Ok(Some(b)),
        other => Err(bad(func, n, name, "boolean", &other)),
    }
}

pub fn opt_table(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Option<Table>> {
    match v {
        Value::Nil => Ok(None),
        Value::Table(t) => Ok(Some(t)),
        other => Err(bad(func, n, name, "table", &other)),
    }
}

pub fn opt_function(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Option<Function>> {
    match v {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(f)),
        other => Err(bad(func, n, name, "function", &other)),
    }
}
