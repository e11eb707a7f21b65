//! `core.connect`: the WebSocket client (`engine::client`) for Lua.
//!
//! `turbo_ws.core.connect(url, options, on_done)` returns at once; later the
//! loop calls `on_done(connection, response)` or
//! `on_done(nil, kind, message[, response])`.

use std::time::Duration;

use mlua::{Function, Lua, RegistryKey, Table, Value};

use crate::binding::answer;
use crate::binding::args;
use crate::binding::callback;
use crate::binding::connection;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::{self, Opts};
use crate::engine;
use crate::engine::answer::Answer;
use crate::engine::client::{Connect, Established, Failure};
use crate::engine::codec::Role;
use crate::engine::dial::{Family, Target};
use crate::engine::handshake;

fn read_params(func: &str, target: Target, opts: &Opts) -> mlua::Result<Connect> {
    if opts.string("unix_socket")?.is_some() && target.tls {
        return Err(args::misuse(
            func,
            "bad option 'unix_socket' (TLS over a Unix socket is not supported: use ws://)",
        ));
    }
    Ok(Connect {
        target,
        path: opts.string("path")?,
        headers: opts::headers_option(func, opts)?,
        protocols: subprotocols(func, opts)?,
        require_protocol: opts.bool("require_protocol")?.unwrap_or(true),
        dial: opts::dial(func, opts)?,
        timeout: opts::timeout_or_default(opts, "timeout", DEFAULT_HANDSHAKE_TIMEOUT)?,
        max_redirects: opts.integer("max_redirects", 0, 100)?.unwrap_or(0) as u32,
        limits: opts::limits(opts)?,
    })
}

/// The `protocols` option: each one a token (RFC 6455 §4.1).
fn subprotocols(func: &str, opts: &Opts) -> mlua::Result<Vec<String>> {
    let protocols = opts.strings("protocols")?.unwrap_or_default();
    match protocols.iter().find(|p| !handshake::is_token(p.as_bytes())) {
        Some(bad) => Err(args::misuse(
            func,
            format!("bad option 'protocols' ({bad:?} is not a subprotocol name: RFC 6455 wants a token)"),
        )),
        None => Ok(protocols),
    }
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
        let outcome = engine::client::connect(&params).await;
        match outcome {
            Ok(Established { stream, leftover, deflate, answer }) => {
                let conn = connection::new(params.limits.clone(), Role::Client, deflate);
                let shared = conn.shared.clone();
                shared.set_protocol(answer.header("sec-websocket-protocol"));
                // Open (with its peer address) already inside on_done.
                shared.opened(&stream);
                if report_success(&on_done, conn, &answer) {
                    engine::connection::run(shared, stream, leftover).await;
                } else {
                    // Nobody holds it: take it out of the loop's registry.
                    shared.finish(None, 1006, "the connect callback failed".into());
                }
                drop(alive);
            }
            Err(failure) => {
                report_failure(&on_done, failure);
                drop(alive);
            }
        }
    });
    Ok(())
}

fn report_success(on_done: &RegistryKey, conn: connection::Connection, answer: &Answer) -> bool {
    let Some(lp) = ioloop::current() else { return false };
    let Some(lua) = lp.lua() else {
        return false;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        let conn = connection::userdata(&lua, conn)?;
        callback::call(
            lp.trampolines(),
            &lua,
            "connect callback",
            &func,
            (conn, answer::to_lua(&lua, answer)?),
        );
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
    let Some(lp) = ioloop::current() else { return };
    let Some(lua) = lp.lua() else {
        return;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        let answer = match &answer {
            Some(a) => Value::Table(answer::to_lua(&lua, a)?),
            None => Value::Nil,
        };
        let args = (Value::Nil, err.kind.name(), err.message, answer, err.detail);
        callback::call(lp.trampolines(), &lua, "connect callback", &func, args);
        Ok(())
    };
    if let Err(e) = call() {
        callback::report("connect callback", &e.to_string());
    }
}

/// Registers `connect` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("connect", lua.create_function(move |lua, a: (Value, Value, Value)| connect(lua, lp, a))?)?;
    Ok(())
}
