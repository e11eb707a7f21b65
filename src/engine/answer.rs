//! A server's HTTP answer, for both clients: the WebSocket handshake's
//! response and the HTTP client's (`binding::answer` shows it to Lua).

use crate::engine::handshake;

pub(crate) struct Answer {
    pub status: u16,
    pub reason: String,
    pub version: String,
    /// In the order received, names as the server spelled them.
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
}
