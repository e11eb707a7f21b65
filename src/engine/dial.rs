//! Reaching a server, for every client (WebSocket and HTTP): the target a
//! URL names, DNS, TCP (each address in turn) and TLS, each failure
//! reported as its own error kind; and the options both clients read the
//! same way (`tls`, `connect_timeout`, `headers`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::engine::error::{Error, Kind};
use crate::engine::redirect::{Hop, Trail};
use crate::engine::stream::Stream;
use crate::engine::tls;
use crate::engine::url_parts;

/// Which URL schemes a client speaks: each family has a plain and a secure one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// ws and wss.
    WebSocket,
    /// http and https.
    Http,
}

impl Family {
    /// (plain, secure) scheme names.
    fn schemes(self) -> (&'static str, &'static str) {
        match self {
            Family::WebSocket => ("ws", "wss"),
            Family::Http => ("http", "https"),
        }
    }

    /// Whether `scheme` runs over TLS, or None when the family does not speak it.
    fn is_secure(self, scheme: &str) -> Option<bool> {
        let (plain, secure) = self.schemes();
        match scheme {
            s if s == plain => Some(false),
            s if s == secure => Some(true),
            _ => None,
        }
    }
}

/// Where to connect, from a URL of the client's family.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Host as written in the URL (IPv6 literals keep their brackets).
    host: String,
    port: u16,
    pub(crate) tls: bool,
    /// Path and query exactly as written in the URL ("/" when empty).
    pub(crate) path: String,
    pub(crate) url: url::Url,
    family: Family,
}

impl Target {
    pub(crate) fn parse(raw: &str, family: Family) -> Result<Target, Error> {
        let url =
            url::Url::parse(raw).map_err(|e| Error::new(Kind::BadUrl, format!("bad URL '{raw}': {e}")))?;
        let Some(tls) = family.is_secure(url.scheme()) else {
            let (plain, secure) = family.schemes();
            return Err(Error::new(
                Kind::BadScheme,
                format!("unsupported scheme '{}' ({plain} or {secure} expected)", url.scheme()),
            ));
        };
        if written_without_host(raw) {
            return Err(Error::new(Kind::BadUrl, format!("no host in URL '{raw}'")));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::new(Kind::BadUrl, format!("no host in URL '{raw}'")))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { host, port, tls, path: raw_path(raw, &url), url, family })
    }

    /// What identifies the server: TLS or not, host (lower case) and port.
    pub(crate) fn origin(&self) -> (bool, String, u16) {
        (self.tls, self.host.to_ascii_lowercase(), self.port)
    }

    /// The Host header: the port only when it is not the scheme's default.
    pub(crate) fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A Location header from a redirect, resolved against this URL and
    /// checked by the trail's rules. A WebSocket client maps `http(s)`
    /// locations to `ws(s)`. Also tells whether the new target is on the
    /// same origin.
    pub(crate) fn follow(&self, trail: &mut Trail, location: &str) -> Result<(Target, bool), Error> {
        let Hop { mut url, same_origin } = trail.follow(&self.url, location)?;
        if self.family == Family::WebSocket {
            let scheme = match url.scheme() {
                "http" => Some("ws"),
                "https" => Some("wss"),
                _ => None,
            };
            if let Some(s) = scheme {
                // Setting a special scheme from another special one cannot fail.
                let _ = url.set_scheme(s);
            }
        }
        Ok((Target::parse(url.as_str(), self.family)?, same_origin))
    }
}

/// A URL whose authority, as written, is missing or has an empty host
/// (`ws:x`, `ws:///x`): RFC 6455 §3 and RFC 7230 §2.7.1 require one. The
/// WHATWG parser behind `url` reads both as host "x".
fn written_without_host(raw: &str) -> bool {
    matches!(url_parts::split(raw.as_bytes()), Ok(parts) if parts.host.is_none_or(<[u8]>::is_empty))
}

/// The path and query of a URL as written, without normalisation ("/"
/// when there is no path); where the URL does not split as written (a
/// space in the path, say), the parser's percent-encoded form of them.
fn raw_path(raw: &str, url: &url::Url) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (path, query) = match url_parts::split(raw.as_bytes()) {
        Ok(parts) if parts.host.is_some() => (text(parts.path), parts.query.map(text)),
        _ => (url.path().to_owned(), url.query().map(str::to_owned)),
    };
    let path = if path.is_empty() { "/".to_owned() } else { path };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// How to reach the server: read from the `connect_timeout`, `tls` and
/// `unix_socket` options.
pub(crate) struct Dial {
    /// Limit for the TCP connect to each address.
    pub connect_timeout: Option<Duration>,
    pub tls: tls::ClientOptions,
    /// Connect to this Unix domain socket instead of the URL's host and
    /// port (which still give the Host header).
    pub unix_socket: Option<String>,
}

/// DNS, TCP connect (each address in turn) and, for a secure scheme, TLS;
/// or the Unix socket the options name.
pub(crate) async fn open_stream(target: &Target, dial: &Dial) -> Result<Stream, Error> {
    if let Some(path) = &dial.unix_socket {
        return connect_unix(path, target, dial.connect_timeout).await;
    }
    let bare_host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare_host, target.port))
        .await
        .map_err(|e| Error::new(Kind::Dns, format!("cannot resolve '{}': {e}", target.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(Kind::Dns, format!("no address for '{}'", target.host)));
    }
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match connect_tcp(addr, dial.connect_timeout).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match tcp {
        Some(t) => t,
        None => return Err(last.unwrap_or_else(|| Error::new(Kind::Connect, "no address to connect to"))),
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Stream::Plain(tcp));
    }
    let config = tls::client_config(&dial.tls).map_err(|e| Error::new(Kind::Tls, e))?;
    let name = tls::server_name(&target.host).map_err(|e| Error::new(Kind::Tls, e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::new(Kind::Tls, format!("TLS handshake with {} failed: {e}", target.host)))?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

async fn connect_tcp(addr: SocketAddr, limit: Option<Duration>) -> Result<TcpStream, Error> {
    let tcp = connect_within(&addr, limit, TcpStream::connect(addr)).await?;
    if reached_itself(&tcp) {
        return Err(Error::new(
            Kind::Refused,
            format!("cannot connect to {addr}: nothing listens there (the connection reached itself)"),
        ));
    }
    Ok(tcp)
}

/// TCP's self-connect: a connect to a local port nobody listens on may be
/// given that very port as its source, and then "succeeds", talking to
/// itself (and holding the port, so the server cannot bind it). A client
/// retrying a server that is down hits this sooner or later.
fn reached_itself(tcp: &TcpStream) -> bool {
    matches!((tcp.local_addr(), tcp.peer_addr()), (Ok(local), Ok(peer)) if local == peer)
}

/// A redirect may lead to a secure scheme, which cannot go over the socket.
async fn connect_unix(path: &str, target: &Target, limit: Option<Duration>) -> Result<Stream, Error> {
    if target.tls {
        return Err(Error::new(Kind::Tls, format!("cannot use TLS over the Unix socket {path}")));
    }
    connect_within(&path, limit, tokio::net::UnixStream::connect(path)).await.map(Stream::Unix)
}

/// One connect attempt, bounded by `connect_timeout`; a refusal is its
/// own kind (coro-websocket programs look for it).
async fn connect_within<S>(
    to: &dyn std::fmt::Display,
    limit: Option<Duration>,
    attempt: impl std::future::Future<Output = std::io::Result<S>>,
) -> Result<S, Error> {
    let result = match limit {
        Some(t) => tokio::time::timeout(t, attempt).await.map_err(|_| {
            Error::new(Kind::ConnectTimeout, format!("connecting to {to} timed out after {t:?}"))
        })?,
        None => attempt.await,
    };
    result.map_err(|e| {
        let kind =
            if e.kind() == std::io::ErrorKind::ConnectionRefused { Kind::Refused } else { Kind::Connect };
        Error::new(kind, format!("cannot connect to {to}: {e}"))
    })
}

/// Whether an I/O error is a TLS failure (an alert can arrive after the
/// handshake: with TLS 1.3 the server checks a client certificate later).
pub(crate) fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_reached_itself_is_told_apart() {
        // Forced here by binding the source port to the destination; the
        // kernel picks it on its own only now and then.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = probe.local_addr().expect("its address");
        drop(probe);
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind(addr).expect("bind the port it will connect to");
        let tcp = socket.connect(addr).await.expect("Linux lets a socket connect to itself");
        assert!(reached_itself(&tcp));
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        let other = TcpStream::connect(server.local_addr().expect("its address")).await.expect("connect");
        assert!(!reached_itself(&other));
    }

    #[test]
    fn raw_path_keeps_what_was_written() {
        let path = |raw: &str| Target::parse(raw, Family::WebSocket).unwrap().path;
        assert_eq!(path("ws://h/a/../b?x=1#frag"), "/a/../b?x=1");
        assert_eq!(path("ws://h/%7e/A?Q"), "/%7e/A?Q");
        assert_eq!(path("ws://h"), "/");
        assert_eq!(path("ws://h?q"), "/?q");
        assert_eq!(path("ws://[::1]:9/p"), "/p");
        // What cannot go on the request line as written is encoded.
        assert_eq!(path("ws://h/a b?c d"), "/a%20b?c%20d");
    }

    #[test]
    fn a_url_needs_a_host_as_written() {
        for raw in ["ws:///x", "ws:x", "ws://", "ws://:80/", "wss://u@/p"] {
            let err = Target::parse(raw, Family::WebSocket).map(|t| t.host).unwrap_err();
            assert_eq!(err.kind, Kind::BadUrl, "{raw}");
        }
        assert_eq!(Target::parse("http:/x", Family::Http).map(|t| t.host).unwrap_err().kind, Kind::BadUrl);
        assert_eq!(Target::parse("ws://x/", Family::WebSocket).unwrap().host, "x");
    }

    #[test]
    fn host_header_has_port_only_when_not_default() {
        let ws = |u| Target::parse(u, Family::WebSocket).unwrap().host_header();
        assert_eq!(ws("ws://example.com/"), "example.com");
        assert_eq!(ws("ws://example.com:8080/"), "example.com:8080");
        assert_eq!(ws("wss://[::1]:443/"), "[::1]");
        assert_eq!(ws("wss://[::1]:8443/"), "[::1]:8443");
        let http = |u| Target::parse(u, Family::Http).unwrap().host_header();
        assert_eq!(http("https://example.com:443/"), "example.com");
        assert_eq!(http("http://example.com:8080/"), "example.com:8080");
    }

    #[test]
    fn each_family_speaks_its_own_schemes() {
        assert_eq!(Target::parse("http://h/", Family::WebSocket).unwrap_err().kind, Kind::BadScheme);
        assert_eq!(Target::parse("ws://h/", Family::Http).unwrap_err().kind, Kind::BadScheme);
        assert!(Target::parse("https://h/", Family::Http).unwrap().tls);
        assert_eq!(Target::parse("not a url", Family::Http).unwrap_err().kind, Kind::BadUrl);
    }

    #[test]
    fn only_websocket_redirects_map_http_schemes() {
        let ws = Target::parse("ws://a/x", Family::WebSocket).unwrap();
        let (next, _) = ws.follow(&mut Trail::new(&ws.url), "http://b/y").unwrap();
        assert_eq!(next.url.as_str(), "ws://b/y");
        let http = Target::parse("http://a/x", Family::Http).unwrap();
        let err = http.follow(&mut Trail::new(&http.url), "ws://b/y").unwrap_err();
        assert_eq!(err.kind, Kind::BadScheme);
        let (next, same) = http.follow(&mut Trail::new(&http.url), "/z").unwrap();
        assert_eq!((next.url.as_str(), same), ("http://a/z", true));
    }
}
