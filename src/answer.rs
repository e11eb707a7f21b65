//! A server's HTTP answer as Lua sees it, for both clients: the WebSocket
//! handshake's response and the HTTP client's.
//! `{status, reason, version, headers = {{name, value}, ...}, body, url[, protocol]}`.

use mlua::{Lua, Table};

use crate::handshake;

pub(crate) struct Answer {
    pub status: u16,
    pub reason: String,
    pub version: String,
    /// In the order received; names lower-case.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    /// The URL that gave this answer (after any redirects).
    pub url: String,
}

impl Answer {
    pub(crate) fn from_handshake(res: handshake::Response, url: &url::Url) -> Answer {
        Answer {
            status: res.status,
            reason: res.reason,
            version: res.version.to_owned(),
            headers: res.headers,
            body: res.body,
            url: url.to_string(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub(crate) fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("status", self.status)?;
        t.set("reason", self.reason.as_str())?;
        t.set("version", self.version.as_str())?;
        let headers = lua.create_table()?;
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let pair = lua.create_table()?;
            pair.raw_set(1, name.as_str())?;
            pair.raw_set(2, lua.create_string(value)?)?;
            headers.raw_set(i + 1, pair)?;
        }
        t.set("headers", headers)?;
        if let Some(body) = &self.body {
            t.set("body", lua.create_string(body)?)?;
        }
        // The subprotocol a WebSocket server chose (nil for other answers).
        t.set("protocol", self.header("sec-websocket-protocol"))?;
        t.set("url", self.url.as_str())?;
        Ok(t)
    }
}
