//! A server's HTTP answer as Lua sees it, for both clients:
//! `{status, reason, version, headers = {{name, value}, ...}, body, url[, protocol]}`.

use mlua::{Lua, Table};

use crate::binding::record::{self, Field};
use crate::engine::answer::Answer;

pub(crate) fn to_lua(lua: &Lua, answer: &Answer) -> mlua::Result<Table> {
    let headers: Vec<(&[u8], &[u8])> =
        answer.headers.iter().map(|(name, value)| (name.as_bytes(), value.as_slice())).collect();
    let protocol = answer.header("sec-websocket-protocol");
    record::build(
        lua,
        &[
            ("status", Some(Field::Integer(answer.status.into()))),
            ("reason", Some(answer.reason.as_str().into())),
            ("version", Some(answer.version.as_str().into())),
            ("headers", Some(Field::Pairs(&headers))),
            ("body", answer.body.as_deref().map(Field::from)),
            // The subprotocol a WebSocket server chose (nil for other answers).
            ("protocol", protocol.as_deref().map(Field::from)),
            ("url", Some(answer.url.as_str().into())),
        ],
    )
}
