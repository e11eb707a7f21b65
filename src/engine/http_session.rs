//! The HTTP client's connections: opening one (hyper's HTTP/1.1 client over
//! the stream dial.rs opens), sessions that keep one idle connection per
//! origin between requests, so that a program's next request to the same
//! server skips DNS, TCP and TLS, and hyper's failures as error kinds.
//! `http_client.rs` sends requests over these; `binding::http_session`
//! gives Lua a session as userdata.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::engine::dial::{self, Dial, Target};
use crate::engine::error::{Error, Kind};

/// Largest response head.
const MAX_HEAD: usize = 64 << 10;

/// TLS or not, host and port.
type Origin = (bool, String, u16);

/// One HTTP/1.1 connection. Dropping it closes the socket.
pub(crate) struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    /// The task driving the connection (reading, writing, keep-alive).
    driver: tokio::task::JoinHandle<()>,
    origin: Origin,
}

impl Conn {
    /// DNS, TCP, TLS and hyper's handshake (which sends nothing). Runs on
    /// a `LocalSet`: the connection's driver is a local task.
    pub(crate) async fn open(target: &Target, dial: &Dial) -> Result<Conn, Error> {
        let stream = dial::open_stream(target, dial).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .max_buf_size(MAX_HEAD)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_error(&e, Stage::Handshake))?;
        let driver = tokio::task::spawn_local(async move {
            // Its errors reach the request being sent; idle ones only end it.
            let _ = conn.await;
        });
        Ok(Conn { sender, driver, origin: target.origin() })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Idle connections kept for later requests, one per origin.
#[derive(Default)]
pub(crate) struct Session {
    idle: RefCell<Vec<Conn>>,
    closed: Cell<bool>,
}

impl Session {
    /// The idle connection to `target`'s origin, if the server kept it open.
    pub(crate) async fn take(&self, target: &Target) -> Option<Conn> {
        let origin = target.origin();
        let found = {
            let mut idle = self.idle.borrow_mut();
            let at = idle.iter().position(|c| c.origin == origin)?;
            idle.swap_remove(at)
        };
        let mut conn = found;
        // Fails at once when the server closed it meanwhile.
        conn.sender.ready().await.ok()?;
        Some(conn)
    }

    /// Keeps `conn` for the next request to its origin (replacing an older
    /// one), unless the session is closed or the server closed it.
    pub(crate) fn put(&self, conn: Conn) {
        if self.closed.get() || conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        idle.retain(|c| c.origin != conn.origin);
        idle.push(conn);
    }

    /// Drops the idle connections and keeps no more.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.idle.borrow_mut().clear();
    }

    /// How many kept connections the servers have not closed.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.borrow().iter().filter(|c| !c.sender.is_closed()).count()
    }
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
