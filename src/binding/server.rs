//! The listening side: accepts TCP (and TLS), parses HTTP/1.1 with hyper,
//! hands every request to Lua, and answers with what Lua decides — a plain
//! response, a WebSocket upgrade (RFC 6455 §4.2, checked here), or a
//! rejection.
//!
//! Lua sees `on_request(req, info)`: `info` is a plain table describing the
//! request, `req` the handle to answer it with (`respond` or `upgrade`).
//! No request waits forever: when answering fails (`respond` or `upgrade`
//! raises), or `on_request` raises, the client gets a 500 at once; a
//! request Lua drops without answering gets a 500 when it is collected.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use mlua::{AnyUserData, Function, Lua, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

use crate::binding::args;
use crate::binding::callback;
use crate::binding::connection;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::{self, HeaderFields, Opts};
use crate::engine;
use crate::engine::codec::Role;
use crate::engine::deflate;
use crate::engine::error::{Error, Kind};
use crate::engine::frame;
use crate::engine::handshake;
use crate::engine::limits::Limits;
use crate::engine::stream::Stream;
use crate::engine::tls;

type Body = Full<Bytes>;

/// What every connection of one listener shares.
struct Listener {
    on_request: RegistryKey,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections (HTTP or upgraded) open on this listener, and the most allowed.
    open: Cell<usize>,
    max_connections: usize,
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

/// The Lua handle of a listening server.
pub struct Server {
    local: SocketAddr,
    stop: Rc<Notify>,
    closed: Cell<bool>,
}

impl UserData for Server {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("port", |_, this, ()| Ok(this.local.port()));
        methods.add_method("address", |_, this, ()| Ok((this.local.ip().to_string(), this.local.port())));
        // close(): stops accepting; open connections go on.
        methods.add_method("close", |_, this, ()| {
            if !this.closed.replace(true) {
                this.stop.notify_one();
            }
            Ok(())
        });
    }
}

/// `turbo_ws.core.listen(options, on_request) -> server`
fn listen(lua: &Lua, lp: &'static Loop, (opts, on_request): (Value, Value)) -> mlua::Result<AnyUserData> {
    const F: &str = "turbo_ws.listen";
    let opts = Opts::new(F, args::opt_table(F, 1, "options", opts)?);
    let on_request = args::function(F, 2, "on_request", on_request)?;
    let host = opts.string("host")?.unwrap_or_else(|| "0.0.0.0".into());
    let port = opts.integer("port", 0, 65535)?.unwrap_or(0) as u16;
    let limits = opts::limits(&opts)?;
    let tls = match opts.table("tls")? {
        Some(t) => Some(server_tls(F, &t)?),
        None => None,
    };

    let addr = resolve_bind_address(&host, port).map_err(|e| args::misuse(F, e))?;
    let backlog = opts.integer("backlog", 1, 65535)?.unwrap_or(1024) as u32;
    let reuse_port = opts.bool("reuse_port")?.unwrap_or(false);
    let listener = lp
        .enter(|| bind(addr, backlog, reuse_port))
        .map_err(|e| args::misuse(F, e))?
        .map_err(|e| args::misuse(F, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| args::misuse(F, e))?;

    let max_connections = opts.integer("max_connections", 1, 1 << 30)?.unwrap_or(1 << 30) as usize;
    let shared = Rc::new(Listener {
        on_request: lua.create_registry_value(on_request)?,
        limits,
        tls,
        open: Cell::new(0),
        max_connections,
    });
    let stop = Rc::new(Notify::new());
    lp.spawn(accept_loop(lp, listener, shared, stop.clone(), KeepAlive::new(lp)));
    lua.create_userdata(Server { local, stop, closed: Cell::new(false) })
}

/// A listening socket with SO_REUSEADDR (restart without waiting for
/// TIME_WAIT), an explicit backlog, and SO_REUSEPORT when worker processes
/// share the port.
fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn resolve_bind_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("no address for '{host}'"))
}

fn server_tls(func: &str, t: &Table) -> mlua::Result<tokio_rustls::TlsAcceptor> {
    let o = Opts::new(func, Some(t.clone()));
    let cert = o.string("cert_file")?.or(o.string("cert")?);
    let key = o.string("key_file")?.or(o.string("key")?);
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(args::misuse(func, "bad option 'tls' (needs cert_file and key_file)"));
    };
    let client_ca = o.string("client_ca_file")?;
    let identity = tls::Identity { cert, key };
    let config = tls::server_config(&identity, client_ca.as_deref()).map_err(|e| args::misuse(func, e))?;
    Ok(tokio_rustls::TlsAcceptor::from(config))
}

async fn accept_loop(
    lp: &'static Loop,
    listener: TcpListener,
    shared: Rc<Listener>,
    stop: Rc<Notify>,
    _alive: KeepAlive,
) {
    let registry_id = lp.registry().add_listener(stop.clone());
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.notified() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                lp.spawn(serve_http(lp, shared.clone(), tcp, peer));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    lp.registry().remove_listener(registry_id);
}

/// Serves HTTP/1.1 on one accepted connection until it closes or upgrades.
async fn serve_http(lp: &'static Loop, shared: Rc<Listener>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let _alive = KeepAlive::new(lp);
    let over_limit = shared.open.get() >= shared.max_connections;
    let slot = Slot::take(&shared);
    let stream = match &shared.tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                // A failed TLS handshake costs only this connection.
                _ => return,
            }
        }
    };
    let limits = &shared.limits;
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
            handle(lp, shared, slot, peer, req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_buf_size(limits.max_header_size)
        .max_headers(limits.max_headers);
    let _ = builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
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
pub(crate) struct Rejection(StatusCode, &'static str);

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
    if !headers.contains_key(http::header::HOST) {
        return Err(Rejection(StatusCode::BAD_REQUEST, "missing Host header"));
    }
    if !wants_websocket(headers) {
        return Err(Rejection(StatusCode::BAD_REQUEST, "missing 'Upgrade: websocket'"));
    }
    if !has_token(headers, http::header::CONNECTION, "upgrade") {
        return Err(Rejection(StatusCode::BAD_REQUEST, "missing 'Connection: Upgrade'"));
    }
    let version_ok =
        headers.get(http::header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
    if !version_ok {
        return Err(Rejection(StatusCode::UPGRADE_REQUIRED, "unsupported Sec-WebSocket-Version (only 13)"));
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

fn rejection_response(r: &Rejection) -> Response<Body> {
    let mut res = plain(r.0, r.1);
    if r.0 == StatusCode::UPGRADE_REQUIRED {
        res.headers_mut().insert(http::header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    res
}

/// One request, from hyper to Lua and back.
async fn handle(
    lp: &'static Loop,
    shared: Rc<Listener>,
    slot: Rc<Slot>,
    peer: SocketAddr,
    mut req: http::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let on_upgrade = wants_websocket(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = if on_upgrade.is_some() {
        Bytes::new()
    } else {
        match Limited::new(body, shared.limits.max_body_size).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or broken")),
        }
    };
    let Some(lua) = lp.lua() else {
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    };
    let (tx, rx) = oneshot::channel();
    let request = Request {
        parts,
        reply: RefCell::new(Some(tx)),
        on_upgrade: RefCell::new(on_upgrade),
        limits: shared.limits.clone(),
        slot: RefCell::new(Some(slot)),
    };
    if let Err(e) = call_on_request(&lua, &shared, request, peer, body) {
        callback::report("on_request", &e.to_string());
        return Ok(internal_error());
    }
    drop(lua);
    Ok(rx.await.unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "the request was not answered")))
}

fn call_on_request(
    lua: &Lua,
    shared: &Listener,
    request: Request,
    peer: SocketAddr,
    body: Bytes,
) -> mlua::Result<()> {
    let info = request_info(lua, &request.parts, peer, &body)?;
    let on_request: Function = lua.registry_value(&shared.on_request)?;
    let handle = lua.create_userdata(request)?;
    if !callback::call(lua, "on_request", &on_request, (handle.clone(), info)) {
        // The handler failed before answering: the client gets a 500 now,
        // not when the request object is garbage-collected.
        let request = handle.borrow::<Request>()?;
        if request.reply.borrow().is_some() {
            request.answer("on_request", internal_error())?;
        }
    }
    Ok(())
}

/// The plain table Lua gets for a request.
fn request_info(
    lua: &Lua,
    parts: &http::request::Parts,
    peer: SocketAddr,
    body: &[u8],
) -> mlua::Result<Table> {
    let info = lua.create_table_with_capacity(0, 10)?;
    info.set("method", parts.method.as_str())?;
    info.set("uri", parts.uri.path_and_query().map_or("/", |p| p.as_str()))?;
    info.set("path", parts.uri.path())?;
    info.set("query", parts.uri.query())?;
    info.set("version", format!("{:?}", parts.version))?;
    let headers = lua.create_table_with_capacity(parts.headers.len(), 0)?;
    for (i, (name, value)) in parts.headers.iter().enumerate() {
        let pair = lua.create_table_with_capacity(2, 0)?;
        pair.raw_set(1, name.as_str())?;
        pair.raw_set(2, lua.create_string(value.as_bytes())?)?;
        headers.raw_set(i + 1, pair)?;
    }
    info.set("headers", headers)?;
    info.set("remote_ip", peer.ip().to_string())?;
    info.set("remote_port", peer.port())?;
    info.set("body", lua.create_string(body)?)?;
    info.set("websocket", wants_websocket(&parts.headers))?;
    Ok(info)
}

/// The Lua handle to answer one request with.
struct Request {
    parts: http::request::Parts,
    reply: RefCell<Option<oneshot::Sender<Response<Body>>>>,
    on_upgrade: RefCell<Option<OnUpgrade>>,
    limits: Limits,
    /// Released once answered: a request Lua keeps around must not hold a connection slot.
    slot: RefCell<Option<Rc<Slot>>>,
}

/// The 500 a request gets when answering it failed.
fn internal_error() -> Response<Body> {
    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `upgrade`'s options: the chosen protocol and extra headers.
fn upgrade_options(func: &str, opts: Value) -> mlua::Result<(Option<String>, HeaderFields)> {
    let opts = Opts::new(func, args::opt_table(func, 1, "options", opts)?);
    Ok((opts.string("protocol")?, opts.header_fields("headers")?))
}

impl Request {
    fn unanswered(&self, func: &str) -> mlua::Result<()> {
        if self.reply.borrow().is_none() {
            return Err(args::misuse(func, "the request was already answered"));
        }
        Ok(())
    }

    /// Sends `res`; when it could not be made, a 500 goes out at once (a
    /// client must never wait for an answer that will not come) and the
    /// error is raised.
    fn answer_or_fail(&self, func: &str, res: mlua::Result<Response<Body>>) -> mlua::Result<()> {
        match res {
            Ok(res) => self.answer(func, res),
            Err(e) => {
                self.answer(func, internal_error())?;
                Err(e)
            }
        }
    }

    fn answer(&self, func: &str, res: Response<Body>) -> mlua::Result<()> {
        let tx = self
            .reply
            .borrow_mut()
            .take()
            .ok_or_else(|| args::misuse(func, "the request was already answered"))?;
        self.slot.borrow_mut().take();
        // The client may be gone already; then there is nobody to tell.
        let _ = tx.send(res);
        Ok(())
    }
}

fn build_response(
    func: &str,
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: Bytes,
) -> mlua::Result<Response<Body>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = StatusCode::from_u16(status).map_err(|_| {
        args::misuse(func, format!("bad argument #1 'status' ({status} is not an HTTP status)"))
    })?;
    for (name, value) in headers {
        let name = http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| args::misuse(func, format!("bad header name '{name}'")))?;
        let value = header_value(value)
            .ok_or_else(|| args::misuse(func, format!("bad value for header '{name}' (CR, LF or NUL)")))?;
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

fn header_list(func: &str, v: Value) -> mlua::Result<HeaderFields> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Table(t) => opts::header_fields_from_table(func, "headers", &t),
        other => Err(args::bad(func, 2, "headers", "table", &other)),
    }
}

/// The response `respond(status, headers, body)` asks for.
fn response_from_args(
    func: &str,
    status: Value,
    headers: Value,
    body: Value,
) -> mlua::Result<Response<Body>> {
    let status = args::count(func, 1, "status", status, 999)? as u16;
    let headers = header_list(func, headers)?;
    let body = match body {
        Value::Nil => Bytes::new(),
        Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
        other => return Err(args::bad(func, 3, "body", "string", &other)),
    };
    build_response(func, status, &headers, body)
}

impl UserData for Request {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // respond(status [, headers [, body]])
        methods.add_method("respond", |_, this, (status, headers, body): (Value, Value, Value)| {
            const F: &str = "turbo_ws request:respond";
            this.unanswered(F)?;
            let res = response_from_args(F, status, headers, body);
            this.answer_or_fail(F, res)
        });
        methods.add_method("answered", |_, this, ()| Ok(this.reply.borrow().is_none()));
        // upgrade([{protocol=, headers=}]) -> connection | nil, status, message
        methods.add_method("upgrade", |lua, this, opts: Value| {
            const F: &str = "turbo_ws request:upgrade";
            this.unanswered(F)?;
            let result =
                upgrade_options(F, opts).and_then(|(protocol, extra)| upgrade(lua, this, protocol, &extra));
            if result.is_err() && this.reply.borrow().is_some() {
                this.answer(F, internal_error())?;
            }
            result
        });
    }
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

/// Answers with 101 and starts the connection, or answers the handshake's
/// error. The caller answers 500 when this fails without answering.
fn upgrade(
    lua: &Lua,
    req: &Request,
    protocol: Option<String>,
    extra: &[(String, Vec<u8>)],
) -> mlua::Result<(Option<AnyUserData>, Option<u16>, Option<String>)> {
    const F: &str = "turbo_ws request:upgrade";
    let key = match check_handshake(&req.parts.method, req.parts.version, &req.parts.headers) {
        Ok(key) => key,
        Err(rejection) => {
            req.answer(F, rejection_response(&rejection))?;
            return Ok((None, Some(rejection.0.as_u16()), Some(rejection.1.to_owned())));
        }
    };
    if let Some(p) = &protocol {
        if !offered_protocols(&req.parts.headers).any(|offered| offered == p) {
            return Err(args::misuse(
                F,
                format!("bad option 'protocol' ('{p}' was not offered by the client; RFC 6455 §4.2.2)"),
            ));
        }
    }
    let Some(on_upgrade) = req.on_upgrade.borrow_mut().take() else {
        return Err(args::misuse(F, "the request cannot be upgraded"));
    };
    let mut headers = vec![
        ("Upgrade".to_owned(), b"websocket".to_vec()),
        ("Connection".to_owned(), b"Upgrade".to_vec()),
        ("Sec-WebSocket-Accept".to_owned(), frame::derive_accept_key(key.as_bytes()).into_bytes()),
    ];
    if let Some(p) = &protocol {
        headers.push(("Sec-WebSocket-Protocol".to_owned(), p.clone().into_bytes()));
    }
    let deflate = negotiate_deflate(&req.parts.headers, &req.limits);
    if let Some((_, answer)) = &deflate {
        headers.push(("Sec-WebSocket-Extensions".to_owned(), answer.clone().into_bytes()));
    }
    // The handshake's own headers are ours to set; extra copies would break
    // it, and an extension we do not speak must not be claimed.
    const OURS: [&str; 5] = [
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ];
    headers.extend(extra.iter().filter(|(n, _)| !OURS.iter().any(|o| n.eq_ignore_ascii_case(o))).cloned());
    let response = build_response(F, 101, &headers, Bytes::new())?;

    let conn = connection::new(req.limits.clone(), Role::Server, deflate.map(|(agreed, _)| agreed));
    let shared = conn.shared.clone();
    shared.set_protocol(protocol);
    let conn = connection::userdata(lua, conn)?;
    let lp = ioloop::get(lua)?;
    let alive = KeepAlive::new(lp);
    let slot = req.slot.borrow_mut().take();
    lp.spawn(async move {
        let (_slot, _alive) = (slot, alive);
        match on_upgrade.await.map(|u| u.downcast::<TokioIo<Stream>>()) {
            Ok(Ok(parts)) => {
                let stream = parts.io.into_inner();
                let leftover = BytesMut::from(&parts.read_buf[..]);
                // A view into hyper's 8 KiB read buffer: kept, it would hold
                // that buffer for the connection's whole life.
                drop(parts.read_buf);
                shared.opened(&stream);
                engine::connection::run(shared, stream, leftover).await;
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
    });
    req.answer(F, response)?;
    Ok((Some(conn), None, None))
}

/// Registers `listen` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("listen", lua.create_function(move |lua, a: (Value, Value)| listen(lua, lp, a))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn header_values_keep_every_byte_but_cr_lf_nul() {
        for value in [&b"Turbo\x08"[..], b"\x01\x1f\x7f", b"\xff\x80 tab\there", b""] {
            assert_eq!(header_value(value).expect("accepted").as_bytes(), value);
        }
        for value in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\x08\r\n"] {
            assert!(header_value(value).is_none(), "{value:?} refused");
        }
    }
}
