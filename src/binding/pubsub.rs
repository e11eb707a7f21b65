//! Publish/subscribe hubs as Lua sees them: `core.pubsub(options)` (Lua:
//! lua/turbo_ws/pubsub.lua, `turbo_ws.pubsub.new`), the hub userdata, and
//! the engine's `pubsub::Events` as Lua callbacks. The hub itself and its
//! backends are `engine::pubsub`; the hubs of a thread share the `Bus` its
//! loop owns (`Loop::pubsub`).
//!
//! Subscribers are Lua functions kept as registry keys. Delivery happens on
//! the loop thread, through `callback::call`, one coroutine per subscriber
//! call; the message and channel become Lua strings once per message.

use std::any::Any;
use std::ffi::CStr;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::task::JoinHandle;

use crate::binding::args;
use crate::binding::callback;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::Opts;
use crate::binding::userdata::{self, Object};
use crate::engine::pubsub::{Events, Fault, Host, Hub, Recipients, RedisConfig};

/// The engine's hub events, delivered to Lua functions.
struct LuaEvents {
    lp: &'static Loop,
    on_error: Option<RegistryKey>,
    on_connect: Option<RegistryKey>,
}

impl Events for LuaEvents {
    /// A subscriber: its Lua function.
    type Subscriber = RegistryKey;

    /// Calls every subscriber in `to` with `(message, channel)`.
    fn deliver(&self, channel: &[u8], message: &[u8], to: Recipients<'_, RegistryKey>) {
        let Some(lua) = self.lp.lua() else { return };
        let (Ok(message), Ok(name)) = (lua.create_string(message), lua.create_string(channel)) else {
            return callback::report("pubsub subscriber", "out of memory");
        };
        for key in to {
            match lua.registry_value::<Function>(&key) {
                Ok(f) => {
                    callback::call(
                        self.lp.trampolines(),
                        &lua,
                        "pubsub subscriber",
                        &f,
                        (message.clone(), name.clone()),
                    );
                }
                Err(e) => callback::report("pubsub subscriber", &e.to_string()),
            }
        }
    }

    /// `on_error(kind, message)`, or a line on stderr without one.
    fn error(&self, kind: Fault, message: &str) {
        let (Some(key), Some(lua)) = (&self.on_error, self.lp.lua()) else {
            eprintln!("turbo_ws.pubsub: {}: {message}", kind.name());
            return;
        };
        match lua.registry_value::<Function>(key) {
            Ok(f) => {
                callback::call(self.lp.trampolines(), &lua, "pubsub on_error", &f, (kind.name(), message));
            }
            Err(e) => callback::report("pubsub on_error", &e.to_string()),
        }
    }

    fn connected(&self) {
        let (Some(key), Some(lua)) = (&self.on_connect, self.lp.lua()) else { return };
        match lua.registry_value::<Function>(key) {
            Ok(f) => {
                callback::call(self.lp.trampolines(), &lua, "pubsub on_connect", &f, ());
            }
            Err(e) => callback::report("pubsub on_connect", &e.to_string()),
        }
    }

    fn attached(&self) -> bool {
        self.lp.lua().is_some()
    }
}

/// The loop, as the hubs' host: their tasks run on it, and a pending
/// delivery or an open Redis hub keeps `run()` going.
struct LoopHost(&'static Loop);

impl Host for LoopHost {
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()>>>) -> JoinHandle<()> {
        self.0.spawn(task)
    }

    fn hold(&self) -> Box<dyn Any> {
        Box::new(KeepAlive::new(self.0))
    }
}

// ---------------------------------------------------------------- Lua API

/// The Lua handle of a hub.
struct HubHandle(Rc<Hub<LuaEvents>>);

/// A hub whose handle Lua has collected can never be used again: close it,
/// so its subscribers are released and (Redis) it stops keeping `run()`
/// going. A subscriber that refers to its own hub keeps the handle alive
/// (the callback holds it), so such a program must call `hub:close()`.
impl Drop for HubHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn channel_arg(func: &str, v: Value) -> mlua::Result<Vec<u8>> {
    let s = args::string(func, 1, "channel", v)?;
    let bytes = s.as_bytes().to_vec();
    if bytes.is_empty() {
        return Err(args::misuse(func, "bad argument #1 'channel' (must not be empty)"));
    }
    Ok(bytes)
}

/// A message: a string as is, a table as JSON (`turbo_ws.json`, which
/// every face may load; the Turbo face's `escape.json_encode` is the same
/// encoder).
fn message_arg(lua: &Lua, func: &str, v: Value) -> mlua::Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Table(t) => {
            let require: Function = lua.globals().get("require")?;
            let json: Table = require.call("turbo_ws.json")?;
            let encode: Function = json.get("encode")?;
            let text: mlua::LuaString = encode.call(t).map_err(|e| {
                let why = match &e {
                    mlua::Error::RuntimeError(m) => m.clone(),
                    mlua::Error::CallbackError { cause, .. } => cause.to_string(),
                    other => other.to_string(),
                };
                let why = why.lines().next().unwrap_or_default().to_owned();
                args::misuse(
                    func,
                    format!("bad argument #2 'message' (a table JSON can encode expected: {why})"),
                )
            })?;
            Ok(text.as_bytes().to_vec())
        }
        other => Err(args::bad(func, 2, "message", "string or table", &other)),
    }
}

impl Object for HubHandle {
    const NAME: &'static CStr = c"turbo_ws.pubsub hub";
}

impl UserData for HubHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // subscribe(channel, fn(message, channel)) -> token
        methods.add_method("subscribe", |lua, this, (channel, func): (Value, Value)| {
            const F: &str = "turbo_ws.pubsub hub:subscribe";
            let channel = channel_arg(F, channel)?;
            let func = args::function(F, 2, "callback", func)?;
            if this.0.is_closed() {
                return Err(args::misuse(F, "the hub is closed"));
            }
            Ok(this.0.subscribe(channel, lua.create_registry_value(func)?))
        });
        // unsubscribe(token) -> bool, unsubscribe(channel) -> count
        methods.add_method("unsubscribe", |_, this, what: Value| {
            const F: &str = "turbo_ws.pubsub hub:unsubscribe";
            match what {
                Value::Integer(i) => Ok(Value::Boolean(i > 0 && this.0.unsubscribe_token(i as u64))),
                Value::Number(x) if x.fract() == 0.0 && x > 0.0 => {
                    Ok(Value::Boolean(this.0.unsubscribe_token(x as u64)))
                }
                Value::String(s) => {
                    let channel = channel_arg(F, Value::String(s))?;
                    Ok(Value::Integer(this.0.unsubscribe_channel(&channel) as _))
                }
                other => {
                    Err(args::bad(F, 1, "token or channel", "subscription token or channel name", &other))
                }
            }
        });
        // publish(channel, message) -> true | nil, kind, message
        methods.add_method("publish", |lua, this, (channel, message): (Value, Value)| {
            const F: &str = "turbo_ws.pubsub hub:publish";
            let channel = channel_arg(F, channel)?;
            let message = message_arg(lua, F, message)?;
            match this.0.publish(channel, message) {
                Ok(()) => true.into_lua_multi(lua),
                Err(refused) => (Value::Nil, refused.kind.name(), refused.message).into_lua_multi(lua),
            }
        });
        methods.add_method("close", |_, this, ()| {
            this.0.close();
            Ok(())
        });
        methods.add_method("closed", |_, this, ()| Ok(this.0.is_closed()));
        methods.add_method("connected", |_, this, ()| Ok(this.0.is_connected()));
        methods.add_method("backend", |_, this, ()| {
            Ok(if this.0.redis_url().is_some() { "redis" } else { "memory" })
        });
        // The channels that have at least one subscriber on this hub, sorted.
        methods.add_method("channels", |lua, this, ()| {
            let t = lua.create_table()?;
            for (i, name) in this.0.channels().iter().enumerate() {
                t.set(i + 1, lua.create_string(name)?)?;
            }
            Ok(t)
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(match this.0.redis_url() {
                None => "turbo_ws.pubsub hub (memory)".to_string(),
                Some(url) => format!("turbo_ws.pubsub hub (redis {url})"),
            })
        });
    }
}

/// A function-valued option, kept as a registry key.
fn callback_opt(lua: &Lua, opts: &Opts, func: &str, key: &str) -> mlua::Result<Option<RegistryKey>> {
    match opts.value(key)? {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(lua.create_registry_value(f)?)),
        other => Err(args::misuse(
            func,
            format!("bad option '{key}' (function expected, got {})", args::type_name(&other)),
        )),
    }
}

/// The Redis backend's options (`url`, `timeout`, reconnect delays,
/// `ping_interval`, `max_pending`) over the engine's defaults.
fn redis_config(opts: &Opts, func: &str) -> mlua::Result<RedisConfig> {
    let url = opts.string("url")?.unwrap_or_else(|| RedisConfig::DEFAULT_URL.into());
    let mut config =
        RedisConfig::new(&url).map_err(|why| args::misuse(func, format!("bad option 'url' ({why})")))?;
    if let Some(timeout) = opts.seconds("timeout")? {
        if timeout.is_zero() {
            return Err(args::misuse(func, "bad option 'timeout' (must be more than 0)"));
        }
        config.timeout = timeout;
    }
    config.delay_min =
        opts.seconds("reconnect_delay")?.unwrap_or(config.delay_min).max(Duration::from_millis(1));
    config.delay_max = opts.seconds("max_reconnect_delay")?.unwrap_or(config.delay_max).max(config.delay_min);
    if let Some(every) = opts.seconds("ping_interval")? {
        config.ping_interval = Some(every).filter(|d| !d.is_zero());
    }
    if let Some(max) = opts.integer("max_pending", 1, 1 << 40)? {
        config.max_pending = max as usize;
    }
    Ok(config)
}

/// `core.pubsub(options) -> hub`
fn new_hub(lua: &Lua, lp: &'static Loop, opts: Value) -> mlua::Result<AnyUserData> {
    const F: &str = "turbo_ws.pubsub.new";
    let opts = Opts::new(F, args::opt_table(F, 1, "options", opts)?);
    let redis = match opts.string("backend")?.as_deref() {
        None | Some("memory") => false,
        Some("redis") => true,
        Some(other) => {
            return Err(args::misuse(
                F,
                format!("bad option 'backend' (\"memory\" or \"redis\" expected, got \"{other}\")"),
            ))
        }
    };
    let events = LuaEvents {
        lp,
        on_error: callback_opt(lua, &opts, F, "on_error")?,
        on_connect: callback_opt(lua, &opts, F, "on_connect")?,
    };
    let host: Rc<dyn Host> = Rc::new(LoopHost(lp));
    let hub = if redis {
        Hub::redis(lp.pubsub(), host, events, redis_config(&opts, F)?)
    } else {
        Hub::memory(lp.pubsub(), host, events)
    };
    userdata::create(lua, HubHandle(hub))
}

/// Registers `core.pubsub(options)`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("pubsub", lua.create_function(move |lua, opts: Value| new_hub(lua, lp, opts))?)?;
    Ok(())
}
