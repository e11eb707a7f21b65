//! The HTTP client's connections: opening one (hyper's HTTP/1.1 client over
//! the stream dial.rs opens) and sessions (`core.http_session()`) that keep
//! one idle connection per origin between requests, so that a program's
//! next request to the same server skips DNS, TCP and TLS.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mlua::{Lua, Table, UserData, UserDataMethods, Value};

use crate::binding::args;
use crate::binding::http_client::{hyper_error, Stage};
use crate::engine::dial::{self, Dial, Target};
use crate::engine::error::Error;

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
    /// DNS, TCP, TLS and hyper's handshake (which sends nothing).
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

    fn close(&self) {
        self.closed.set(true);
        self.idle.borrow_mut().clear();
    }

    fn idle_count(&self) -> usize {
        self.idle.borrow().iter().filter(|c| !c.sender.is_closed()).count()
    }
}

/// A session as Lua holds it.
pub(crate) struct SessionHandle(pub Rc<Session>);

impl UserData for SessionHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("close", |_, this, ()| {
            this.0.close();
            Ok(())
        });
        methods.add_method("idle", |_, this, ()| Ok(this.0.idle_count()));
    }
}

/// The `session` option of `http_request`.
pub(crate) fn from_option(func: &str, v: Value) -> mlua::Result<Option<Rc<Session>>> {
    let bad = |got: &Value| {
        args::misuse(
            func,
            format!("bad option 'session' (http_session expected, got {})", args::type_name(got)),
        )
    };
    match v {
        Value::Nil => Ok(None),
        Value::UserData(ud) => match ud.borrow::<SessionHandle>() {
            Ok(handle) => Ok(Some(handle.0.clone())),
            Err(_) => Err(bad(&Value::UserData(ud.clone()))),
        },
        other => Err(bad(&other)),
    }
}

/// Registers `http_session` in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "http_session",
        lua.create_function(|lua, ()| lua.create_userdata(SessionHandle(Rc::new(Session::default()))))?,
    )?;
    Ok(())
}
