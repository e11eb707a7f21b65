//! Options read from Lua tables, every one checked the same way:
//! `turbo_ws.listen: bad option 'port' (number expected, got string)`.

use std::time::Duration;

use mlua::{Table, Value};

use crate::binding::args;
use crate::engine::dial::Dial;
use crate::engine::limits::Limits;
use crate::engine::tls;

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
            crate::binding::args::type_name(got)
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

    /// Headers as a map `{name = value}` or a list `{{name, value}, ...}`,
    /// values kept as the bytes Lua gave (they are sent as given).
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

/// The limits: the defaults, overridden by the options present in `opts`.
pub fn limits(opts: &Opts) -> mlua::Result<Limits> {
    let d = Limits::default();
    const MAX: u64 = 1 << 40;
    let size = |key: &str, default: usize| -> mlua::Result<usize> {
        Ok(opts.integer(key, 1, MAX)?.map_or(default, |v| v as usize))
    };
    let max_message_size = size("max_message_size", d.max_message_size)?;
    Ok(Limits {
        max_message_size,
        max_frame_size: size("max_frame_size", max_message_size)?,
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

/// A TCP connect that takes longer than this fails (`connect_timeout`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A timeout option: its default when absent, none when 0.
pub(crate) fn timeout_or_default(
    opts: &Opts,
    key: &str,
    default: Duration,
) -> mlua::Result<Option<Duration>> {
    Ok(match opts.seconds(key)? {
        None => Some(default),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    })
}

/// How to reach the server: the `connect_timeout`, `tls` and `unix_socket` options.
pub(crate) fn dial(func: &str, opts: &Opts) -> mlua::Result<Dial> {
    Ok(Dial {
        connect_timeout: timeout_or_default(opts, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)?,
        tls: tls_options(func, opts)?,
        unix_socket: opts.string("unix_socket")?,
    })
}

/// The `tls` option: `{verify, ca_file, ca_path, cert_file, key_file}`.
fn tls_options(func: &str, opts: &Opts) -> mlua::Result<tls::ClientOptions> {
    let Some(table) = opts.table("tls")? else {
        return Ok(tls::ClientOptions { verify: true, ..Default::default() });
    };
    let o = Opts::new(func, Some(table));
    let identity = match (o.string("cert_file")?, o.string("key_file")?) {
        (Some(cert), Some(key)) => Some(tls::Identity { cert, key }),
        (None, None) => None,
        _ => return Err(args::misuse(func, "bad option 'tls' (cert_file and key_file go together)")),
    };
    Ok(tls::ClientOptions {
        verify: o.bool("verify")?.unwrap_or(true),
        ca_file: o.string("ca_file")?,
        ca_path: o.string("ca_path")?,
        identity,
    })
}

/// The `headers` option, each name and value checked as HTTP allows.
pub(crate) fn headers_option(func: &str, opts: &Opts) -> mlua::Result<HeaderFields> {
    let headers = opts.header_fields("headers")?;
    for (name, value) in &headers {
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(args::misuse(
                func,
                format!("bad option 'headers' ('{name}' is not a valid header name)"),
            ));
        }
        if http::HeaderValue::from_bytes(value).is_err() {
            return Err(args::misuse(func, format!("bad option 'headers' (bad value for '{name}')")));
        }
    }
    Ok(headers)
}
