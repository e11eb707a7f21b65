//! `core.listen`: the server (`engine::server`) for Lua. Reads the
//! options, makes the `Server` handle, and hands every request to Lua's
//! `on_request(req, info)`: `info` is a plain table describing the request,
//! `req` the `Request` handle to answer it with (`respond` or `upgrade`,
//! which gives Lua its connection).
//!
//! No request waits forever: when answering fails (`respond` or `upgrade`
//! raises), or `on_request` raises, the client gets a 500 at once; a
//! request Lua drops without answering gets a 500 when it is collected.

use std::cell::Cell;
use std::ffi::CStr;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use mlua::{AnyUserData, Function, Lua, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::sync::Notify;

use crate::binding::args;
use crate::binding::callback;
use crate::binding::connection;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::{self, HeaderFields, Opts};
use crate::binding::record::{self, Field};
use crate::binding::userdata::{self, Object};
use crate::engine::codec::Role;
use crate::engine::registry::Closable;
use crate::engine::server::{self, AnswerError, Config, Handshake, PendingRequest, Requests, Task};
use crate::engine::tls;

/// The Lua handle of a listening server.
pub struct Server {
    local: SocketAddr,
    stop: Rc<Notify>,
    closed: Cell<bool>,
}

impl Object for Server {
    const NAME: &'static CStr = c"turbo_ws server";
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

    let addr = server::resolve_bind_address(&host, port).map_err(|e| args::misuse(F, e))?;
    let backlog = opts.integer("backlog", 1, 65535)?.unwrap_or(1024) as u32;
    let reuse_port = opts.bool("reuse_port")?.unwrap_or(false);
    let listener = lp
        .enter(|| server::bind(addr, backlog, reuse_port))
        .map_err(|e| args::misuse(F, e))?
        .map_err(|e| args::misuse(F, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| args::misuse(F, e))?;

    let max_connections = opts.integer("max_connections", 1, 1 << 30)?.unwrap_or(1 << 30) as usize;
    let config = Config { limits, tls, max_connections };
    let requests = Rc::new(LuaRequests { lp, on_request: lua.create_registry_value(on_request)? });
    let stop = Rc::new(Notify::new());
    let alive = KeepAlive::new(lp);
    let stop_signal = stop.clone();
    lp.spawn(async move {
        // Registered so a graceful shutdown stops accepting.
        let registry_id = lp.registry().add_listener(stop_signal.clone());
        server::serve(listener, config, requests, stop_signal).await;
        lp.registry().remove_listener(registry_id);
        drop(alive);
    });
    userdata::create(lua, Server { local, stop, closed: Cell::new(false) })
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

/// The server's requests, to Lua's `on_request`; its tasks, on the loop.
struct LuaRequests {
    lp: &'static Loop,
    on_request: RegistryKey,
}

impl Requests for LuaRequests {
    fn request(&self, mut req: PendingRequest) {
        let Some(lua) = self.lp.lua() else {
            req.shutting_down();
            return;
        };
        let body = req.take_body();
        let prepared = request_info(&lua, &req, &body)
            .and_then(|info| Ok((info, lua.registry_value::<Function>(&self.on_request)?)));
        let (info, on_request) = match prepared {
            Ok(p) => p,
            Err(e) => {
                callback::report("on_request", &e.to_string());
                req.fail();
                return;
            }
        };
        drop(body); // Lua has its copy in `info`.
        let handle = match userdata::create(&lua, Request(req)) {
            Ok(handle) => handle,
            // The request went with the failed userdata: the client gets a 500.
            Err(e) => return callback::report("on_request", &e.to_string()),
        };
        if !callback::call(self.lp.trampolines(), &lua, "on_request", &on_request, (handle.clone(), info)) {
            // The handler failed before answering: the client gets a 500
            // now, not when the request object is garbage-collected.
            match handle.borrow::<Request>() {
                Ok(request) => request.0.fail(),
                Err(e) => callback::report("on_request", &e.to_string()),
            }
        }
    }

    fn spawn(&self, task: Task) {
        let alive = KeepAlive::new(self.lp);
        self.lp.spawn(async move {
            task.await;
            drop(alive);
        });
    }

    fn spawn_background(&self, task: Task) {
        self.lp.spawn(task);
    }

    fn track(&self, conn: Weak<dyn Closable>) -> Option<u64> {
        Some(self.lp.registry().add_connection(conn))
    }

    fn untrack(&self, id: u64) {
        self.lp.registry().remove_connection(id);
    }

    fn accept_failed(&self, error: &std::io::Error) {
        eprintln!("turbo_ws: a listener cannot accept connections: {error} (retrying every 50 ms; said at most every 10 s)");
    }
}

/// The plain table Lua gets for a request.
fn request_info(lua: &Lua, req: &PendingRequest, body: &[u8]) -> mlua::Result<Table> {
    let head = req.head();
    let headers: Vec<(&[u8], &[u8])> =
        head.headers.iter().map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())).collect();
    let version = format!("{:?}", head.version);
    let peer = req.peer();
    let remote_ip = peer.ip().to_string();
    record::build(
        lua,
        &[
            ("method", Some(head.method.as_str().into())),
            ("uri", Some(head.uri.path_and_query().map_or("/", |p| p.as_str()).into())),
            ("path", Some(head.uri.path().into())),
            ("query", head.uri.query().map(Field::from)),
            ("version", Some(version.as_str().into())),
            ("headers", Some(Field::Pairs(&headers))),
            ("remote_ip", Some(remote_ip.as_str().into())),
            ("remote_port", Some(Field::Integer(peer.port().into()))),
            ("body", Some(body.into())),
            ("websocket", Some(Field::Boolean(req.wants_websocket()))),
        ],
    )
}

/// The Lua handle to answer one request with.
struct Request(PendingRequest);

impl Request {
    fn unanswered(&self, func: &str) -> mlua::Result<()> {
        if self.0.answered() {
            return Err(answer_error(func, AnswerError::AlreadyAnswered));
        }
        Ok(())
    }

    /// When answering failed, a 500 goes out at once (a client must never
    /// wait for an answer that will not come) and the error is raised.
    fn or_fail<T>(&self, result: mlua::Result<T>) -> mlua::Result<T> {
        if result.is_err() {
            self.0.fail();
        }
        result
    }
}

/// The Lua error for an answer the engine refused.
fn answer_error(func: &str, e: AnswerError) -> mlua::Error {
    match e {
        AnswerError::BadStatus(_) => args::misuse(func, format!("bad argument #1 'status' ({e})")),
        AnswerError::NotOffered(_) => args::misuse(func, format!("bad option 'protocol' ({e})")),
        e => args::misuse(func, e),
    }
}

/// `upgrade`'s options: the chosen protocol and extra headers.
fn upgrade_options(func: &str, opts: Value) -> mlua::Result<(Option<String>, HeaderFields)> {
    let opts = Opts::new(func, args::opt_table(func, 1, "options", opts)?);
    Ok((opts.string("protocol")?, opts.header_fields("headers")?))
}

fn header_list(func: &str, v: Value) -> mlua::Result<HeaderFields> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Table(t) => opts::header_fields_from_table(func, "headers", &t),
        other => Err(args::bad(func, 2, "headers", "table", &other)),
    }
}

/// `respond(status, headers, body)`, answered.
fn respond(func: &str, req: &PendingRequest, status: Value, headers: Value, body: Value) -> mlua::Result<()> {
    // 1xx are interim answers (RFC 9110 §15.2): a request still needs a final one.
    let status = args::whole_in(func, 1, "status", status, 200, 999)? as u16;
    let headers = header_list(func, headers)?;
    let body = match body {
        Value::Nil => Bytes::new(),
        Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
        other => return Err(args::bad(func, 3, "body", "string", &other)),
    };
    req.respond(status, &headers, body).map_err(|e| answer_error(func, e))
}

impl Object for Request {
    const NAME: &'static CStr = c"turbo_ws request";
}

impl UserData for Request {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // respond(status [, headers [, body]])
        methods.add_method("respond", |_, this, (status, headers, body): (Value, Value, Value)| {
            const F: &str = "turbo_ws request:respond";
            this.unanswered(F)?;
            this.or_fail(respond(F, &this.0, status, headers, body))
        });
        methods.add_method("answered", |_, this, ()| Ok(this.0.answered()));
        // upgrade([{protocol=, headers=}]) -> connection | nil, status, message
        methods.add_method("upgrade", |lua, this, opts: Value| {
            const F: &str = "turbo_ws request:upgrade";
            this.unanswered(F)?;
            let result = upgrade_options(F, opts)
                .and_then(|(protocol, extra)| upgrade(lua, &this.0, protocol, &extra));
            this.or_fail(result)
        });
    }
}

/// Answers 101 and gives Lua the connection, or answers the handshake's
/// error. The caller answers 500 when this fails without answering.
fn upgrade(
    lua: &Lua,
    req: &PendingRequest,
    protocol: Option<String>,
    extra: &[(String, Vec<u8>)],
) -> mlua::Result<(Option<AnyUserData>, Option<u16>, Option<String>)> {
    const F: &str = "turbo_ws request:upgrade";
    let accepted = match req.check_upgrade(protocol, extra).map_err(|e| answer_error(F, e))? {
        Handshake::Accepted(accepted) => accepted,
        Handshake::Rejected(r) => return Ok((None, Some(r.status()), Some(r.message().to_owned()))),
    };
    let conn = connection::new(accepted.limits().clone(), Role::Server, accepted.deflate());
    let shared = conn.shared.clone();
    let conn = connection::userdata(lua, conn)?;
    req.upgrade(*accepted, shared).map_err(|e| answer_error(F, e))?;
    Ok((Some(conn), None, None))
}

/// Registers `listen` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("listen", lua.create_function(move |lua, a: (Value, Value)| listen(lua, lp, a))?)?;
    Ok(())
}
