//! The HTTP/1.1 client: one request with hyper over a connection that
//! http_session.rs opens (or keeps from an earlier request), redirects
//! followed under redirect.rs's rules, the whole response handed to Lua.
//!
//! `turbo_ws.core.http_request(url, options, on_done)` returns at once;
//! later the loop calls `on_done(response)` or
//! `on_done(nil, kind, message[, response])`. Any status is a response;
//! only network and protocol faults are errors.

use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mlua::{Function, Lua, RegistryKey, Table, Value};

use crate::binding::answer;
use crate::binding::args;
use crate::binding::callback;
use crate::binding::http_session::{self, Conn, Session};
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::{self, Opts};
use crate::engine::answer::Answer;
use crate::engine::dial::{self, Dial, Family, Target};
use crate::engine::error::{Error, Kind};
use crate::engine::redirect::{self, Trail};

const F: &str = "turbo_ws.http_request";

/// Largest response body kept by default (after decompression).
const DEFAULT_MAX_BODY: usize = 64 << 20;
/// Request headers that describe the body: the body given decides them,
/// and they go when a redirect turns the request into a GET.
const BODY_HEADERS: [&str; 4] = ["content-length", "transfer-encoding", "content-type", "content-encoding"];

/// Everything a request needs, read from Lua before the task starts.
struct Params {
    target: Target,
    method: Method,
    version: Version,
    headers: Vec<(String, String)>,
    body: Bytes,
    dial: Dial,
    timeout: Option<Duration>,
    max_redirects: u32,
    max_body_size: usize,
    decompress: bool,
    /// Keeps connections open between requests.
    session: Option<Rc<Session>>,
}

/// One request as it goes out: what a redirect may change.
#[derive(Clone, Debug)]
struct Outgoing {
    target: Target,
    method: Method,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// A failure, with the response when the server answered.
type Failure = (Error, Option<Box<Answer>>);

fn read_params(target: Target, opts: &Opts) -> mlua::Result<Params> {
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
    let mut headers = opts::headers_option(F, opts)?;
    // The body given decides how it is framed.
    headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding")
    });
    Ok(Params {
        target,
        method,
        version,
        headers,
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
    let params = match Target::parse(&url, Family::Http) {
        Ok(target) => read_params(target, &opts)?,
        Err(err) => {
            lp.spawn(async move {
                report(&on_done, Err((err, None)));
                drop(alive);
            });
            return Ok(());
        }
    };
    lp.spawn(async move {
        let outcome = match params.timeout {
            Some(t) => tokio::time::timeout(t, fetch(&params)).await.unwrap_or_else(|_| {
                Err((Error::new(Kind::Timeout, format!("the request did not finish within {t:?}")), None))
            }),
            None => fetch(&params).await,
        };
        report(&on_done, outcome);
        drop(alive);
    });
    Ok(())
}

fn report(on_done: &RegistryKey, outcome: Result<Answer, Failure>) {
    let Some(lua) = ioloop::current().and_then(|lp| lp.lua()) else {
        return;
    };
    let call = || -> mlua::Result<()> {
        let func: Function = lua.registry_value(on_done)?;
        match outcome {
            Ok(answer) => {
                callback::call(&lua, "http_request callback", &func, answer::to_lua(&lua, &answer)?)
            }
            Err((err, answer)) => {
                let answer = match answer {
                    Some(a) => Value::Table(answer::to_lua(&lua, a.as_ref())?),
                    None => Value::Nil,
                };
                callback::call(
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

/// Sends the request and follows redirects; the final answer.
async fn fetch(p: &Params) -> Result<Answer, Failure> {
    let mut out = Outgoing {
        target: p.target.clone(),
        method: p.method.clone(),
        headers: p.headers.clone(),
        body: p.body.clone(),
    };
    let mut trail = Trail::new(&out.target.url);
    for redirects in 0..=p.max_redirects {
        let answer = exchange(&out, p).await.map_err(|e| (e, None))?;
        let location = answer.header("location").filter(|_| is_redirect(answer.status));
        match location {
            Some(loc) if redirects < p.max_redirects => {
                out = redirected(out, answer.status, &mut trail, &loc)
                    .map_err(|e| (e, Some(Box::new(answer))))?;
            }
            Some(_) if p.max_redirects > 0 => {
                let msg = format!("more than {} redirects", p.max_redirects);
                return Err((Error::new(Kind::Redirects, msg), Some(Box::new(answer))));
            }
            _ => return Ok(answer),
        }
    }
    Err((Error::new(Kind::Redirects, "too many redirects"), None))
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The request to send after a redirect: to the new target, with
/// credentials only on the same origin, and as a GET without a body after
/// a 303 (any method but HEAD) or a 301/302 answering a POST (what browsers
/// and curl do); 307 and 308 keep method and body.
fn redirected(mut out: Outgoing, status: u16, trail: &mut Trail, location: &str) -> Result<Outgoing, Error> {
    let (next, same_origin) = out.target.follow(trail, location)?;
    if !same_origin {
        // Credentials (and a Host of the program's) were meant for the first origin only.
        redirect::strip_credentials(&mut out.headers);
        out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
    }
    let becomes_get = (status == 303 && out.method != Method::HEAD)
        || (matches!(status, 301 | 302) && out.method == Method::POST);
    if becomes_get {
        out.method = Method::GET;
        out.body = Bytes::new();
        out.headers.retain(|(n, _)| !BODY_HEADERS.iter().any(|b| n.eq_ignore_ascii_case(b)));
    }
    out.target = next;
    Ok(out)
}

/// One request and its whole response: on the session's idle connection to
/// that origin if there is one, else on a new connection (kept in the
/// session afterwards, else closed).
async fn exchange(out: &Outgoing, p: &Params) -> Result<Answer, Error> {
    if let Some(session) = &p.session {
        if let Some(mut conn) = session.take(&out.target).await {
            match send(&mut conn, out, p).await {
                Ok(answer) => {
                    session.put(conn);
                    return Ok(answer);
                }
                // The server may close a kept connection just as it is
                // reused; then nothing was answered and a new one is tried.
                Err((e, Stage::Request)) if matches!(e.kind, Kind::NoResponse | Kind::Io) => {}
                Err((e, _)) => return Err(e),
            }
        }
    }
    let mut conn = Conn::open(&out.target, &p.dial).await?;
    let answer = send(&mut conn, out, p).await.map_err(|(e, _)| e)?;
    if let Some(session) = &p.session {
        session.put(conn);
    }
    Ok(answer)
}

/// Sends the request on `conn` and reads the whole answer; a failure says
/// at which stage it happened.
async fn send(conn: &mut Conn, out: &Outgoing, p: &Params) -> Result<Answer, (Error, Stage)> {
    let request = build_request(out, p).map_err(|e| (e, Stage::Handshake))?;
    let response = conn
        .sender
        .send_request(request)
        .await
        .map_err(|e| (hyper_error(&e, Stage::Request), Stage::Request))?;
    read_answer(response, &out.target.url, p).await.map_err(|e| (e, Stage::Body))
}

/// The request as hyper sends it: Host (unless the program gave one) and,
/// outside a session, `Connection: close`; then the program's headers.
fn build_request(out: &Outgoing, p: &Params) -> Result<Request<Full<Bytes>>, Error> {
    let path = if out.target.path.is_empty() { "/" } else { out.target.path.as_str() };
    let uri: http::Uri =
        path.parse().map_err(|e| Error::new(Kind::BadUrl, format!("cannot send path '{path}': {e}")))?;
    let mut req = Request::builder().method(out.method.clone()).uri(uri).version(p.version);
    let given = |name: &str| out.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        req = req.header(http::header::HOST, out.target.host_header());
    }
    if p.session.is_none() && !given("connection") {
        req = req.header(http::header::CONNECTION, "close");
    }
    if p.decompress && !given("accept-encoding") {
        req = req.header(http::header::ACCEPT_ENCODING, "gzip, deflate");
    }
    let mut req = req
        .body(Full::new(out.body.clone()))
        .map_err(|e| Error::new(Kind::BadUrl, format!("cannot build the request: {e}")))?;
    for (name, value) in &out.headers {
        // Checked when the options were read.
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            req.headers_mut().append(n, v);
        }
    }
    Ok(req)
}

/// The response head and its whole body (decoded when asked), bounded by
/// `max_body_size`.
async fn read_answer(
    response: hyper::Response<Incoming>,
    url: &url::Url,
    p: &Params,
) -> Result<Answer, Error> {
    let (head, mut body) = response.into_parts();
    let mut data: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_error(&e, Stage::Body))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > p.max_body_size {
                return Err(too_big(p.max_body_size));
            }
            data.extend_from_slice(&chunk);
        }
    }
    let encoding = head.headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    if p.decompress {
        if let Some(encoding) = encoding {
            data = decode(encoding, data, p.max_body_size)?;
        }
    }
    Ok(Answer {
        status: head.status.as_u16(),
        reason: reason(&head),
        version: version_name(head.version).to_owned(),
        headers: head.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect(),
        body: Some(data),
        url: url.to_string(),
    })
}

fn too_big(limit: usize) -> Error {
    Error::new(Kind::TooBig, format!("the response body is over max_body_size ({limit} bytes)"))
}

/// The reason phrase as the server sent it, else the status's usual one.
fn reason(head: &http::response::Parts) -> String {
    match head.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
        None => StatusCode::canonical_reason(&head.status).unwrap_or("").to_owned(),
    }
}

fn version_name(v: Version) -> &'static str {
    if v == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// Undoes a gzip or deflate Content-Encoding (others are left as they
/// are), never producing more than `limit` bytes.
fn decode(encoding: &str, data: Vec<u8>, limit: usize) -> Result<Vec<u8>, Error> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    let result = match encoding.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&data[..]).take(cap).read_to_end(&mut out),
        // RFC 9110 says zlib-wrapped; some servers send raw deflate.
        "deflate" => match flate2::read::ZlibDecoder::new(&data[..]).take(cap).read_to_end(&mut out) {
            Ok(n) => Ok(n),
            Err(_) => {
                out.clear();
                flate2::read::DeflateDecoder::new(&data[..]).take(cap).read_to_end(&mut out)
            }
        },
        _ => return Ok(data),
    };
    result.map_err(|e| Error::new(Kind::BadResponse, format!("cannot decode the {encoding} body: {e}")))?;
    if out.len() > limit {
        return Err(too_big(limit));
    }
    Ok(out)
}

/// Where a hyper failure happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stage {
    Handshake,
    /// Sending the request and reading the response head.
    Request,
    Body,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Handshake => "before sending the request",
            Stage::Request => "sending the request",
            Stage::Body => "reading the response body",
        }
    }
}

/// A hyper failure as an error kind: the server closed before answering,
/// an answer that is not HTTP, TLS, or another I/O fault.
pub(crate) fn hyper_error(e: &hyper::Error, stage: Stage) -> Error {
    let during = stage.describe();
    if e.is_parse_too_large() {
        return Error::new(Kind::TooBig, format!("the response head is too large ({e})"));
    }
    if e.is_parse() || e.is_parse_status() {
        return Error::new(Kind::BadResponse, format!("the answer is not HTTP: {e}"));
    }
    if let Some(io) = io_source(e) {
        if dial::is_tls_error(io) {
            return Error::new(Kind::Tls, format!("TLS failed {during}: {io}"));
        }
    }
    if e.is_incomplete_message() && stage == Stage::Request {
        return Error::new(Kind::NoResponse, "the server closed the connection without answering");
    }
    Error::new(Kind::Io, format!("{during}: {e}"))
}

/// The I/O error under a hyper error, if any.
fn io_source(e: &hyper::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(url: &str, method: Method) -> Outgoing {
        Outgoing {
            target: Target::parse(url, Family::Http).unwrap(),
            method,
            headers: vec![
                ("Authorization".into(), "Basic x".into()),
                ("Cookie".into(), "a=b".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("X-Kept".into(), "1".into()),
            ],
            body: Bytes::from_static(b"data"),
        }
    }

    fn names(out: &Outgoing) -> Vec<&str> {
        out.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn see_other_turns_into_a_get_without_body() {
        let out = outgoing("http://a/x", Method::PUT);
        let mut trail = Trail::new(&out.target.url);
        let next = redirected(out, 303, &mut trail, "/y").unwrap();
        assert_eq!((&next.method, next.body.len()), (&Method::GET, 0));
        assert_eq!(names(&next), ["Authorization", "Cookie", "X-Kept"]);
    }

    #[test]
    fn temporary_and_permanent_redirects_keep_method_and_body() {
        for status in [307, 308] {
            let out = outgoing("http://a/x", Method::POST);
            let next = redirected(out.clone(), status, &mut Trail::new(&out.target.url), "/y").unwrap();
            assert_eq!((next.method, &next.body[..]), (Method::POST, &b"data"[..]));
        }
        let out = outgoing("http://a/x", Method::PUT);
        let next = redirected(out.clone(), 302, &mut Trail::new(&out.target.url), "/y").unwrap();
        assert_eq!(next.method, Method::PUT, "only POST becomes GET on 301/302");
    }

    #[test]
    fn credentials_stay_on_their_origin() {
        let out = outgoing("http://a/x", Method::GET);
        let next =
            redirected(out, 302, &mut Trail::new(&url::Url::parse("http://a/x").unwrap()), "http://b/y")
                .unwrap();
        assert_eq!(names(&next), ["Content-Type", "X-Kept"]);
        assert_eq!(next.target.url.as_str(), "http://b/y");
    }

    #[test]
    fn https_never_redirects_to_http() {
        let out = outgoing("https://a/x", Method::GET);
        let err =
            redirected(out, 301, &mut Trail::new(&url::Url::parse("https://a/x").unwrap()), "http://a/x")
                .unwrap_err();
        assert_eq!(err.kind, Kind::InsecureRedirect);
    }

    #[test]
    fn decoding_is_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'a'; 10_000]).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(decode("gzip", packed.clone(), 10_000).unwrap().len(), 10_000);
        assert_eq!(decode("gzip", packed, 9_999).unwrap_err().kind, Kind::TooBig);
        assert_eq!(decode("br", b"raw".to_vec(), 10).unwrap(), b"raw");
        assert_eq!(decode("gzip", b"not gzip".to_vec(), 100).unwrap_err().kind, Kind::BadResponse);
    }
}
