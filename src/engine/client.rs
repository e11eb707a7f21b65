//! The WebSocket client (RFC 6455 §4.1): the opening handshake over the
//! stream `dial` opens (URL, DNS, TCP or a Unix socket, TLS), redirects
//! under the rules of `redirect`, each failure its own error kind. The
//! binding's `core.connect` runs it and hands the result to Lua.

use std::time::Duration;

use bytes::BytesMut;

use crate::engine::answer::Answer;
use crate::engine::deflate;
use crate::engine::dial::{self, Dial, Target};
use crate::engine::error::{Error, Kind};
use crate::engine::frame;
use crate::engine::handshake::{self, Failure as HandshakeFailure};
use crate::engine::limits::Limits;
use crate::engine::redirect::{self, Trail};
use crate::engine::stream::Stream;

/// Everything a connect needs (`core.connect`'s URL and options).
pub struct Connect {
    pub target: Target,
    /// Path and query to send instead of the URL's.
    pub path: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub protocols: Vec<String>,
    /// Fail an answer that picks none of the offered subprotocols (browsers
    /// do; RFC 6455 allows the answer and Turbo's client took it).
    pub require_protocol: bool,
    pub dial: Dial,
    /// For everything: DNS, connect, TLS, the handshake, every redirect.
    pub timeout: Option<Duration>,
    pub max_redirects: u32,
    pub limits: Limits,
}

/// A failure, with the response when the server answered.
/// (Boxed: a `Result` carrying an `Answer` inline is large on every path.)
pub type Failure = (Error, Option<Box<Answer>>);

/// An open WebSocket: its stream, the bytes read past the handshake, the
/// permessage-deflate terms if agreed, and the server's answer.
pub struct Established {
    pub stream: Stream,
    pub leftover: BytesMut,
    pub deflate: Option<deflate::Agreed>,
    pub answer: Answer,
}

/// Connects, within `timeout`, following redirects.
pub async fn connect(p: &Connect) -> Result<Established, Failure> {
    let Some(limit) = p.timeout else { return establish(p).await };
    tokio::time::timeout(limit, establish(p)).await.unwrap_or_else(|_| {
        let message = format!("the handshake did not finish within {limit:?}");
        Err((Error::new(Kind::HandshakeTimeout, message), None))
    })
}

/// Connects and hands back the open WebSocket (its stream and the bytes
/// read past the handshake), following redirects.
async fn establish(p: &Connect) -> Result<Established, Failure> {
    let mut target = p.target.clone();
    let mut path = p.path.clone().unwrap_or_else(|| target.path.clone());
    let mut headers = p.headers.clone();
    let mut trail = Trail::new(&target.url);
    for redirects in 0..=p.max_redirects {
        let mut stream = dial::open_stream(&target, &p.dial).await.map_err(|e| (e, None))?;
        let request = build_request(&target, &path, &headers, p).map_err(|e| (e, None))?;
        match handshake::client(&mut stream, &request).await {
            Ok((res, leftover, deflate)) => {
                let answer = Answer::from_handshake(res, &target.url);
                return Ok(Established { stream, leftover, deflate, answer });
            }
            Err(HandshakeFailure::Status(res)) => {
                let redirection = redirect::is_redirect(res.status);
                let answer = Answer::from_handshake(res, &target.url);
                match answer.header("location") {
                    Some(loc) if redirection && redirects < p.max_redirects => {
                        let (next, same_origin) =
                            target.follow(&mut trail, &loc).map_err(|e| (e, Some(Box::new(answer))))?;
                        if !same_origin {
                            // Credentials (and a Host of the program's) were meant
                            // for the first origin only.
                            redirect::strip_credentials(&mut headers);
                            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
                        }
                        target = next;
                        path = target.path.clone();
                    }
                    Some(_) if redirection && p.max_redirects > 0 => {
                        return Err((
                            Error::new(Kind::Redirects, format!("more than {} redirects", p.max_redirects)),
                            Some(Box::new(answer)),
                        ));
                    }
                    _ => {
                        let msg =
                            format!("the server answered {} {} instead of 101", answer.status, answer.reason);
                        return Err((Error::new(Kind::BadStatus, msg), Some(Box::new(answer))));
                    }
                }
            }
            Err(HandshakeFailure::BadHandshake(check, why, res)) => {
                let error = Error::new(Kind::BadHandshake, why).with_detail(check.name());
                return Err((error, Some(Box::new(Answer::from_handshake(*res, &target.url)))));
            }
            Err(e) => return Err((handshake_error(e), None)),
        }
    }
    Err((Error::new(Kind::Redirects, "too many redirects"), None))
}

fn handshake_error(e: HandshakeFailure) -> Error {
    match e {
        // A TLS alert can arrive only now: with TLS 1.3 the server checks a
        // client certificate after the client's side of the handshake is done.
        HandshakeFailure::Io(io) if dial::is_tls_error(&io) => {
            Error::new(Kind::Tls, format!("TLS failed during the handshake: {io}"))
        }
        HandshakeFailure::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => no_response(),
        HandshakeFailure::Io(io) => Error::new(Kind::Io, format!("during the handshake: {io}")),
        HandshakeFailure::NoResponse => no_response(),
        HandshakeFailure::BadResponse(m) => Error::new(Kind::BadResponse, m),
        HandshakeFailure::BadHandshake(check, m, _) => {
            Error::new(Kind::BadHandshake, m).with_detail(check.name())
        }
        HandshakeFailure::Status(res) => {
            Error::new(Kind::BadStatus, format!("the server answered {}", res.status))
        }
    }
}

fn no_response() -> Error {
    Error::new(Kind::NoResponse, "the server closed the connection without answering")
}

/// The request head, exactly as it goes on the wire.
fn build_request(
    target: &Target,
    path: &str,
    headers: &[(String, Vec<u8>)],
    p: &Connect,
) -> Result<handshake::Request, Error> {
    let path = if path.is_empty() { "/" } else { path };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            Kind::BadUrl,
            format!("cannot send path '{path}': it must be printable ASCII"),
        ));
    }
    let user =
        |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice());
    // A program may choose its own key (evlua reports it back to its caller).
    let key = user("sec-websocket-key")
        .map_or_else(frame::generate_key, |k| String::from_utf8_lossy(k).into_owned());
    let mut protocols = p.protocols.clone();
    if let Some(listed) = user("sec-websocket-protocol") {
        let listed = String::from_utf8_lossy(listed);
        protocols.extend(listed.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    }
    // Header values go out as the bytes the program gave.
    let mut head = format!("GET {path} HTTP/1.1\r\n").into_bytes();
    let mut line = |name: &str, value: &[u8]| {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    if user("host").is_none() {
        line("Host", target.host_header().as_bytes());
    }
    line("Connection", b"Upgrade");
    line("Upgrade", b"websocket");
    line("Sec-WebSocket-Version", b"13");
    if user("sec-websocket-key").is_none() {
        line("Sec-WebSocket-Key", key.as_bytes());
    }
    if !p.protocols.is_empty() {
        line("Sec-WebSocket-Protocol", p.protocols.join(", ").as_bytes());
    }
    // A program's own extensions header replaces our offer; when it offers
    // permessage-deflate, the server's agreement to it is spoken (unless
    // the program turned deflate off, which then fails the handshake).
    let own_offer = user("sec-websocket-extensions");
    let offer_deflate = p.limits.permessage_deflate
        && own_offer.is_none_or(|v| deflate::offers_deflate(&String::from_utf8_lossy(v)));
    if offer_deflate && own_offer.is_none() {
        line("Sec-WebSocket-Extensions", deflate::offer().as_bytes());
    }
    for (name, value) in headers {
        line(name, value);
    }
    head.extend_from_slice(b"\r\n");
    Ok(handshake::Request { head, key, protocols, require_protocol: p.require_protocol, offer_deflate })
}

/// The engine on its own, no Lua: the client handshake and the connection
/// driver against a raw peer written here, on a tokio runtime of the test's.
#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::engine::codec::Role;
    use crate::engine::connection::recorder::Recorder;
    use crate::engine::connection::{self, Shared};
    use crate::engine::dial::Family;

    fn request(url: &str) -> Connect {
        Connect {
            target: Target::parse(url, Family::WebSocket).expect("a valid URL"),
            path: None,
            headers: vec![("X-Test".into(), b"1".to_vec())],
            protocols: Vec::new(),
            require_protocol: true,
            dial: Dial { connect_timeout: None, tls: Default::default(), unix_socket: None },
            timeout: Some(Duration::from_secs(5)),
            max_redirects: 0,
            limits: Limits { permessage_deflate: false, ..Limits::default() },
        }
    }

    /// A raw server: answers the upgrade, sends `frames` at once, reads
    /// `expect` bytes from the client, closes TCP (as a server does after
    /// the closing handshake) and returns the request head and those bytes.
    async fn raw_peer(listener: TcpListener, frames: Vec<u8>, expect: usize) -> (String, Vec<u8>) {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.expect("request head"));
        }
        let head = String::from_utf8(head).expect("ASCII head");
        let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key");
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            frame::derive_accept_key(key.as_bytes())
        );
        s.write_all(answer.as_bytes()).await.expect("answer");
        s.write_all(&frames).await.expect("frames");
        let mut rest = vec![0u8; expect];
        s.read_exact(&mut rest).await.expect("the client's frames");
        (head, rest)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_reports_messages_and_pings_and_echoes_the_peers_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://127.0.0.1:{}/chat?x=1", listener.local_addr().expect("addr").port());
        // Sent with the 101: a text message, a ping, a close with 1012.
        let frames = [&b"\x81\x05hello"[..], b"\x89\x02hi", b"\x88\x05\x03\xf4bye"].concat();
        // The client answers with a masked pong (8 bytes) and close (11).
        let peer = tokio::spawn(raw_peer(listener, frames, 8 + 11));

        let Established { stream, leftover, deflate, answer } =
            connect(&request(&url)).await.map_err(|(e, _)| e).expect("open");
        assert_eq!(answer.status, 101);
        assert!(deflate.is_none());
        let events = Rc::new(Recorder::default());
        let shared = Shared::new(Limits::default(), Role::Client, None, events.clone());
        shared.opened(&stream);
        connection::run(shared, stream, leftover).await;

        let (head, sent) = peer.await.expect("peer");
        assert!(head.starts_with("GET /chat?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nX-Test: 1\r\n"), "{head}");
        assert_eq!(
            *events.0.borrow(),
            ["message hello false", "ping hi", "closing 1012 bye", "finished 1012 bye error=none"]
        );
        // Our pong, then the close echoed with 1012: both masked (client frames).
        assert_eq!(sent[0], 0x8A);
        assert_eq!(sent[1], 0x80 | 2);
        let close = &sent[2 + 4 + 2..];
        assert_eq!(close[0], 0x88);
        let key = [close[2], close[3], close[4], close[5]];
        let code = [close[6] ^ key[0], close[7] ^ key[1]];
        assert_eq!(u16::from_be_bytes(code), 1012);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_and_a_bad_accept_are_their_own_kinds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let refused = connect(&request(&format!("ws://127.0.0.1:{port}/"))).await;
        assert_eq!(refused.err().map(|(e, _)| e.kind), Some(Kind::Refused));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://127.0.0.1:{}/", listener.local_addr().expect("addr").port());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let wrong = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n";
            let _ = s.write_all(wrong.as_bytes()).await;
        });
        let (err, _) = connect(&request(&url)).await.err().expect("a failure");
        assert_eq!((err.kind, err.detail), (Kind::BadHandshake, Some("accept")));
    }
}
