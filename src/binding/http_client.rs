//! `turbo_ws.core.http_request(url, options, on_done)` over
//! `engine::http_client`: the options read into an engine `Request`, the
//! request run on the loop, its outcome handed to Lua.
//!
//! The call returns at once; later the loop calls `on_done(response)` or
//! `on_done(nil, kind, message[, response])`. Any status is a response;
//! only network and protocol faults are errors.

use bytes::Bytes;
use http::{Method, Version};
use mlua::{Function, Lua, RegistryKey, Table, Value};

use crate::binding::answer;
use crate::binding::args;
use crate::binding::callback;
use crate::binding::http_session;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::{self, Opts};
use crate::engine::answer::Answer;
use crate::engine::dial::{Family, Target};
use crate::engine::http_client::{self, Failure, Request, DEFAULT_MAX_BODY};

const F: &str = "turbo_ws.http_request";

fn read_request(target: Target, opts: &Opts) -> mlua::Result<Request> {
    let method = match opts.string("method")? {
        None => Method::GET,
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| args::misuse(F, format!("bad option 'method' ('{m}' is not an HTTP method)")))?,
    };
    let version = match opts.string("version")?.as_deref() {
        None | Some("HTTP/1.1") => Version::HTTP_11,
        Some("HTTP/1.0") => Version::HTTP_10,
        Some(other) => {
            return Err(args::misuse(
                F,
                format!("bad option 'version' ('{other}': HTTP/1.1 or HTTP/1.0 expected)"),
            ))
        }
    };
    let body = match opts.value("body")? {
        Value::Nil => Bytes::new(),
        Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
        other => {
            return Err(args::misuse(
                F,
                format!("bad option 'body' (string expected, got {})", args::type_name(&other)),
            ))
        }
    };
    Ok(Request {
        target,
        method,
        version,
        headers: opts::headers_option(F, opts)?,
        body,
        dial: opts::dial(F, opts)?,
        timeout: opts.seconds("timeout")?.filter(|d| !d.is_zero()),
        max_redirects: opts.integer("max_redirects", 0, 100)?.unwrap_or(0) as u32,
        max_body_size: opts.integer("max_body_size", 0, 1 << 40)?.map_or(DEFAULT_MAX_BODY, |v| v as usize),
        decompress: opts.bool("decompress")?.unwrap_or(false),
        session: http_session::from_option(F, opts.value("session")?)?,
    })
}

/// `turbo_ws.core.http_request(url, options, on_done)`
fn http_request(
    lua: &Lua,
    lp: &'static Loop,
    (url, opts, on_done): (Value, Value, Value),
) -> mlua::Result<()> {
    let url = args::string(F, 1, "url", url)?.to_str()?.to_owned();
    let opts = Opts::new(F, args::opt_table(F, 2, "options", opts)?);
    let on_done = args::function(F, 3, "on_done", on_done)?;
    let on_done = lua.create_registry_value(on_done)?;
    let alive = KeepAlive::new(lp);
    // A URL that does not parse takes the error path, as in connect: URLs
    // often come from configuration or from peers.
    let request = match Target::parse(&url, Family::Http) {
        Ok(target) => read_request(target, &opts)?,
        Err(err) => {
            lp.spawn(async move {
                report(lp, &on_done, Err((err, None)));
                drop(alive);
            });
            return Ok(());
        }
    };
    lp.spawn(async move {
        let outcome = http_client::request(&request).await;
        report(lp, &on_done, outcome);
        drop(alive);
    });
    Ok(())
}

fn report(lp: &Loop, on_done: &RegistryKey, outcome: Result<Answer, Failure>) {
    let Some(lua) = lp.lua() else {
        return;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        match outcome {
            Ok(answer) => callback::call(
                lp.trampolines(),
                &lua,
                "http_request callback",
                &func,
                answer::to_lua(&lua, &answer)?,
            ),
            Err((err, answer)) => {
                let answer = match answer {
                    Some(a) => Value::Table(answer::to_lua(&lua, a.as_ref())?),
                    None => Value::Nil,
                };
                callback::call(
                    lp.trampolines(),
                    &lua,
                    "http_request callback",
                    &func,
                    (Value::Nil, err.kind.name(), err.message, answer),
                )
            }
        };
        Ok(())
    };
    if let Err(e) = call() {
        callback::report("http_request callback", &e.to_string());
    }
}

/// Registers `http_request` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set(
        "http_request",
        lua.create_function(move |lua, a: (Value, Value, Value)| http_request(lua, lp, a))?,
    )?;
    Ok(())
}
