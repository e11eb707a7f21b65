//! The client's opening handshake (RFC 6455 §4.1): the request is written
//! as given, the answer parsed with httparse and checked. Bytes the server
//! sent after its answer (frames may follow at once) are handed on to the
//! connection. The server side is in `server.rs`, on hyper.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::deflate;
use crate::engine::frame;
use crate::engine::stream::Stream;

/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 << 10;
/// At most this much of a refusal's body is kept.
const MAX_BODY: usize = 1 << 20;
const MAX_HEADERS: usize = 100;
/// Interim (1xx) answers read past before the final one, at most.
const MAX_INTERIM: usize = 8;
/// At most this long is spent reading a refusal's body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's answer.
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: &'static str,
    /// In the server's order and spelling (`Upgrade`, not `upgrade`): the
    /// faces show them as sent. Look names up with `header`, which ignores case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body of an answer other than 101, when it has one.
    pub body: Option<Vec<u8>>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.all(name).any(|v| has_token(v, token))
    }

    /// Every value of header `name`, in order.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The value of a header that may appear once: `Err` when it is there
    /// more than once.
    fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a [u8]>, ()> {
        let mut values = self.all(name);
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            _ => Err(()),
        }
    }
}

/// Whether a header value's comma-separated list holds `token`
/// (case-insensitive), as Upgrade and Connection are read on both sides.
pub fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

pub enum Failure {
    Io(std::io::Error),
    /// The server closed the connection before a complete answer.
    NoResponse,
    /// The answer is not HTTP.
    BadResponse(String),
    /// An HTTP answer other than 101.
    Status(Response),
    /// A 101 that breaks §4.1's rules: which check, why, and the answer.
    BadHandshake(Check, String, Box<Response>),
}

/// The checks of a 101 answer (§4.1), each with a stable name that faces
/// use to tell them apart (`on_done`'s `detail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Upgrade,
    Connection,
    Accept,
    Extension,
    Protocol,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Upgrade => "upgrade",
            Check::Connection => "connection",
            Check::Accept => "accept",
            Check::Extension => "extension",
            Check::Protocol => "protocol",
        }
    }
}

/// What to send: the request head, with the key it carries.
pub struct Request {
    pub head: Vec<u8>,
    pub key: String,
    pub protocols: Vec<String>,
    /// An answer must pick one of `protocols` when there are any.
    pub require_protocol: bool,
    /// The head offers permessage-deflate.
    pub offer_deflate: bool,
}

/// Whether `name` is an HTTP token (RFC 7230 §3.2.6: letters, digits and
/// ``!#$%&'*+-.^_`|~``): what a header name and, RFC 6455 §4.1 says, a
/// subprotocol must be, so nothing else can be written into a head with it.
pub fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// Sends the request and reads the answer: on success the 101 response,
/// the bytes read past it and the permessage-deflate terms, if agreed.
pub async fn client(
    stream: &mut Stream,
    request: &Request,
) -> Result<(Response, BytesMut, Option<deflate::Agreed>), Failure> {
    stream.write_all(&request.head).await.map_err(Failure::Io)?;
    stream.flush().await.map_err(Failure::Io)?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut interim = 0;
    let (mut response, head_len) = loop {
        match parse(&buf)? {
            // An interim answer (100, 103 Early Hints) comes before the
            // final one: a client must read past it (RFC 9110 §15.2).
            Some((response, head_len)) if (100..200).contains(&response.status) && response.status != 101 => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(Failure::BadResponse(format!("over {MAX_INTERIM} interim (1xx) answers")));
                }
                buf.advance(head_len);
                continue;
            }
            // (One read may take the buffer past the limit: a head over
            // it is refused also when it arrived whole.)
            Some((_, head_len)) if head_len > MAX_HEAD => return Err(head_too_large()),
            Some(parsed) => break parsed,
            None => {}
        }
        if buf.len() > MAX_HEAD {
            return Err(head_too_large());
        }
        if stream.read_buf(&mut buf).await.map_err(Failure::Io)? == 0 {
            return Err(Failure::NoResponse);
        }
    };
    let rest = buf.split_off(head_len);
    if response.status != 101 {
        response.body = Some(read_body(stream, &response, rest).await);
        return Err(Failure::Status(response));
    }
    match check_upgrade(&response, request) {
        Ok(deflate) => Ok((response, rest, deflate)),
        Err((check, why)) => Err(Failure::BadHandshake(check, why, Box::new(response))),
    }
}

fn head_too_large() -> Failure {
    Failure::BadResponse(format!("the answer's head is over {MAX_HEAD} bytes"))
}

/// Parses a complete response head, or None while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Response, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::BadResponse(format!("the answer is not HTTP: {e}"))),
    };
    let response = Response {
        status: res.code.unwrap_or(0),
        reason: res.reason.unwrap_or("").to_owned(),
        version: if res.version == Some(0) { "HTTP/1.0" } else { "HTTP/1.1" },
        headers: res.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
        body: None,
    };
    Ok(Some((response, head_len)))
}

/// The body of a refusal: what its Content-Length announces (bounded), or
/// what already arrived.
async fn read_body(stream: &mut Stream, response: &Response, mut body: BytesMut) -> Vec<u8> {
    let announced = response
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(len) = announced {
        let len = len.min(MAX_BODY);
        let read_rest = async {
            while body.len() < len {
                match stream.read_buf(&mut body).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        // A server that announces a body and never sends it costs this long
        // at most; what arrived by then is kept.
        let _ = tokio::time::timeout(BODY_TIMEOUT, read_rest).await;
        body.truncate(len);
    }
    body.to_vec()
}

/// §4.1: Upgrade, Connection, Sec-WebSocket-Accept, the extension and the
/// subprotocol.
fn check_upgrade(res: &Response, req: &Request) -> Result<Option<deflate::Agreed>, (Check, String)> {
    // An upgrade is HTTP/1.1's (RFC 9110 §7.8; RFC 6455 §4.1 asks for 1.1).
    if res.version != "HTTP/1.1" {
        return Err((Check::Upgrade, format!("a 101 answer in {} (an upgrade needs HTTP/1.1)", res.version)));
    }
    // "websocket" and nothing else (§4.1: a value that is not a match fails).
    if !matches!(res.single("upgrade"), Ok(Some(v)) if v.trim_ascii().eq_ignore_ascii_case(b"websocket")) {
        return Err((Check::Upgrade, "the answer's Upgrade header is not 'websocket'".into()));
    }
    if !res.header_has_token("connection", "upgrade") {
        return Err((Check::Connection, "the answer has no 'Connection: Upgrade' header".into()));
    }
    // Accept and Protocol appear at most once in a response (§11.3.3, §11.3.4).
    let expected = frame::derive_accept_key(req.key.as_bytes());
    match res.single("sec-websocket-accept") {
        Ok(Some(accept)) if accept == expected.as_bytes() => {}
        Err(()) => return Err((Check::Accept, "the answer has more than one Sec-WebSocket-Accept".into())),
        _ => return Err((Check::Accept, "the answer's Sec-WebSocket-Accept does not match the key".into())),
    }
    // Extensions may be split over several fields (§9.1).
    let extensions: Vec<&[u8]> = res.all("sec-websocket-extensions").collect();
    let deflate = if extensions.is_empty() {
        None
    } else if !req.offer_deflate {
        return Err((Check::Extension, "the server chose an extension that was not offered".into()));
    } else {
        let answer = String::from_utf8_lossy(&extensions.join(&b", "[..])).into_owned();
        Some(deflate::read_answer(&answer).map_err(|m| (Check::Extension, m))?)
    };
    // The server may pick only an offered subprotocol; picking none is
    // refused too unless the program allows it (`require_protocol`).
    let chosen = res
        .single("sec-websocket-protocol")
        .map_err(|()| (Check::Protocol, "the answer has more than one Sec-WebSocket-Protocol".to_owned()))?;
    match chosen {
        Some(chosen) => {
            let chosen = String::from_utf8_lossy(chosen);
            if !req.protocols.iter().any(|p| *p == chosen) {
                return Err((
                    Check::Protocol,
                    format!("the server chose subprotocol '{chosen}', which was not offered"),
                ));
            }
        }
        None if req.require_protocol && !req.protocols.is_empty() => {
            return Err((Check::Protocol, "the server chose none of the offered subprotocols".into()));
        }
        None => {}
    }
    Ok(deflate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocols_are_tokens() {
        for ok in ["chat", "v2.json", "graphql-ws", "a!#$%&'*+-.^_`|~9"] {
            assert!(is_token(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "a b", "a,b", "a\r\nX-Injected: 1", "a;b", "(x)", "caf\u{e9}", "a\tb"] {
            assert!(!is_token(bad.as_bytes()), "{bad:?}");
        }
    }

    fn parsed(head: &str) -> Response {
        match parse(head.as_bytes()) {
            Ok(Some((res, len))) => {
                assert_eq!(len, head.len());
                res
            }
            _ => panic!("not a complete head: {head:?}"),
        }
    }

    #[test]
    fn header_names_keep_the_servers_spelling_and_order() {
        let res = parsed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nCONNECTION: Upgrade\r\nx-Mixed-CASE: 1\r\nx-mixed-case: 2\r\n\r\n");
        let names: Vec<&str> = res.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Upgrade", "CONNECTION", "x-Mixed-CASE", "x-mixed-case"]);
    }

    #[test]
    fn header_lookups_ignore_case() {
        let res = parsed("HTTP/1.1 101 OK\r\nUPGRADE: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n");
        assert_eq!(res.header("upgrade"), Some(&b"WebSocket"[..]));
        assert!(res.header_has_token("connection", "upgrade"));
        assert_eq!(res.header("sec-websocket-accept"), None);
    }

    /// `check_upgrade` of a 101 with `fields` (after Connection) to a
    /// request offering "chat" and permessage-deflate: the failed check.
    fn check_101(fields: &str) -> Result<(), Check> {
        check_101_in("HTTP/1.1", fields)
    }

    fn check_101_in(version: &str, fields: &str) -> Result<(), Check> {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = Request {
            head: Vec::new(),
            key: key.to_owned(),
            protocols: vec!["chat".to_owned()],
            require_protocol: false,
            offer_deflate: true,
        };
        let accept = frame::derive_accept_key(key.as_bytes());
        let fields = fields.replace("ACCEPT", &accept);
        let res =
            parsed(&format!("{version} 101 Switching Protocols\r\nConnection: Upgrade\r\n{fields}\r\n"));
        check_upgrade(&res, &req).map(|_| ()).map_err(|(check, _)| check)
    }

    #[test]
    fn a_101_passes_with_each_field_once() {
        assert!(check_101("Upgrade: WebSocket\r\nSec-WebSocket-Accept: ACCEPT\r\n").is_ok());
        assert!(check_101(
            "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Protocol: chat\r\n"
        )
        .is_ok());
    }

    #[test]
    fn a_101_in_http_1_0_fails() {
        let fields = "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\n";
        assert!(matches!(check_101_in("HTTP/1.0", fields), Err(Check::Upgrade)));
    }

    #[test]
    fn a_101_fails_with_upgrade_other_than_websocket_alone() {
        for upgrade in
            ["Upgrade: websocket, foo\r\n", "Upgrade: websocket\r\nUpgrade: foo\r\n", "Upgrade: foo\r\n", ""]
        {
            let fields = format!("{upgrade}Sec-WebSocket-Accept: ACCEPT\r\n");
            assert!(matches!(check_101(&fields), Err(Check::Upgrade)), "{upgrade:?}");
        }
    }

    #[test]
    fn a_101_fails_with_a_second_accept_or_protocol() {
        let twice = "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Accept: ACCEPT\r\n";
        assert!(matches!(check_101(twice), Err(Check::Accept)));
        let wrong_second =
            "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Accept: x\r\n";
        assert!(matches!(check_101(wrong_second), Err(Check::Accept)));
        let protocols =
            "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n";
        assert!(matches!(check_101(protocols), Err(Check::Protocol)));
    }

    #[test]
    fn a_101_reads_extensions_from_every_field() {
        let base = "Upgrade: websocket\r\nSec-WebSocket-Accept: ACCEPT\r\n";
        let split = format!(
            "{base}Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-foo\r\n"
        );
        assert!(matches!(check_101(&split), Err(Check::Extension)));
        let one = format!("{base}Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(check_101(&one).is_ok());
    }
}
