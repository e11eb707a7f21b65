//! The connecting side: URL, DNS, TCP, TLS, the opening handshake and
//! redirects, each failure reported as its own error kind.
//!
//! `turbo_ws.core.connect(url, options, on_done)` returns at once; later the
//! loop calls `on_done(connection, response)` or
//! `on_done(nil, kind, message[, response])`.

use std::net::SocketAddr;
use std::time::Duration;

use mlua::{Function, Lua, RegistryKey, Table, Value};
use tokio::net::TcpStream;

use bytes::BytesMut;

use crate::args;
use crate::callback;
use crate::codec::Role;
use crate::config::{Limits, Opts};
use crate::connection::{self, Shared};
use crate::deflate;
use crate::error::{Error, Kind};
use crate::frame;
use crate::handshake::{self, Failure as HandshakeFailure};
use crate::ioloop::{self, KeepAlive, Loop};
use crate::redirect::{self, Hop, Trail};
use crate::stream::Stream;
use crate::tls;

/// Where to connect, from a ws:// or wss:// URL.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Host as written in the URL (IPv6 literals keep their brackets).
    host: String,
    port: u16,
    tls: bool,
    /// Path and query exactly as written in the URL ("/" when empty).
    path: String,
    pub(crate) url: url::Url,
}

impl Target {
    pub(crate) fn parse(raw: &str) -> Result<Target, Error> {
        let url =
            url::Url::parse(raw).map_err(|e| Error::new(Kind::BadUrl, format!("bad URL '{raw}': {e}")))?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(Error::new(
                    Kind::BadScheme,
                    format!("unsupported scheme '{other}' (ws or wss expected)"),
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::new(Kind::BadUrl, format!("no host in URL '{raw}'")))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { host, port, tls, path: raw_path(raw), url })
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
    /// checked by the trail's rules; `http(s)` locations map to `ws(s)`.
    /// Also tells whether the new target is on the same origin.
    pub(crate) fn follow(&self, trail: &mut Trail, location: &str) -> Result<(Target, bool), Error> {
        let Hop { mut url, same_origin } = trail.follow(&self.url, location)?;
        let scheme = match url.scheme() {
            "http" => Some("ws"),
            "https" => Some("wss"),
            _ => None,
        };
        if let Some(s) = scheme {
            // Setting a special scheme from another special one cannot fail.
            let _ = url.set_scheme(s);
        }
        Ok((Target::parse(url.as_str())?, same_origin))
    }
}

/// The path and query of a URL as written, without normalisation.
fn raw_path(raw: &str) -> String {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let without_fragment = after_scheme.split('#').next().unwrap_or("");
    match without_fragment.find(['/', '?']) {
        Some(i) if without_fragment[i..].starts_with('?') => format!("/{}", &without_fragment[i..]),
        Some(i) => without_fragment[i..].to_owned(),
        None => "/".to_owned(),
    }
}

/// Everything a connect needs, read from Lua before the task starts.
struct Params {
    target: Target,
    path: Option<String>,
    /// Connect to this Unix domain socket instead of the URL's host and
    /// port (which still give the Host header).
    unix_socket: Option<String>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    max_redirects: u32,
    tls: tls::ClientOptions,
    limits: Limits,
}

/// The handshake's answer, as Lua sees it.
struct Answer {
    status: u16,
    reason: String,
    version: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    url: String,
}

impl Answer {
    fn from_response(res: handshake::Response, url: &url::Url) -> Answer {
        Answer {
            status: res.status,
            reason: res.reason,
            version: res.version.to_owned(),
            headers: res.headers,
            body: res.body,
            url: url.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
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
        t.set("protocol", self.header("sec-websocket-protocol"))?;
        t.set("url", self.url.as_str())?;
        Ok(t)
    }
}

/// A failure, with the response when the server answered.
type Failure = (Error, Option<Answer>);

fn read_params(func: &str, target: Target, opts: &Opts) -> mlua::Result<Params> {
    let tls_opts = opts.table("tls")?.map(|t| Opts::new(func, Some(t)));
    let tls = match &tls_opts {
        None => tls::ClientOptions { verify: true, ..Default::default() },
        Some(o) => {
            let cert = o.string("cert_file")?;
            let key = o.string("key_file")?;
            let identity = match (cert, key) {
                (Some(cert), Some(key)) => Some(tls::Identity { cert, key }),
                (None, None) => None,
                _ => return Err(args::misuse(func, "bad option 'tls' (cert_file and key_file go together)")),
            };
            tls::ClientOptions {
                verify: o.bool("verify")?.unwrap_or(true),
                ca_file: o.string("ca_file")?,
                ca_path: o.string("ca_path")?,
                identity,
            }
        }
    };
    let headers = opts.headers("headers")?;
    for (name, value) in &headers {
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(args::misuse(
                func,
                format!("bad option 'headers' ('{name}' is not a valid header name)"),
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(args::misuse(func, format!("bad option 'headers' (bad value for '{name}')")));
        }
    }
    let unix_socket = opts.string("unix_socket")?;
    if unix_socket.is_some() && target.tls {
        return Err(args::misuse(
            func,
            "bad option 'unix_socket' (TLS over a Unix socket is not supported: use ws://)",
        ));
    }
    Ok(Params {
        target,
        path: opts.string("path")?,
        unix_socket,
        headers,
        protocols: opts.strings("protocols")?.unwrap_or_default(),
        connect_timeout: opts.seconds("connect_timeout")?.filter(|d| !d.is_zero()),
        timeout: opts.seconds("timeout")?.filter(|d| !d.is_zero()),
        max_redirects: opts.integer("max_redirects", 0, 100)?.unwrap_or(0) as u32,
        tls,
        limits: Limits::from_opts(opts)?,
    })
}

/// `turbo_ws.core.connect(url, options, on_done)`
fn connect(lua: &Lua, lp: &'static Loop, (url, opts, on_done): (Value, Value, Value)) -> mlua::Result<()> {
    const F: &str = "turbo_ws.connect";
    let url = args::string(F, 1, "url", url)?.to_str()?.to_owned();
    let opts = Opts::new(F, args::opt_table(F, 2, "options", opts)?);
    let on_done = args::function(F, 3, "on_done", on_done)?;
    let on_done = lua.create_registry_value(on_done)?;
    let alive = KeepAlive::new(lp);
    // A bad URL takes the error path, not a Lua error: URLs often come from
    // peers (redirects, configuration), and every face reports it as such.
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(err) => {
            lp.spawn(async move {
                report_failure(&on_done, (err, None));
                drop(alive);
            });
            return Ok(());
        }
    };
    let params = read_params(F, target, &opts)?;
    lp.spawn(async move {
        let outcome = match params.timeout {
            Some(t) => tokio::time::timeout(t, establish(&params)).await.unwrap_or_else(|_| {
                Err((
                    Error::new(
                        Kind::HandshakeTimeout,
                        format!("the handshake did not finish within {:?}", t),
                    ),
                    None,
                ))
            }),
            None => establish(&params).await,
        };
        match outcome {
            Ok((stream, leftover, deflate, answer)) => {
                let shared = Shared::new(params.limits.clone(), Role::Client, deflate);
                shared.set_protocol(answer.header("sec-websocket-protocol"));
                // Open (with its peer address) already inside on_done.
                shared.opened(&stream);
                if report_success(&on_done, shared.clone(), &answer) {
                    connection::run(shared, stream, leftover, alive).await;
                }
            }
            Err(failure) => {
                report_failure(&on_done, failure);
                drop(alive);
            }
        }
    });
    Ok(())
}

fn report_success(on_done: &RegistryKey, shared: std::rc::Rc<Shared>, answer: &Answer) -> bool {
    let Some(lua) = ioloop::current().and_then(|lp| lp.lua()) else {
        return false;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        let conn = connection::userdata(&lua, shared)?;
        callback::call(&lua, "connect callback", &func, (conn, answer.to_lua(&lua)?));
        Ok(())
    };
    match call() {
        Ok(()) => true,
        Err(e) => {
            callback::report("connect callback", &e.to_string());
            false
        }
    }
}

fn report_failure(on_done: &RegistryKey, (err, answer): Failure) {
    let Some(lua) = ioloop::current().and_then(|lp| lp.lua()) else {
        return;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        let answer = match &answer {
            Some(a) => Value::Table(a.to_lua(&lua)?),
            None => Value::Nil,
        };
        callback::call(&lua, "connect callback", &func, (Value::Nil, err.kind.name(), err.message, answer));
        Ok(())
    };
    if let Err(e) = call() {
        callback::report("connect callback", &e.to_string());
    }
}

/// Connects and hands back the open WebSocket (its stream and the bytes
/// read past the handshake), following redirects.
async fn establish(p: &Params) -> Result<(Stream, BytesMut, Option<deflate::Agreed>, Answer), Failure> {
    let mut target = p.target.clone();
    let mut path = p.path.clone().unwrap_or_else(|| target.path.clone());
    let mut headers = p.headers.clone();
    let mut trail = Trail::new(&target.url);
    for redirects in 0..=p.max_redirects {
        let mut stream = open_stream(&target, p).await.map_err(|e| (e, None))?;
        let request = build_request(&target, &path, &headers, p).map_err(|e| (e, None))?;
        match handshake::client(&mut stream, &request).await {
            Ok((res, leftover, deflate)) => {
                return Ok((stream, leftover, deflate, Answer::from_response(res, &target.url)))
            }
            Err(HandshakeFailure::Status(res)) => {
                let redirection = (300..400).contains(&res.status);
                let answer = Answer::from_response(res, &target.url);
                match answer.header("location") {
                    Some(loc) if redirection && redirects < p.max_redirects => {
                        let (next, same_origin) =
                            target.follow(&mut trail, &loc).map_err(|e| (e, Some(answer)))?;
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
                            Some(answer),
                        ));
                    }
                    _ => {
                        let msg =
                            format!("the server answered {} {} instead of 101", answer.status, answer.reason);
                        return Err((Error::new(Kind::BadStatus, msg), Some(answer)));
                    }
                }
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
        HandshakeFailure::Io(io) if is_tls_error(&io) => {
            Error::new(Kind::Tls, format!("TLS failed during the handshake: {io}"))
        }
        HandshakeFailure::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => no_response(),
        HandshakeFailure::Io(io) => Error::new(Kind::Io, format!("during the handshake: {io}")),
        HandshakeFailure::NoResponse => no_response(),
        HandshakeFailure::BadResponse(m) => Error::new(Kind::BadResponse, m),
        HandshakeFailure::BadHandshake(m) => Error::new(Kind::BadHandshake, m),
        HandshakeFailure::Status(res) => {
            Error::new(Kind::BadStatus, format!("the server answered {}", res.status))
        }
    }
}

fn no_response() -> Error {
    Error::new(Kind::NoResponse, "the server closed the connection without answering")
}

fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// The request head, exactly as it goes on the wire.
fn build_request(
    target: &Target,
    path: &str,
    headers: &[(String, String)],
    p: &Params,
) -> Result<handshake::Request, Error> {
    let path = if path.is_empty() { "/" } else { path };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            Kind::BadUrl,
            format!("cannot send path '{path}': it must be printable ASCII"),
        ));
    }
    let user =
        |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    // A program may choose its own key (evlua reports it back to its caller).
    let key = user("sec-websocket-key").unwrap_or_else(frame::generate_key);
    let mut protocols = p.protocols.clone();
    if let Some(listed) = user("sec-websocket-protocol") {
        protocols.extend(listed.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    }
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    let mut line = |name: &str, value: &str| {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    };
    if user("host").is_none() {
        line("Host", &target.host_header());
    }
    line("Connection", "Upgrade");
    line("Upgrade", "websocket");
    line("Sec-WebSocket-Version", "13");
    if user("sec-websocket-key").is_none() {
        line("Sec-WebSocket-Key", &key);
    }
    if !p.protocols.is_empty() {
        line("Sec-WebSocket-Protocol", &p.protocols.join(", "));
    }
    // A program's own extensions header replaces our offer.
    let offer_deflate = p.limits.permessage_deflate && user("sec-websocket-extensions").is_none();
    if offer_deflate {
        line("Sec-WebSocket-Extensions", &deflate::offer());
    }
    for (name, value) in headers {
        line(name, value);
    }
    head.push_str("\r\n");
    Ok(handshake::Request { head: head.into_bytes(), key, protocols, offer_deflate })
}

/// DNS, TCP connect (each address in turn) and, for wss, TLS; or the Unix
/// socket the options name.
async fn open_stream(target: &Target, p: &Params) -> Result<Stream, Error> {
    if let Some(path) = &p.unix_socket {
        return connect_unix(path, target, p.connect_timeout).await;
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
        match connect_tcp(addr, p.connect_timeout).await {
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
    let config = tls::client_config(&p.tls).map_err(|e| Error::new(Kind::Tls, e))?;
    let name = tls::server_name(&target.host).map_err(|e| Error::new(Kind::Tls, e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::new(Kind::Tls, format!("TLS handshake with {} failed: {e}", target.host)))?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

async fn connect_tcp(addr: SocketAddr, limit: Option<Duration>) -> Result<TcpStream, Error> {
    connect_within(&addr, limit, TcpStream::connect(addr)).await
}

/// A redirect may lead to wss://, which cannot go over the socket.
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

/// Registers `connect` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("connect", lua.create_function(move |lua, a: (Value, Value, Value)| connect(lua, lp, a))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_path_keeps_what_was_written() {
        assert_eq!(raw_path("ws://h/a/../b?x=1#frag"), "/a/../b?x=1");
        assert_eq!(raw_path("ws://h"), "/");
        assert_eq!(raw_path("ws://h?q"), "/?q");
        assert_eq!(raw_path("ws://[::1]:9/p"), "/p");
    }

    #[test]
    fn host_header_has_port_only_when_not_default() {
        assert_eq!(Target::parse("ws://example.com/").unwrap().host_header(), "example.com");
        assert_eq!(Target::parse("ws://example.com:8080/").unwrap().host_header(), "example.com:8080");
        assert_eq!(Target::parse("wss://[::1]:443/").unwrap().host_header(), "[::1]");
        assert_eq!(Target::parse("wss://[::1]:8443/").unwrap().host_header(), "[::1]:8443");
    }

    #[test]
    fn schemes_and_bad_urls_have_their_own_kinds() {
        assert_eq!(Target::parse("http://h/").unwrap_err().kind, Kind::BadScheme);
        assert_eq!(Target::parse("not a url").unwrap_err().kind, Kind::BadUrl);
    }
}
