//! A server's HTTP answer as Lua sees it, for both clients:
//! `{status, reason, version, headers = {{name, value}, ...}, body, url[, protocol]}`.

use mlua::{Lua, Table};

use crate::engine::answer::Answer;

pub(crate) fn to_lua(lua: &Lua, answer: &Answer) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", answer.status)?;
    t.set("reason", answer.reason.as_str())?;
    t.set("version", answer.version.as_str())?;
    let headers = lua.create_table()?;
    for (i, (name, value)) in answer.headers.iter().enumerate() {
        let pair = lua.create_table()?;
        pair.raw_set(1, name.as_str())?;
        pair.raw_set(2, lua.create_string(value)?)?;
        headers.raw_set(i + 1, pair)?;
    }
    t.set("headers", headers)?;
    if let Some(body) = &answer.body {
        t.set("body", lua.create_string(body)?)?;
    }
    // The subprotocol a WebSocket server chose (nil for other answers).
    t.set("protocol", answer.header("sec-websocket-protocol"))?;
    t.set("url", answer.url.as_str())?;
    Ok(t)
}
