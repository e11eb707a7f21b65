//! The WebSocket client: the opening handshake and redirects, over the
//! connection that dial.rs opens (URL, DNS, TCP, TLS), each failure
//! reported as its own error kind.
//!
//! `turbo_ws.core.connect(url, options, on_done)` returns at once; later the
//! loop calls `on_done(connection, response)` or
//! `on_done(nil, kind, message[, response])`.

use std::time::Duration;

use bytes::BytesMut;
use mlua::{Function, Lua, RegistryKey, Table, Value};

use crate::answer::Answer;
use crate::args;
use crate::callback;
use crate::codec::Role;
use crate::config::{Limits, Opts};
use crate::connection::{self, Shared};
use crate::deflate;
use crate::dial::{self, Dial, Family, Target};
use crate::error::{Error, Kind};
use crate::frame;
use crate::handshake::{self, Failure as HandshakeFailure};
use crate::ioloop::{self, KeepAlive, Loop};
use crate::redirect::{self, Trail};
use crate::stream::Stream;

/// Everything a connect needs, read from Lua before the task starts.
struct Params {
    target: Target,
    path: Option<String>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    dial: Dial,
    timeout: Option<Duration>,
    max_redirects: u32,
    limits: Limits,
}

/// A failure, with the response when the server answered.
type Failure = (Error, Option<Answer>);

fn read_params(func: &str, target: Target, opts: &Opts) -> mlua::Result<Params> {
    if opts.string("unix_socket")?.is_some() && target.tls {
        return Err(args::misuse(
            func,
            "bad option 'unix_socket' (TLS over a Unix socket is not supported: use ws://)",
        ));
    }
    Ok(Params {
        target,
        path: opts.string("path")?,
        headers: dial::headers_option(func, opts)?,
        protocols: opts.strings("protocols")?.unwrap_or_default(),
        dial: Dial::from_opts(func, opts)?,
        timeout: dial::timeout_or_default(opts, "timeout", DEFAULT_HANDSHAKE_TIMEOUT)?,
        max_redirects: opts.integer("max_redirects", 0, 100)?.unwrap_or(0) as u32,
        limits: Limits::from_opts(opts)?,
    })
}

/// DNS, connect, TLS and the HTTP handshake together (`timeout`).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let target = match Target::parse(&url, Family::WebSocket) {
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
                } else {
                    // Nobody holds it: take it out of the loop's registry.
                    shared.finish(None, 1006, "the connect callback failed".into());
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
        let args = (Value::Nil, err.kind.name(), err.message, answer, err.detail);
        callback::call(&lua, "connect callback", &func, args);
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
        let mut stream = dial::open_stream(&target, &p.dial).await.map_err(|e| (e, None))?;
        let request = build_request(&target, &path, &headers, p).map_err(|e| (e, None))?;
        match handshake::client(&mut stream, &request).await {
            Ok((res, leftover, deflate)) => {
                return Ok((stream, leftover, deflate, Answer::from_handshake(res, &target.url)))
            }
            Err(HandshakeFailure::Status(res)) => {
                let redirection = (300..400).contains(&res.status);
                let answer = Answer::from_handshake(res, &target.url);
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
        HandshakeFailure::Io(io) if dial::is_tls_error(&io) => {
            Error::new(Kind::Tls, format!("TLS failed during the handshake: {io}"))
        }
        HandshakeFailure::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => no_response(),
        HandshakeFailure::Io(io) => Error::new(Kind::Io, format!("during the handshake: {io}")),
        HandshakeFailure::NoResponse => no_response(),
        HandshakeFailure::BadResponse(m) => Error::new(Kind::BadResponse, m),
        HandshakeFailure::BadHandshake(check, m) => Error::new(Kind::BadHandshake, m).with_detail(check.name()),
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

/// Registers `connect` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("connect", lua.create_function(move |lua, a: (Value, Value, Value)| connect(lua, lp, a))?)?;
    Ok(())
}
