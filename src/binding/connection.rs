//! A connection as Lua sees it: the userdata programs hold (`send`,
//! `close`, `set_callbacks`, ...) and the Lua side of the engine's
//! `Events`, which calls the callbacks `set_callbacks` set.
//!
//! Ownership: the Lua side holds the userdata; the callbacks are kept as
//! registry keys and dropped when the connection ends, so a handler that
//! refers to its own connection is not kept alive past the close.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::{Rc, Weak};

use mlua::{
    ffi, AnyUserData, Function, IntoLuaMulti, Lua, RegistryKey, Table, UserData, UserDataMethods, Value,
};

use crate::binding::args;
use crate::binding::callback;
use crate::binding::fast_send;
use crate::binding::ioloop;
use crate::binding::message_copy;
use crate::binding::userdata::{self, Object};
use crate::engine::codec::Role;
use crate::engine::connection::{Events, Shared, State};
use crate::engine::deflate::Agreed;
use crate::engine::error::Error;
use crate::engine::frame;
use crate::engine::limits::Limits;
use crate::engine::registry::Closable;

/// The Lua functions events go to, as registry keys: function handles
/// would live on mlua's reference stack, which tens of thousands of
/// connections would overflow.
#[derive(Default)]
struct Callbacks {
    on_message: Option<RegistryKey>,
    /// Internal, for the faces: called with the message's length instead
    /// of a string, the bytes copied by `message_copy` (over `on_message`).
    on_message_length: Option<RegistryKey>,
    on_ping: Option<RegistryKey>,
    on_pong: Option<RegistryKey>,
    on_close: Option<RegistryKey>,
    on_error: Option<RegistryKey>,
    on_drain: Option<RegistryKey>,
    on_closing: Option<RegistryKey>,
}

/// What a connection's events go to.
#[derive(Default)]
struct Wiring {
    /// Shared by the connections given the same table with a context
    /// (see [`shared_callbacks`]).
    callbacks: Option<Rc<Callbacks>>,
    /// Passed first to every callback when set (`set_callbacks`' second
    /// argument): a face can then share one set of functions among all
    /// its connections instead of making closures for each.
    context: Option<RegistryKey>,
}

/// The engine's events, delivered to Lua callbacks.
#[derive(Default)]
struct LuaEvents {
    wiring: RefCell<Wiring>,
    /// Its entry in the loop's registry (for graceful shutdown).
    registry_id: Cell<u64>,
    /// The loop of the thread it was made on, which runs its task: held
    /// rather than looked up (a thread-local) on every message.
    lp: Option<&'static ioloop::Loop>,
}

/// The callbacks last set with a context, and the table they were read
/// from: the next connection given the same table, holding the same
/// functions, shares them instead of registering them again (a face
/// wires every connection with one table).
struct SharedCallbacks {
    table: RegistryKey,
    callbacks: Rc<Callbacks>,
}

// A thread-local, not a field of the loop (which holds host state): the
// loop cannot name `Callbacks` without an import cycle, and this is only a
// cache -- losing it costs one registration of the functions again.
thread_local! {
    static SHARED: RefCell<Option<SharedCallbacks>> = const { RefCell::new(None) };
}

/// The fields `set_callbacks` reads, in the order of `Callbacks::keys`.
const CALLBACK_NAMES: [&CStr; 8] = [
    c"on_message",
    c"_on_message_length",
    c"on_ping",
    c"on_pong",
    c"on_close",
    c"on_error",
    c"on_drain",
    c"on_closing",
];

/// `t[name]` for each of `CALLBACK_NAMES` (its `__index` runs, as for
/// any option), in one protected call: mlua's `Table::get` would make
/// two (the key string, the lookup), each allocating C closures under
/// LuaJIT, for every connection wired.
fn callback_fields(lua: &Lua, t: &Table) -> mlua::Result<[Value; 8]> {
    // SAFETY: protected by exec_raw; `t` is its argument at index 1, each
    // lua_getfield pushes one value (the 9 slots are within LUA_MINSTACK),
    // and the table is removed, leaving the eight values.
    let (a, b, c, d, e, f, g, h) = unsafe {
        lua.exec_raw::<(Value, Value, Value, Value, Value, Value, Value, Value)>(t, |state| {
            for name in CALLBACK_NAMES {
                ffi::lua_getfield(state, 1, name.as_ptr());
            }
            ffi::lua_remove(state, 1);
        })
    }?;
    Ok([a, b, c, d, e, f, g, h])
}

impl Callbacks {
    fn keys(&self) -> [&Option<RegistryKey>; 8] {
        [
            &self.on_message,
            &self.on_message_length,
            &self.on_ping,
            &self.on_pong,
            &self.on_close,
            &self.on_error,
            &self.on_drain,
            &self.on_closing,
        ]
    }
}

/// The callbacks in `t` (read as `read_callbacks` does), shared with the
/// connections last given the same table holding the same functions.
fn shared_callbacks(lua: &Lua, func: &str, t: &Table) -> mlua::Result<Rc<Callbacks>> {
    // Taken out first: reading `t` may run Lua code (its __index), which
    // may set callbacks itself.
    let cached = SHARED.with_borrow(|shared| {
        let shared = shared.as_ref()?;
        // Another Lua state's key is an error here: not a match.
        Some((lua.registry_value::<Table>(&shared.table).ok()?, shared.callbacks.clone()))
    });
    if let Some((table, callbacks)) = cached {
        if table == *t && holds_functions(lua, t, &callbacks) {
            return Ok(callbacks);
        }
    }
    let callbacks = Rc::new(read_callbacks(lua, func, t)?);
    let table = lua.create_registry_value(t.clone())?;
    // Replaced outside the borrow: dropping the old keys must not run under it.
    let old = SHARED
        .with_borrow_mut(|shared| shared.replace(SharedCallbacks { table, callbacks: callbacks.clone() }));
    drop(old);
    Ok(callbacks)
}

/// Does `t` hold (as `read_callbacks` reads it) the functions of `callbacks`?
fn holds_functions(lua: &Lua, t: &Table, callbacks: &Callbacks) -> bool {
    let Ok(now) = callback_fields(lua, t) else { return false };
    now.into_iter().zip(callbacks.keys()).all(|(now, key)| {
        let then = match key {
            Some(key) => lua.registry_value::<Value>(key),
            None => Ok(Value::Nil),
        };
        matches!(then, Ok(then) if now == then)
    })
}

impl LuaEvents {
    /// The callback chosen by `which`, if set (a handle of its own, so the
    /// callback may replace the callbacks while it runs).
    fn callback(&self, lua: &Lua, which: fn(&Callbacks) -> &Option<RegistryKey>) -> Option<Function> {
        let wiring = self.wiring.borrow();
        let key = which(wiring.callbacks.as_deref()?).as_ref()?;
        match lua.registry_value::<Function>(key) {
            Ok(func) => Some(func),
            Err(e) => {
                callback::report("callback lookup", &e.to_string());
                None
            }
        }
    }

    /// Calls the callback chosen by `which`, if set; `args` makes its
    /// arguments only when there is one to call.
    fn emit<A: IntoLuaMulti>(
        &self,
        which: fn(&Callbacks) -> &Option<RegistryKey>,
        what: &str,
        args: impl FnOnce(&Lua) -> mlua::Result<A>,
    ) {
        let Some(lp) = ioloop::current() else { return };
        let Some(lua) = lp.lua() else { return };
        let Some(func) = self.callback(&lua, which) else { return };
        let context = match self.context(&lua) {
            Ok(context) => context,
            Err(e) => return callback::report(what, &e.to_string()),
        };
        match args(&lua) {
            Ok(a) => {
                match context {
                    Some(context) => callback::call(lp.trampolines(), &lua, what, &func, (context, a)),
                    None => callback::call(lp.trampolines(), &lua, what, &func, a),
                };
            }
            Err(e) => callback::report(what, &e.to_string()),
        }
    }

    /// The context callbacks get first, if one was set.
    fn context(&self, lua: &Lua) -> mlua::Result<Option<Value>> {
        match &self.wiring.borrow().context {
            Some(key) => lua.registry_value::<Value>(key).map(Some),
            None => Ok(None),
        }
    }
}

impl Events for LuaEvents {
    fn message(&self, data: &[u8], binary: bool) {
        let Some(lp) = self.lp else { return };
        let Some(lua) = lp.lua() else { return };
        // Only the key's number, under a short borrow: the callback may
        // replace the callbacks while it runs.
        let (key, by_length, context) = {
            let wiring = self.wiring.borrow();
            let Some(callbacks) = wiring.callbacks.as_ref() else { return };
            let by_length = callbacks.on_message_length.as_ref().map(RegistryKey::id);
            let Some(key) = by_length.or_else(|| callbacks.on_message.as_ref().map(RegistryKey::id)) else {
                return;
            };
            (key, by_length.is_some(), wiring.context.as_ref().map(RegistryKey::id))
        };
        let trampolines = lp.trampolines();
        if by_length {
            let len = data.len();
            message_copy::offer(lp, data, || {
                callback::call_registered_with_length(
                    trampolines,
                    &lua,
                    "on_message",
                    key,
                    context,
                    len,
                    binary,
                )
            });
            return;
        }
        if callback::call_registered_with_bytes(trampolines, &lua, "on_message", key, context, data, binary)
            .is_some()
        {
            return;
        }
        let Some(func) = self.callback(&lua, |c| &c.on_message) else { return };
        match self.context(&lua) {
            Ok(None) => {
                callback::call_with_bytes(lp.trampolines(), &lua, "on_message", &func, data, binary);
            }
            // Without ffi (PUC Lua): the string made here, as call_with_bytes does there.
            Ok(Some(context)) => match lua.create_string(data) {
                Ok(s) => {
                    callback::call(lp.trampolines(), &lua, "on_message", &func, (context, s, binary));
                }
                Err(e) => callback::report("on_message", &e.to_string()),
            },
            Err(e) => callback::report("on_message", &e.to_string()),
        }
    }

    fn ping(&self, data: &[u8]) {
        self.emit(|c| &c.on_ping, "on_ping", |lua| lua.create_string(data));
    }

    fn pong(&self, data: &[u8]) {
        self.emit(|c| &c.on_pong, "on_pong", |lua| lua.create_string(data));
    }

    fn drained(&self) {
        self.emit(|c| &c.on_drain, "on_drain", |_| Ok(()));
    }

    fn quiet(&self) {
        if let Some(lp) = self.lp {
            lp.recheck_idle();
        }
    }

    fn closing(&self, code: u16, reason: &str) {
        self.emit(|c| &c.on_closing, "on_closing", |_| Ok((code, reason.to_owned())));
    }

    fn finished(&self, error: Option<Error>, code: u16, reason: String) {
        if let Some(lp) = ioloop::current() {
            lp.registry().remove_connection(self.registry_id.get());
        }
        if let Some(err) = error {
            self.emit(|c| &c.on_error, "on_error", |_| Ok((err.kind.name(), err.message)));
        }
        self.emit(|c| &c.on_close, "on_close", |_| Ok((code, reason)));
        // Taken out before dropping: dropping a key must not run under a borrow.
        let callbacks = std::mem::take(&mut *self.wiring.borrow_mut());
        drop(callbacks);
        // mlua only queues dropped keys; free their slots now so the closed
        // handler's objects can be collected without waiting for reuse.
        if let Some(lua) = ioloop::current().and_then(|lp| lp.lua()) {
            lua.expire_registry_values();
        }
    }

    fn attached(&self) -> bool {
        self.lp.is_some_and(|lp| lp.lua().is_some())
    }
}

/// A new connection whose events go to Lua, registered for graceful
/// shutdown; `userdata` makes its Lua handle.
pub fn new(limits: Limits, role: Role, deflate: Option<Agreed>) -> Connection {
    let lp = ioloop::current();
    let events = Rc::new(LuaEvents { lp, ..LuaEvents::default() });
    let shared = Shared::new(limits, role, deflate, events.clone());
    if let Some(lp) = lp {
        let weak: Weak<dyn Closable> = Rc::downgrade(&shared) as Weak<dyn Closable>;
        events.registry_id.set(lp.registry().add_connection(weak));
    }
    let handle = Rc::new(fast_send::Handle::new(&shared));
    Connection { shared, events, handle }
}

/// The Lua handle of a connection.
#[derive(Clone)]
pub struct Connection {
    pub shared: Rc<Shared>,
    events: Rc<LuaEvents>,
    /// Its number for `fast_send`, given back when the last clone goes.
    handle: Rc<fast_send::Handle>,
}

const SEND: &str = "turbo_ws connection:send";

/// A payload argument: a string, or nil for an empty one.
fn payload_arg(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Option<mlua::LuaString>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(args::bad(func, n, name, "string", &other)),
    }
}

/// Queues a ping or pong from Lua.
fn send_control(this: &Connection, func: &str, opcode: u8, v: Value) -> mlua::Result<Outcome> {
    let data = payload_arg(func, 1, "data", v)?;
    let bytes = data.as_ref().map(|s| s.as_bytes());
    let payload: &[u8] = bytes.as_deref().unwrap_or(b"");
    if payload.len() > frame::MAX_CONTROL_PAYLOAD {
        return Err(args::misuse(
            func,
            format!(
                "bad argument #1 'data' (control frame payload is {} bytes, at most 125 allowed)",
                payload.len()
            ),
        ));
    }
    Ok(outcome(this.shared.send(payload, |out, p| out.push(opcode, true, p))))
}

type Outcome = (Value, Option<&'static str>, Option<String>);

/// `true`, or `nil, kind, message` for Lua.
fn outcome(result: Result<(), Error>) -> Outcome {
    match result {
        Ok(()) => (Value::Boolean(true), None, None),
        Err(e) => (Value::Nil, Some(e.kind.name()), Some(e.message)),
    }
}

impl Object for Connection {
    const NAME: &'static CStr = c"turbo_ws connection";

    /// The Lua `send` method: it finds a connection's handle at its first send.
    fn prepare_methods(lua: &Lua, methods: &Table) -> mlua::Result<()> {
        fast_send::install_send_method(lua, methods)
    }
}

impl UserData for Connection {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // send(data [, binary]) -> true | nil, kind, message
        methods.add_method("send", |_, this, (data, binary): (Value, Value)| {
            let binary = args::opt_bool(SEND, 2, "binary", binary)?.unwrap_or(false);
            let Value::String(data) = data else {
                return Err(args::bad(SEND, 1, "data", "string", &data));
            };
            let bytes = data.as_bytes();
            let Some(opcode) = fast_send::message_opcode(&bytes, binary) else {
                return Err(args::misuse(
                    SEND,
                    "bad argument #1 'data' (a text message must be valid UTF-8; send it as binary)",
                ));
            };
            Ok(outcome(this.shared.send(&bytes, |out, p| out.push_message(opcode, p))))
        });
        // _send_handle() -> the number fast_send knows this connection by
        // (internal, for the faces), or nil when it has none.
        methods.add_method("_send_handle", |_, this, ()| Ok(this.handle.number()));
        methods.add_method("ping", |_, this, data: Value| {
            send_control(this, "turbo_ws connection:ping", frame::PING, data)
        });
        methods.add_method("pong", |_, this, data: Value| {
            send_control(this, "turbo_ws connection:pong", frame::PONG, data)
        });
        // close([code [, reason]]): starts the closing handshake; code defaults to
        // 1000, and `false` sends a close frame without a status code.
        methods.add_method("close", |_, this, (code, reason): (Value, Value)| {
            const F: &str = "turbo_ws connection:close";
            let code = match code {
                Value::Boolean(false) => None,
                Value::Nil => Some(1000),
                other => Some(args::count(F, 1, "code", other, 65535)? as u16),
            };
            let reason = args::opt_string(F, 2, "reason", reason)?.unwrap_or_default();
            if let Some(c) = code {
                if !frame::check_close_code(c) {
                    return Err(args::misuse(
                        F,
                        format!("bad argument #1 'code' ({c} is not a close code an endpoint may send)"),
                    ));
                }
            }
            if reason.len() > 123 {
                return Err(args::misuse(F, "bad argument #2 'reason' (at most 123 bytes)"));
            }
            if !reason.is_empty() && code.is_none() {
                return Err(args::misuse(F, "bad argument #2 'reason' (a reason needs a code)"));
            }
            this.shared.close(code, &reason);
            Ok(())
        });
        // send_frame(opcode, data, fin): one data frame, for programs that
        // fragment messages themselves (opcode 1 or 2 starts, 0 continues).
        methods.add_method("send_frame", |_, this, (opcode, data, fin): (Value, Value, Value)| {
            const F: &str = "turbo_ws connection:send_frame";
            let opcode = args::count(F, 1, "opcode", opcode, 15)? as u8;
            let data = payload_arg(F, 2, "data", data)?;
            let fin = args::opt_bool(F, 3, "fin", fin)?.unwrap_or(true);
            if opcode > frame::BINARY {
                return Err(args::misuse(F, format!("bad argument #1 'opcode' ({opcode} is not 0, 1 or 2)")));
            }
            let bytes = data.as_ref().map(|s| s.as_bytes());
            Ok(outcome(this.shared.send(bytes.as_deref().unwrap_or(b""), |out, p| out.push(opcode, fin, p))))
        });
        methods.add_method("abort", |_, this, ()| {
            this.shared.abort();
            Ok(())
        });
        methods.add_method("closed", |_, this, ()| Ok(this.shared.state() == State::Closed));
        methods.add_method("state", |_, this, ()| Ok(this.shared.state().name()));
        methods.add_method("buffered_amount", |_, this, ()| Ok(this.shared.buffered_amount()));
        methods.add_method("pause_reading", |_, this, ()| {
            this.shared.pause_reading();
            // It may no longer keep run() going (nothing left to write).
            if let Some(lp) = ioloop::current() {
                lp.recheck_idle();
            }
            Ok(())
        });
        methods.add_method("resume_reading", |_, this, ()| {
            this.shared.resume_reading();
            Ok(())
        });
        methods.add_method("protocol", |_, this, ()| Ok(this.shared.protocol()));
        methods.add_method("remote_address", |_, this, ()| {
            Ok(match this.shared.peer() {
                Some(addr) => (Some(addr.ip().to_string()), Some(addr.port())),
                None => (None, None),
            })
        });
        // set_callbacks({on_message=, on_ping=, on_pong=, on_close=, on_error=,
        // on_drain=, on_closing=} [, context]): with a context, each is called
        // with it first.
        methods.add_method("set_callbacks", |lua, this, (t, context): (Value, Value)| {
            const F: &str = "turbo_ws connection:set_callbacks";
            let t = args::opt_table(F, 1, "callbacks", t)?
                .ok_or_else(|| args::bad(F, 1, "callbacks", "table", &Value::Nil))?;
            let callbacks = if context.is_nil() {
                Wiring { callbacks: Some(Rc::new(read_callbacks(lua, F, &t)?)), context: None }
            } else {
                let callbacks = shared_callbacks(lua, F, &t)?;
                Wiring { callbacks: Some(callbacks), context: Some(lua.create_registry_value(context)?) }
            };
            if this.shared.state() != State::Closed {
                let old = std::mem::replace(&mut *this.events.wiring.borrow_mut(), callbacks);
                drop(old);
            }
            Ok(())
        });
    }
}

fn read_callbacks(lua: &Lua, func: &str, t: &Table) -> mlua::Result<Callbacks> {
    let [on_message, on_message_length, on_ping, on_pong, on_close, on_error, on_drain, on_closing] =
        callback_fields(lua, t)?;
    let key = |name: &str, value: Value| -> mlua::Result<Option<RegistryKey>> {
        match value {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(lua.create_registry_value(f)?)),
            other => Err(mlua::Error::runtime(format!(
                "{func}: bad option '{name}' (function expected, got {})",
                args::type_name(&other)
            ))),
        }
    };
    Ok(Callbacks {
        on_message: key("on_message", on_message)?,
        on_message_length: key("_on_message_length", on_message_length)?,
        on_ping: key("on_ping", on_ping)?,
        on_pong: key("on_pong", on_pong)?,
        on_close: key("on_close", on_close)?,
        on_error: key("on_error", on_error)?,
        on_drain: key("on_drain", on_drain)?,
        on_closing: key("on_closing", on_closing)?,
    })
}

/// The Lua handle of `conn`.
pub fn userdata(lua: &Lua, conn: Connection) -> mlua::Result<AnyUserData> {
    userdata::create(lua, conn)
}
