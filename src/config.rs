//! Options read from Lua tables, and the per-connection limits with their
//! documented defaults. Every option is checked the same way:
//! `turbo_ws.listen: bad option 'port' (number expected, got string)`.

use std::time::Duration;

use mlua::{Table, Value};

/// Reads named fields of an optional options table, checking their types.
pub struct Opts<'a> {
    func: &'a str,
    table: Option<Table>,
}

impl<'a> Opts<'a> {
    pub fn new(func: &'a str, table: Option<Table>) -> Self {
        Opts { func, table }
    }

    fn bad(&self, key: &str, expected: &str, got: &Value) -> mlua::Error {
        mlua::Error::runtime(format!(
            "{}: bad option '{key}' ({expected} expected, got {})",
            self.func,
            crate::args::type_name(got)
        ))
    }

    pub fn value(&self, key: &str) -> mlua::Result<Value> {
        match &self.table {
            Some(t) => t.get(key),
            None => Ok(Value::Nil),
        }
    }

    pub fn string(&self, key: &str) -> mlua::Result<Option<String>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_str()?.to_owned())),
            other => Err(self.bad(key, "string", &other)),
        }
    }

    pub fn bool(&self, key: &str) -> mlua::Result<Option<bool>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::Boolean(b) => Ok(Some(b)),
            other => Err(self.bad(key, "boolean", &other)),
        }
    }

    pub fn table(&self, key: &str) -> mlua::Result<Option<Table>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::Table(t) => Ok(Some(t)),
            other => Err(self.bad(key, "table", &other)),
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> mlua::Result<Option<u64>> {
        let v = self.value(key)?;
        let x = match &v {
            Value::Nil => return Ok(None),
            Value::Integer(i) => *i as f64,
            Value::Number(x) => *x,
            _ => return Err(self.bad(key, "number", &v)),
        };
        if x.fract() != 0.0 || x < min as f64 || x > max as f64 {
            return Err(self.bad(key, &format!("whole number from {min} to {max}"), &v));
        }
        Ok(Some(x as u64))
    }

    /// A duration given in seconds (fractions allowed); 0 means "none".
    pub fn seconds(&self, key: &str) -> mlua::Result<Option<Duration>> {
        let v = self.value(key)?;
        let x = match &v {
            Value::Nil => return Ok(None),
            Value::Integer(i) => *i as f64,
            Value::Number(x) => *x,
            _ => return Err(self.bad(key, "number of seconds", &v)),
        };
        if !(0.0..=1.0e9).contains(&x) {
            return Err(self.bad(key, "number of seconds from 0 to 1e9", &v));
        }
        Ok(Some(Duration::from_secs_f64(x)))
    }

    /// A list of strings (e.g. subprotocols).
    pub fn strings(&self, key: &str) -> mlua::Result<Option<Vec<String>>> {
        match self.value(key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(vec![s.to_str()?.to_owned()])),
            Value::Table(t) => {
                let mut out = Vec::new();
                for v in t.sequence_values::<Value>() {
                    match v? {
                        Value::String(s) => out.push(s.to_str()?.to_owned()),
                        other => return Err(self.bad(key, "list of strings", &other)),
                    }
                }
                Ok(Some(out))
            }
            other => Err(self.bad(key, "string or list of strings", &other)),
        }
    }

    /// Headers as a map `{name = value}` or a list `{{name, value}, ...}`.
    pub fn headers(&self, key: &str) -> mlua::Result<Vec<(String, String)>> {
        Ok(self
            .header_fields(key)?
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    /// The same, values kept as the bytes Lua gave (a server sends them as given).
    pub fn header_fields(&self, key: &str) -> mlua::Result<HeaderFields> {
        match self.value(key)? {
            Value::Nil => Ok(Vec::new()),
            Value::Table(t) => header_fields_from_table(self.func, key, &t),
            other => Err(self.bad(key, "table of headers", &other)),
        }
    }
}

/// Header fields as Lua gave them: names, and values as bytes.
pub type HeaderFields = Vec<(String, Vec<u8>)>;

/// Reads `{name = value}` and/or `{{name, value}, ...}` into pairs; values
/// are the bytes of the Lua string (numbers as their text).
pub fn header_fields_from_table(func: &str, what: &str, t: &Table) -> mlua::Result<HeaderFields> {
    let bad = || {
        mlua::Error::runtime(format!(
            "{func}: bad {what} (expected {{name = value}} or {{{{name, value}}, ...}})"
        ))
    };
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        match (k, v) {
            (Value::Integer(_), Value::Table(p)) => {
                let name: Value = p.get(1)?;
                let value: Value = p.get(2)?;
                let name = String::from_utf8_lossy(&lua_bytes(&name).ok_or_else(bad)?).into_owned();
                out.push((name, lua_bytes(&value).ok_or_else(bad)?));
            }
            (Value::String(name), value) => {
                out.push((name.to_str()?.to_owned(), lua_bytes(&value).ok_or_else(bad)?));
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// A string's bytes, or a number's text.
fn lua_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(x) => Some(x.to_string().into_bytes()),
        _ => None,
    }
}

/// Limits of one connection. Defaults are documented in docs/core.md.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest incoming message (after reassembly); larger closes with 1009.
    pub max_message_size: usize,
    /// Largest incoming frame payload; larger closes with 1009.
    pub max_frame_size: usize,
    /// Bytes queued for sending above which `send` refuses more (a message
    /// into an empty queue is always taken, whatever its size).
    pub max_buffered: usize,
    /// Close with 1008 a connection whose peer does not read, the moment a
    /// send is refused for `max_buffered`, instead of only refusing it.
    pub close_slow_readers: bool,
    /// Bytes asked of the socket per read (more while a large frame is
    /// pending); held only while input is arriving.
    pub read_buffer_size: usize,
    /// How long `close()` waits for the peer's close frame / TCP close.
    pub close_timeout: Duration,
    /// Server: time to receive a complete request head (and TLS handshake).
    pub handshake_timeout: Duration,
    /// Server: largest plain-HTTP request body accepted.
    pub max_body_size: usize,
    /// Server: largest request head in bytes.
    pub max_header_size: usize,
    /// Server: most request headers.
    pub max_headers: usize,
    /// Send a ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Close with 1001 after this long without hearing from the peer.
    pub idle_timeout: Option<Duration>,
    /// Offer (client) or accept (server) permessage-deflate.
    pub permessage_deflate: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            // Per connection, so a thousand peers that never read cost 1 GiB
            // at most, not 64; see docs/core.md.
            max_buffered: 1 << 20,
            close_slow_readers: false,
            read_buffer_size: 64 << 10,
            close_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_body_size: 8 << 20,
            max_header_size: 64 << 10,
            max_headers: 100,
            ping_interval: None,
            idle_timeout: None,
            permessage_deflate: true,
        }
    }
}

impl Limits {
    /// The defaults, overridden by the options present in `opts`.
    pub fn from_opts(opts: &Opts) -> mlua::Result<Self> {
        let d = Limits::default();
        const MAX: u64 = 1 << 40;
        let size = |key: &str, default: usize| -> mlua::Result<usize> {
            Ok(opts.integer(key, 1, MAX)?.map_or(default, |v| v as usize))
        };
        Ok(Limits {
            max_message_size: size("max_message_size", d.max_message_size)?,
            max_frame_size: size("max_frame_size", d.max_frame_size)?,
            max_buffered: size("max_buffered", d.max_buffered)?,
            close_slow_readers: opts.bool("close_slow_readers")?.unwrap_or(d.close_slow_readers),
            read_buffer_size: opts
                .integer("read_buffer_size", 256, 16 << 20)?
                .map_or(d.read_buffer_size, |v| v as usize),
            close_timeout: opts.seconds("close_timeout")?.unwrap_or(d.close_timeout),
            handshake_timeout: opts.seconds("handshake_timeout")?.unwrap_or(d.handshake_timeout),
            max_body_size: opts.integer("max_body_size", 0, MAX)?.map_or(d.max_body_size, |v| v as usize),
            max_header_size: opts
                .integer("max_header_size", 8192, 16 << 20)?
                .map_or(d.max_header_size, |v| v as usize),
            max_headers: opts.integer("max_headers", 1, 10_000)?.map_or(d.max_headers, |v| v as usize),
            ping_interval: opts.seconds("ping_interval")?.filter(|d| !d.is_zero()),
            idle_timeout: opts.seconds("idle_timeout")?.filter(|d| !d.is_zero()),
            permessage_deflate: opts.bool("permessage_deflate")?.unwrap_or(d.permessage_deflate),
        })
    }
}
