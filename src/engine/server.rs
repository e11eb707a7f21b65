//! The listening side: accepts TCP (and TLS), serves HTTP/1.1 with hyper,
//! and hands every request to whoever runs the server (`Requests`) as a
//! `PendingRequest` to answer with a plain response or a WebSocket upgrade
//! (RFC 6455 §4.2, checked here).
//!
//! No request waits forever: a `PendingRequest` dropped without an answer
//! gets a 500. Connections (HTTP or upgraded) are counted per listener;
//! past `max_connections` a new one gets 503 before any upgrade. The
//! binding (`binding::server`) puts Lua's `on_request` on top.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

use crate::engine::connection::{self, Shared};
use crate::engine::deflate;
use crate::engine::error::{Error, Kind};
use crate::engine::frame;
use crate::engine::handshake;
use crate::engine::limits::Limits;
use crate::engine::registry::Closable;
use crate::engine::stream::Stream;
use crate::engine::url_parts;

type Body = Full<Bytes>;

/// One of a server's tasks: an HTTP connection, or an upgraded WebSocket.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Whoever runs a server: it gets every request, and runs the server's tasks.
pub trait Requests {
    /// A request to answer, now or later, with `respond` or `upgrade`.
    fn request(&self, req: PendingRequest);
    /// Runs `task` on the host's loop, which goes on at least until the task ends.
    fn spawn(&self, task: Task);
    /// Runs `task` on the host's loop without keeping it going: housekeeping
    /// a loop that has nothing else to do may drop unfinished.
    fn spawn_background(&self, task: Task) {
        self.spawn(task);
    }
    /// Makes a connection not yet upgraded reachable by a graceful
    /// shutdown; returns the id `untrack` takes (None: nothing tracks).
    fn track(&self, _conn: Weak<dyn Closable>) -> Option<u64> {
        None
    }
    fn untrack(&self, _id: u64) {}
    /// Accepting failed (e.g. no file descriptor left); the listener
    /// retries every 50 ms. Called at most every 10 s.
    fn accept_failed(&self, _error: &std::io::Error) {}
}

/// How one listener serves.
pub struct Config {
    pub limits: Limits,
    /// Serve TLS (wss, https) with this acceptor.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections (HTTP or upgraded) open at once; past it, 503.
    pub max_connections: usize,
}

/// What every connection of one listener shares.
struct Listener {
    config: Config,
    requests: Rc<dyn Requests>,
    /// Connections open on this listener.
    open: Cell<usize>,
}

/// One connection's place in its listener's count; freed when the last
/// holder (the HTTP task, a request, the upgraded connection) lets go.
struct Slot(Rc<Listener>);

impl Slot {
    fn take(listener: &Rc<Listener>) -> Rc<Slot> {
        listener.open.set(listener.open.get() + 1);
        Rc::new(Slot(listener.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
    }
}

/// A listening socket with SO_REUSEADDR (restart without waiting for
/// TIME_WAIT), an explicit backlog, and SO_REUSEPORT when worker processes
/// share the port. Needs a tokio runtime entered.
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The address to bind for `host` (a name, an address, or `[v6]`).
pub fn resolve_bind_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("no address for '{host}'"))
}

/// A listener that cannot accept says so at most this often.
const ACCEPT_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until `stop` is notified, each served as a task of
/// `requests`; open connections go on after that.
pub async fn serve(listener: TcpListener, config: Config, requests: Rc<dyn Requests>, stop: Rc<Notify>) {
    let shared = Rc::new(Listener { config, requests, open: Cell::new(0) });
    let mut reported: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.notified() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                shared.requests.spawn(Box::pin(serve_http(shared.clone(), tcp, peer)));
            }
            // Out of file descriptors and the like: said at most every
            // ACCEPT_REPORT_EVERY, and backed off instead of spinning.
            Err(e) => {
                if reported.is_none_or(|at| at.elapsed() >= ACCEPT_REPORT_EVERY) {
                    reported = Some(std::time::Instant::now());
                    shared.requests.accept_failed(&e);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP/1.1 on one accepted connection until it closes or
/// upgrades, reachable by a graceful shutdown meanwhile.
async fn serve_http(shared: Rc<Listener>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let control = Rc::new(HttpControl::default());
    let weak: Weak<dyn Closable> = Rc::<HttpControl>::downgrade(&control);
    let tracked = shared.requests.track(weak);
    serve_tracked(&shared, tcp, peer, &control).await;
    if let Some(id) = tracked {
        shared.requests.untrack(id);
    }
}

async fn serve_tracked(
    shared: &Rc<Listener>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    control: &HttpControl,
) {
    let over_limit = shared.open.get() >= shared.config.max_connections;
    let slot = Slot::take(shared);
    let limits = &shared.config.limits;
    let stream = match &shared.config.tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => tokio::select! {
            accepted = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => match accepted {
                Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                // A failed TLS handshake costs only this connection.
                _ => return,
            },
            // Shut down: mid-handshake there is no request to finish.
            _ = control.wake.notified() => return,
        },
    };
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let (shared, slot) = (service_shared.clone(), slot.clone());
        async move {
            if over_limit {
                // Refused before any upgrade, so the client sees a status, not a reset.
                let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
                res.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Ok(res);
            }
            handle(shared, slot, peer, req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_buf_size(limits.max_header_size)
        .max_headers(limits.max_headers)
        // Names as Turbo, evlua and most servers write them (`Upgrade`,
        // `X-Msg`), not hyper's lower case: case-insensitive by the RFC,
        // but some peers match names exactly. (The exact spelling a
        // program gave cannot be kept: hyper's case map is private.)
        .title_case_headers(true);
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = control.wake.notified() => {
                if control.aborted.get() {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection not yet upgraded, as a graceful shutdown reaches it: going
/// away ends it after the request in progress (hyper's graceful shutdown;
/// an idle keep-alive connection closes at once), abort drops it, request
/// and all (a program that holds a request would otherwise keep it open).
#[derive(Default)]
struct HttpControl {
    wake: Notify,
    aborted: Cell<bool>,
}

impl Closable for HttpControl {
    fn going_away(&self) {
        self.wake.notify_one();
    }

    fn abort(&self) {
        self.aborted.set(true);
        self.wake.notify_one();
    }

    fn keeps_loop(&self) -> bool {
        true
    }
}

/// One request, from hyper to `Requests::request` and back.
async fn handle(
    shared: Rc<Listener>,
    slot: Rc<Slot>,
    peer: SocketAddr,
    mut req: http::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if head_size(&req) > shared.config.limits.max_header_size {
        let mut res = plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large");
        res.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(res);
    }
    if let Err(why) = check_host(req.version(), req.headers()) {
        return Ok(plain(StatusCode::BAD_REQUEST, why));
    }
    let on_upgrade = wants_websocket(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (head, body) = req.into_parts();
    let body = if on_upgrade.is_some() {
        Bytes::new()
    } else {
        match Limited::new(body, shared.config.limits.max_body_size).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or broken")),
        }
    };
    let (tx, rx) = oneshot::channel();
    shared.requests.request(PendingRequest {
        head: RefCell::new(head),
        peer,
        body,
        reply: RefCell::new(Some(tx)),
        on_upgrade: RefCell::new(on_upgrade),
        slot: RefCell::new(Some(slot)),
    });
    Ok(rx.await.unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "the request was not answered")))
}

/// The request head's size as sent (near enough: the request line and each
/// field's name, value and separators). hyper's `max_buf_size` bounds its
/// read buffer, which one read may fill past the limit: heads of up to
/// ~1.8x `max_header_size` got through; this makes the limit the documented one.
fn head_size(req: &http::Request<Incoming>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + " HTTP/1.1\r\n".len() + 1;
    let fields: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + fields + 2
}

fn plain(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_owned())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// Whether a header holds `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| handshake::has_token(v.as_bytes(), token))
}

/// The request asks for a WebSocket upgrade (it may still be an invalid one).
fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, http::header::UPGRADE, "websocket")
}

/// A rejected handshake: the status to answer with and why (a 426 also
/// advertises `Sec-WebSocket-Version: 13`).
#[derive(Debug)]
pub struct Rejection(StatusCode, &'static str);

impl Rejection {
    pub fn status(&self) -> u16 {
        self.0.as_u16()
    }

    pub fn message(&self) -> &'static str {
        self.1
    }
}

/// RFC 7230 §5.4: a server MUST answer 400 to an HTTP/1.1 request without
/// Host, and to any with more than one or an invalid one (an authority
/// without userinfo; empty is allowed).
fn check_host(version: http::Version, headers: &HeaderMap) -> Result<(), &'static str> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) if url_parts::is_host_field(host.as_bytes()) => Ok(()),
        (None, _) if version < http::Version::HTTP_11 => Ok(()),
        (None, _) => Err("missing Host header"),
        _ => Err("repeated or invalid Host header"),
    }
}

/// Checks an upgrade request per RFC 6455 §4.2.1; returns Sec-WebSocket-Key.
pub(crate) fn check_handshake(
    method: &Method,
    version: http::Version,
    headers: &HeaderMap,
) -> Result<String, Rejection> {
    if method != Method::GET {
        return Err(Rejection(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket handshake must use GET"));
    }
    if version < http::Version::HTTP_11 {
        return Err(Rejection(StatusCode::BAD_REQUEST, "a WebSocket handshake needs HTTP/1.1"));
    }
    check_host(version, headers).map_err(|why| Rejection(StatusCode::BAD_REQUEST, why))?;
    if !wants_websocket(headers) {
        return Err(Rejection(StatusCode::BAD_REQUEST, "missing 'Upgrade: websocket'"));
    }
    if !has_token(headers, http::header::CONNECTION, "upgrade") {
        return Err(Rejection(StatusCode::BAD_REQUEST, "missing 'Connection: Upgrade'"));
    }
    // §11.3.5: once in a request.
    let mut versions = headers.get_all(http::header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => {}
        (Some(_), Some(_)) => {
            return Err(Rejection(StatusCode::BAD_REQUEST, "repeated Sec-WebSocket-Version"))
        }
        // §4.2.1: a request without one is not a handshake (400); 426
        // answers a version we do not speak (§4.2.2).
        (None, _) => return Err(Rejection(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Version")),
        _ => {
            return Err(Rejection(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version (only 13)",
            ))
        }
    }
    let mut keys = headers.get_all(http::header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.to_str().map(|s| s.trim().to_owned()).unwrap_or_default(),
        _ => return Err(Rejection(StatusCode::BAD_REQUEST, "missing or repeated Sec-WebSocket-Key")),
    };
    match data_encoding::BASE64.decode(key.as_bytes()) {
        Ok(raw) if raw.len() == 16 => Ok(key),
        _ => Err(Rejection(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is not 16 bytes in base64")),
    }
}

/// A refused handshake's answer, with the fields its status requires:
/// a 426 names what to upgrade to (RFC 9110 §15.5.22, with `Connection:
/// upgrade` as §7.8 wants beside `Upgrade`) and the version we speak
/// (RFC 6455 §4.4); a 405 lists the allowed method (RFC 9110 §15.5.6).
fn rejection_response(r: &Rejection) -> Response<Body> {
    let mut res = plain(r.0, r.1);
    let headers = res.headers_mut();
    if r.0 == StatusCode::UPGRADE_REQUIRED {
        headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(http::header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    if r.0 == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("GET"));
    }
    res
}

/// Why an answer could not be given as asked. Nothing was sent: the
/// request is as unanswered (or answered) as before.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerError {
    AlreadyAnswered,
    BadStatus(u16),
    BadHeaderName(String),
    /// The header's name; its value holds CR, LF or NUL.
    BadHeaderValue(String),
    /// A subprotocol the client did not offer.
    NotOffered(String),
    NotUpgradable,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::AlreadyAnswered => write!(f, "the request was already answered"),
            AnswerError::BadStatus(status) => write!(f, "{status} is not an HTTP status"),
            AnswerError::BadHeaderName(name) => write!(f, "bad header name '{name}'"),
            AnswerError::BadHeaderValue(name) => write!(f, "bad value for header '{name}' (CR, LF or NUL)"),
            AnswerError::NotOffered(p) => write!(f, "'{p}' was not offered by the client; RFC 6455 §4.2.2"),
            AnswerError::NotUpgradable => write!(f, "the request cannot be upgraded"),
        }
    }
}

/// A response with `status`, `headers` (in order, names as given) and `body`.
fn build_response(
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: Bytes,
) -> Result<Response<Body>, AnswerError> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = StatusCode::from_u16(status).map_err(|_| AnswerError::BadStatus(status))?;
    for (name, value) in headers {
        let name = http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| AnswerError::BadHeaderName(name.clone()))?;
        let value = header_value(value).ok_or_else(|| AnswerError::BadHeaderValue(name.to_string()))?;
        res.headers_mut().append(name, value);
    }
    Ok(res)
}

/// A response header value as Turbo sent it: any bytes but CR, LF and NUL
/// (those would end or corrupt the header line). `http` refuses other
/// control bytes too, which Turbo programs do send (e.g. 0x08).
fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        return Some(value);
    }
    if bytes.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    // SAFETY: not memory safety but header framing: hyper writes the bytes
    // as they are, and the line-breaking bytes were refused just above.
    // (In debug builds `http` re-checks and panics; Cargo.toml turns its
    // debug assertions off for that reason.)
    Some(unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::copy_from_slice(bytes)) })
}

/// The permessage-deflate offer to accept, when enabled: the first one in
/// the client's list that we can honour (RFC 7692 §5).
fn negotiate_deflate(headers: &HeaderMap, limits: &Limits) -> Option<(deflate::Agreed, String)> {
    if !limits.permessage_deflate {
        return None;
    }
    let offers: Vec<&str> =
        headers.get_all("sec-websocket-extensions").iter().filter_map(|v| v.to_str().ok()).collect();
    deflate::accept_offer(&offers.join(","))
}

/// The subprotocols a client offers, from every Sec-WebSocket-Protocol
/// header, in order.
fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The handshake's own response headers: ours to set, so extra copies
/// (which would break it) and an extension we do not speak are dropped.
const HANDSHAKE_HEADERS: [&str; 5] =
    ["upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"];

/// What `check_upgrade` found.
pub enum Handshake {
    /// Valid: `upgrade` with a connection made for these terms answers 101.
    Accepted(Box<Accepted>),
    /// Invalid, and already answered with this rejection's status.
    Rejected(Rejection),
}

/// A valid upgrade, not answered yet: the terms its connection needs.
pub struct Accepted {
    response: Response<Body>,
    on_upgrade: OnUpgrade,
    protocol: Option<String>,
    deflate: Option<deflate::Agreed>,
    limits: Limits,
}

impl Accepted {
    /// permessage-deflate's terms, when agreed.
    pub fn deflate(&self) -> Option<deflate::Agreed> {
        self.deflate
    }

    /// The listener's limits, for the connection.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// One request, to answer exactly once (`respond`, or `check_upgrade` and
/// `upgrade`); dropped unanswered, it gets a 500.
pub struct PendingRequest {
    /// Emptied once answered: hyper's header values are views into its
    /// read buffer, and a request Lua keeps (the Turbo face keeps it for
    /// the connection's life) would hold that whole buffer.
    head: RefCell<http::request::Parts>,
    peer: SocketAddr,
    body: Bytes,
    reply: RefCell<Option<oneshot::Sender<Response<Body>>>>,
    on_upgrade: RefCell<Option<OnUpgrade>>,
    /// Released once answered: a request kept around must not hold a connection slot.
    slot: RefCell<Option<Rc<Slot>>>,
}

impl PendingRequest {
    /// Method, URI, version and headers as received; once answered, the
    /// URI and headers are gone (see `answer`).
    pub fn head(&self) -> std::cell::Ref<'_, http::request::Parts> {
        self.head.borrow()
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The body (at most `max_body_size`; empty for an upgrade), handed over once.
    pub fn take_body(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    /// The request asks for a WebSocket upgrade (it may still be an invalid one).
    pub fn wants_websocket(&self) -> bool {
        wants_websocket(&self.head.borrow().headers)
    }

    pub fn answered(&self) -> bool {
        self.reply.borrow().is_none()
    }

    /// Answers with `status`, `headers` (values as given, but CR, LF and
    /// NUL refused) and `body`.
    pub fn respond(
        &self,
        status: u16,
        headers: &[(String, Vec<u8>)],
        body: Bytes,
    ) -> Result<(), AnswerError> {
        self.check_unanswered()?;
        self.answer(build_response(status, headers, body)?)
    }

    /// Answers 500 unless answered already: what a request gets when
    /// answering it failed (a client never waits for an answer that will not come).
    pub fn fail(&self) {
        let _ = self.answer(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    }

    /// Answers 503: nobody is left to answer (the host is going away).
    pub fn shutting_down(&self) {
        let _ = self.answer(plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }

    /// Checks the upgrade (RFC 6455 §4.2) and the chosen `protocol`, and
    /// makes the 101 with `extra` headers (the handshake's own are ours).
    /// An invalid handshake is answered here with its error status.
    pub fn check_upgrade(
        &self,
        protocol: Option<String>,
        extra: &[(String, Vec<u8>)],
    ) -> Result<Handshake, AnswerError> {
        self.check_unanswered()?;
        let head = self.head.borrow();
        let key = match check_handshake(&head.method, head.version, &head.headers) {
            Ok(key) => key,
            Err(rejection) => {
                drop(head);
                self.answer(rejection_response(&rejection))?;
                return Ok(Handshake::Rejected(rejection));
            }
        };
        if let Some(p) = &protocol {
            if !offered_protocols(&head.headers).any(|offered| offered == p) {
                return Err(AnswerError::NotOffered(p.clone()));
            }
        }
        let limits = self.listener()?.config.limits.clone();
        let Some(on_upgrade) = self.on_upgrade.borrow_mut().take() else {
            return Err(AnswerError::NotUpgradable);
        };
        let mut headers = vec![
            ("Upgrade".to_owned(), b"websocket".to_vec()),
            ("Connection".to_owned(), b"Upgrade".to_vec()),
            ("Sec-WebSocket-Accept".to_owned(), frame::derive_accept_key(key.as_bytes()).into_bytes()),
        ];
        if let Some(p) = &protocol {
            headers.push(("Sec-WebSocket-Protocol".to_owned(), p.clone().into_bytes()));
        }
        let deflate = negotiate_deflate(&head.headers, &limits);
        if let Some((_, answer)) = &deflate {
            headers.push(("Sec-WebSocket-Extensions".to_owned(), answer.clone().into_bytes()));
        }
        let theirs =
            extra.iter().filter(|(n, _)| !HANDSHAKE_HEADERS.iter().any(|o| n.eq_ignore_ascii_case(o)));
        headers.extend(theirs.cloned());
        let response = build_response(101, &headers, Bytes::new())?;
        let deflate = deflate.map(|(agreed, _)| agreed);
        Ok(Handshake::Accepted(Box::new(Accepted { response, on_upgrade, protocol, deflate, limits })))
    }

    /// Answers 101 and runs `connection` (made for `accepted`'s terms) once
    /// hyper hands over the stream.
    pub fn upgrade(&self, accepted: Accepted, connection: Rc<Shared>) -> Result<(), AnswerError> {
        self.check_unanswered()?;
        let slot = self.slot.borrow_mut().take().ok_or(AnswerError::AlreadyAnswered)?;
        let requests = slot.0.requests.clone();
        connection.set_protocol(accepted.protocol);
        requests.spawn(Box::pin(run_upgraded(accepted.on_upgrade, connection, slot)));
        self.answer(accepted.response)
    }

    fn check_unanswered(&self) -> Result<(), AnswerError> {
        if self.answered() {
            return Err(AnswerError::AlreadyAnswered);
        }
        Ok(())
    }

    fn listener(&self) -> Result<Rc<Listener>, AnswerError> {
        let slot = self.slot.borrow();
        slot.as_ref().map(|s| s.0.clone()).ok_or(AnswerError::AlreadyAnswered)
    }

    fn answer(&self, res: Response<Body>) -> Result<(), AnswerError> {
        let tx = self.reply.borrow_mut().take().ok_or(AnswerError::AlreadyAnswered)?;
        self.slot.borrow_mut().take();
        // Still borrowed by whoever answers from inside a look at it: then
        // it goes with the request instead.
        if let Ok(mut head) = self.head.try_borrow_mut() {
            head.uri = http::Uri::default();
            head.headers = HeaderMap::new();
            head.extensions.clear();
        }
        // The client may be gone already; then there is nobody to tell.
        let _ = tx.send(res);
        Ok(())
    }
}

/// Waits for hyper to hand over the upgraded stream, then runs the
/// connection as a task of its own that holds the slot: this task (and
/// what waiting for the upgrade took) is gone before the connection idles.
async fn run_upgraded(on_upgrade: OnUpgrade, shared: Rc<Shared>, slot: Rc<Slot>) {
    match on_upgrade.await.map(|u| u.downcast::<TokioIo<Stream>>()) {
        Ok(Ok(parts)) => {
            let stream = parts.io.into_inner();
            let leftover = BytesMut::from(&parts.read_buf[..]);
            // A view into hyper's 8 KiB read buffer: kept, it would hold
            // that buffer for the connection's whole life.
            drop(parts.read_buf);
            shared.opened(&stream);
            let requests = slot.0.requests.clone();
            requests.spawn(Box::pin(connection::run_holding(shared, stream, leftover, slot)));
            if let Some(trim) = crate::engine::trim::after_upgrade() {
                requests.spawn_background(Box::pin(trim));
            }
        }
        Ok(Err(_)) => shared.finish(
            Some(Error::new(Kind::Io, "upgrade on an unexpected stream type")),
            1006,
            String::new(),
        ),
        Err(e) => shared.finish(
            Some(Error::new(Kind::Io, format!("the upgrade did not complete: {e}"))),
            1006,
            String::new(),
        ),
    }
}

/// The server on its own, no Lua: a test `Requests` answers, a raw TCP
/// client written here checks the bytes, on a tokio runtime of the test's.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::LocalSet;

    use super::*;
    use crate::engine::codec::Role;
    use crate::engine::connection::recorder::Recorder;

    /// Upgrades what asks for it and answers the rest by path: `/drop` is
    /// dropped unanswered, `/bad` tries a header value with CR first.
    #[derive(Default)]
    struct Answerer {
        seen: RefCell<Vec<String>>,
        events: Rc<Recorder>,
    }

    impl Requests for Answerer {
        fn request(&self, req: PendingRequest) {
            self.seen.borrow_mut().push(format!("{} {}", req.head().method, req.head().uri));
            match req.head().uri.path() {
                "/drop" => {}
                "/bad" => {
                    let refused = req.respond(200, &[("X".into(), b"a\r\nb".to_vec())], Bytes::new());
                    self.seen.borrow_mut().push(format!("{refused:?} answered={}", req.answered()));
                    req.fail();
                }
                _ if req.wants_websocket() => match req.check_upgrade(None, &[]).expect("unanswered") {
                    Handshake::Accepted(terms) => {
                        let events = self.events.clone();
                        let conn = Shared::new(terms.limits().clone(), Role::Server, terms.deflate(), events);
                        req.upgrade(*terms, conn).expect("upgraded");
                    }
                    Handshake::Rejected(r) => self.seen.borrow_mut().push(format!("rejected {}", r.status())),
                },
                _ => {
                    let headers = [("X-Turbo".into(), b"a\x08b".to_vec())];
                    req.respond(200, &headers, Bytes::from_static(b"hello")).expect("answered");
                }
            }
        }

        fn spawn(&self, task: Task) {
            tokio::task::spawn_local(task);
        }
    }

    fn config(max_connections: usize) -> Config {
        Config { limits: Limits { max_body_size: 16, ..Limits::default() }, tls: None, max_connections }
    }

    /// Serves on a free port of 127.0.0.1 (inside a `LocalSet`).
    fn start(config: Config, requests: Rc<Answerer>) -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().expect("address"), 16, false).expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::task::spawn_local(serve(listener, config, requests, Rc::new(Notify::new())));
        addr
    }

    /// A response: the status line and the headers (names lower-case), and the body.
    struct Answer {
        status: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
        }
    }

    /// Sends `request` and reads the answer's head and its Content-Length body.
    async fn ask(s: &mut TcpStream, request: &str) -> Answer {
        s.write_all(request.as_bytes()).await.expect("request");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.expect("answer head"));
        }
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status = String::from_utf8_lossy(lines.next().expect("status line")).into_owned();
        let headers: Vec<(String, Vec<u8>)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let colon = l.iter().position(|&b| b == b':').expect("a header line");
                let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
                (name, l[colon + 1..].trim_ascii().to_vec())
            })
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| String::from_utf8_lossy(v).parse().expect("a length"));
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.expect("answer body");
        Answer { status, headers, body }
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connect")
    }

    fn upgrade_request(version: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
    }

    /// Runs `test` on a `LocalSet` (the server's tasks are not `Send`), within 10 s.
    async fn local(test: impl Future<Output = ()>) {
        let bounded = tokio::time::timeout(Duration::from_secs(10), test);
        LocalSet::new().run_until(bounded).await.expect("done within 10 s");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_valid_upgrade_gets_101_with_the_accept_key_and_runs_the_connection() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let mut s = connect(start(config(10), answerer.clone())).await;
            let answer = ask(&mut s, &upgrade_request("13")).await;
            assert_eq!(answer.status, "HTTP/1.1 101 Switching Protocols");
            // The example of RFC 6455 §1.3.
            assert_eq!(answer.header("sec-websocket-accept"), Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..]));
            assert_eq!(answer.header("upgrade"), Some(&b"websocket"[..]));
            let extension = answer.header("sec-websocket-extensions").expect("deflate agreed");
            assert!(extension.starts_with(b"permessage-deflate"), "{extension:?}");

            // A masked close 1000: the connection runs and echoes it, then ends TCP.
            s.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]).await.expect("close");
            let mut echoed = Vec::new();
            s.read_to_end(&mut echoed).await.expect("the echo");
            assert_eq!(echoed, [0x88, 0x02, 0x03, 0xe8]);
            for _ in 0..100 {
                if !answerer.events.0.borrow().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(*answerer.events.0.borrow(), ["closing 1000 ", "finished 1000  error=none"]);
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_bad_version_gets_426_naming_version_13() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let mut s = connect(start(config(10), answerer.clone())).await;
            let answer = ask(&mut s, &upgrade_request("8")).await;
            assert_eq!(answer.status, "HTTP/1.1 426 Upgrade Required");
            assert_eq!(answer.header("sec-websocket-version"), Some(&b"13"[..]));
            assert_eq!(answer.header("upgrade"), Some(&b"websocket"[..]));
            assert_eq!(answer.body, b"unsupported Sec-WebSocket-Version (only 13)");
            assert_eq!(*answerer.seen.borrow(), ["GET /chat", "rejected 426"]);
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_post_upgrade_gets_405_allowing_get_in_title_case() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let mut s = connect(start(config(10), answerer.clone())).await;
            let request = upgrade_request("13").replacen("GET", "POST", 1);
            s.write_all(request.as_bytes()).await.expect("request");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(s.read_u8().await.expect("answer head"));
            }
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{head}");
            assert!(head.contains("\r\nAllow: GET\r\n"), "{head}");
            assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_plain_request_needs_one_valid_host_in_http_1_1() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let addr = start(config(10), answerer.clone());
            let cases = [
                ("GET /a HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
                ("GET /b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 Bad Request"),
                ("GET /c HTTP/1.1\r\nHost: u@h\r\n\r\n", "HTTP/1.1 400 Bad Request"),
                ("GET /d HTTP/1.1\r\nHost: h:8080\r\n\r\n", "HTTP/1.1 200 OK"),
                ("GET /e HTTP/1.1\r\nHost: \r\n\r\n", "HTTP/1.1 200 OK"),
                ("GET /f HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK"),
            ];
            for (request, status) in cases {
                let answer = ask(&mut connect(addr).await, request).await;
                assert_eq!(answer.status, status, "{request:?}");
            }
            // The program never saw the refused ones.
            assert_eq!(*answerer.seen.borrow(), ["GET /d", "GET /e", "GET /f"]);
        })
        .await;
    }

    /// check_handshake's answer to a valid upgrade with `fields` (name,
    /// value; a value "-" drops the field) in place of its own.
    fn handshake_with(fields: &[(&'static str, &'static str)]) -> Result<String, Rejection> {
        let mut headers = HeaderMap::new();
        let base = [
            ("host", "test"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        for (name, value) in base {
            if !fields.iter().any(|(n, _)| *n == name) {
                headers.append(name, HeaderValue::from_static(value));
            }
        }
        for &(name, value) in fields.iter().filter(|(_, v)| *v != "-") {
            headers.append(http::header::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        check_handshake(&Method::GET, http::Version::HTTP_11, &headers)
    }

    #[test]
    fn a_handshake_needs_one_valid_host() {
        assert!(handshake_with(&[("host", "example.com:8080")]).is_ok());
        assert!(handshake_with(&[("host", "[::1]:80")]).is_ok());
        let status = |fields: &[(&'static str, &'static str)]| {
            handshake_with(fields).map_err(|r| (r.status(), r.message()))
        };
        assert_eq!(status(&[("host", "-")]), Err((400, "missing Host header")));
        for bad in ["a b", "[::1", "h:99999", "h:abc", "a/b", "u@h"] {
            assert_eq!(status(&[("host", bad)]), Err((400, "repeated or invalid Host header")), "{bad}");
        }
        assert_eq!(status(&[("host", "a"), ("host", "a")]), Err((400, "repeated or invalid Host header")));
    }

    #[test]
    fn a_handshake_names_its_version_once() {
        let status = |fields: &[(&'static str, &'static str)]| handshake_with(fields).map_err(|r| r.status());
        assert_eq!(status(&[("sec-websocket-version", "13"), ("sec-websocket-version", "13")]), Err(400));
        assert_eq!(status(&[("sec-websocket-version", "13, 8")]), Err(426));
        // None at all is no handshake (§4.2.1), not a version to upgrade from.
        assert_eq!(status(&[("sec-websocket-version", "-")]), Err(400));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn past_max_connections_a_connection_gets_503_until_one_closes() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let addr = start(config(1), answerer.clone());
            let plain = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
            let mut first = connect(addr).await;
            let answer = ask(&mut first, plain).await;
            assert_eq!((answer.status.as_str(), answer.body.as_slice()), ("HTTP/1.1 200 OK", &b"hello"[..]));
            // A header value as Turbo sends it: control bytes other than CR, LF, NUL as given.
            assert_eq!(answer.header("x-turbo"), Some(&b"a\x08b"[..]));

            let mut second = connect(addr).await;
            let refused = ask(&mut second, plain).await;
            assert_eq!(refused.status, "HTTP/1.1 503 Service Unavailable");
            assert_eq!(refused.header("retry-after"), Some(&b"1"[..]));
            assert_eq!(answerer.seen.borrow().len(), 1, "the refused request never reached Requests");

            // Once the first connection is gone, its slot is free again.
            drop(first);
            for _ in 0..100 {
                let answer = ask(&mut connect(addr).await, plain).await;
                if answer.status == "HTTP/1.1 200 OK" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the slot of a closed connection was never freed");
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unanswered_request_and_a_failed_answer_get_500() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let mut s = connect(start(config(10), answerer.clone())).await;
            let dropped = ask(&mut s, "GET /drop HTTP/1.1\r\nHost: test\r\n\r\n").await;
            assert_eq!(dropped.status, "HTTP/1.1 500 Internal Server Error");
            assert_eq!(dropped.body, b"the request was not answered");

            let failed = ask(&mut s, "GET /bad HTTP/1.1\r\nHost: test\r\n\r\n").await;
            assert_eq!(failed.status, "HTTP/1.1 500 Internal Server Error");
            assert_eq!(failed.body, b"internal error");
            let refused = &answerer.seen.borrow()[2];
            assert_eq!(refused, "Err(BadHeaderValue(\"x\")) answered=false");
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_over_max_body_size_gets_413_without_a_request() {
        local(async {
            let answerer = Rc::new(Answerer::default());
            let mut s = connect(start(config(10), answerer.clone())).await;
            let post = "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 17\r\n\r\n01234567890123456";
            let answer = ask(&mut s, post).await;
            assert_eq!(answer.status, "HTTP/1.1 413 Payload Too Large");
            assert!(answerer.seen.borrow().is_empty());
        })
        .await;
    }

    #[test]
    fn header_values_keep_every_byte_but_cr_lf_nul() {
        for value in [&b"Turbo\x08"[..], b"\x01\x1f\x7f", b"\xff\x80 tab\there", b""] {
            assert_eq!(header_value(value).expect("accepted").as_bytes(), value);
        }
        for value in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\x08\r\n"] {
            assert!(header_value(value).is_none(), "{value:?} refused");
        }
    }

    #[test]
    fn an_answered_request_lets_go_of_its_headers() {
        let (head, ()) = http::Request::get("/chat?x=1")
            .header("host", "example.com")
            .body(())
            .expect("request")
            .into_parts();
        let (tx, _rx) = oneshot::channel();
        let req = PendingRequest {
            head: RefCell::new(head),
            peer: "127.0.0.1:1".parse().expect("address"),
            body: Bytes::new(),
            reply: RefCell::new(Some(tx)),
            on_upgrade: RefCell::new(None),
            slot: RefCell::new(None),
        };
        assert_eq!(req.head().headers.len(), 1);
        req.respond(200, &[], Bytes::new()).expect("answered");
        assert!(req.head().headers.is_empty());
        assert_eq!(req.head().uri, "/");
    }
}
