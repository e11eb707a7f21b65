//! What the Lua faces share, exported from the engine so that no face
//! keeps its own copy: the close-code rule, URL splitting and handshake
//! keys.
//!
//! - `core.valid_close_code(code) -> boolean`: whether `code` may be sent
//!   and received in a close frame (`frame::check_close_code`). Any Lua
//!   value is accepted; what is not a whole number in 0–65535 is simply
//!   not valid.
//! - `core.valid_utf8(s) -> boolean`: whether string `s` is UTF-8 as a
//!   text message must be (RFC 3629: no overlong forms, no surrogates),
//!   for a face checking a message it queues before the connection opens.
//! - `core.split_url(url) -> parts | nil, kind, message, detail`: the
//!   parts of a URL as written (`engine::url_parts`); a URL that does not
//!   split is an answer (`bad_url` and which part), not an error, since
//!   the faces turn it into their own error values.
//! - `core.websocket_key() -> string`: a fresh Sec-WebSocket-Key (16
//!   random bytes, base64), for a face that shows the handshake request
//!   before the core sends it.
//! - `core.random_bytes(n) -> string`: `n` bytes from the OS's random
//!   source (Turbo's `util.secure_random_bytes`), at most 1 MiB a call.

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, Value};

use crate::binding::args;
use crate::binding::record::{self, Field};
use crate::engine::url_parts::{self, UrlParts};

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

fn valid_utf8(_: &Lua, v: Value) -> mlua::Result<bool> {
    let s = args::string("turbo_ws.valid_utf8", 1, "s", v)?;
    Ok(std::str::from_utf8(&s.as_bytes()).is_ok())
}

fn valid_token(_: &Lua, v: Value) -> mlua::Result<bool> {
    let s = args::string("turbo_ws.valid_token", 1, "s", v)?;
    Ok(crate::engine::handshake::is_token(&s.as_bytes()))
}

fn split_url(lua: &Lua, v: Value) -> mlua::Result<MultiValue> {
    let raw = args::string("turbo_ws.split_url", 1, "url", v)?;
    let raw = raw.as_bytes();
    match url_parts::split(&raw) {
        Ok(parts) => parts_table(lua, &parts)?.into_lua_multi(lua),
        Err(e) => (Value::Nil, e.kind.name(), e.message, e.detail).into_lua_multi(lua),
    }
}

fn parts_table(lua: &Lua, parts: &UrlParts) -> mlua::Result<Table> {
    record::build(
        lua,
        &[
            ("scheme", parts.scheme.map(Field::Bytes)),
            ("userinfo", parts.userinfo.map(Field::Bytes)),
            ("host", parts.host.map(Field::Bytes)),
            ("port", parts.port.map(Field::Bytes)),
            ("path", Some(Field::Bytes(parts.path))),
            ("query", parts.query.map(Field::Bytes)),
            ("fragment", parts.fragment.map(Field::Bytes)),
        ],
    )
}

/// Most bytes `random_bytes` makes at once: a bound, not a need.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

fn random_bytes(lua: &Lua, n: Value) -> mlua::Result<mlua::LuaString> {
    let n = args::count("turbo_ws.random_bytes", 1, "n", n, MAX_RANDOM_BYTES)? as usize;
    let mut bytes = vec![0u8; n];
    crate::engine::random::fill(&mut bytes);
    lua.create_string(&bytes)
}

/// Registers the shared rules in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set("valid_close_code", lua.create_function(|_, v: Value| Ok(valid_close_code(&v)))?)?;
    core.set("valid_utf8", lua.create_function(valid_utf8)?)?;
    core.set("valid_token", lua.create_function(valid_token)?)?;
    core.set("split_url", lua.create_function(split_url)?)?;
    core.set("websocket_key", lua.create_function(|_, ()| Ok(crate::engine::frame::generate_key()))?)?;
    core.set("random_bytes", lua.create_function(random_bytes)?)?;
    Ok(())
}
