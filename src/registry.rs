//! What is open — listeners and connections — so that a graceful shutdown
//! can reach them all: stop accepting, send close 1001 to every connection,
//! wait for them up to a timeout, then drop the rest.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ioloop::{Loop, LuaCall};

/// A connection as the registry sees it.
pub trait Closable {
    /// Starts the closing handshake with 1001 (going away).
    fn going_away(&self);
    /// Drops the connection now.
    fn abort(&self);
}

#[derive(Default)]
pub struct Registry {
    next_id: Cell<u64>,
    connections: RefCell<HashMap<u64, Weak<dyn Closable>>>,
    listeners: RefCell<HashMap<u64, Rc<Notify>>>,
    /// Woken when the last connection is gone.
    drained: Notify,
}

impl Registry {
    fn fresh_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }

    pub fn add_connection(&self, c: Weak<dyn Closable>) -> u64 {
        let id = self.fresh_id();
        self.connections.borrow_mut().insert(id, c);
        id
    }

    pub fn remove_connection(&self, id: u64) {
        let mut connections = self.connections.borrow_mut();
        connections.remove(&id);
        if connections.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Registers a listener's stop signal; returns its id.
    pub fn add_listener(&self, stop: Rc<Notify>) -> u64 {
        let id = self.fresh_id();
        self.listeners.borrow_mut().insert(id, stop);
        id
    }

    pub fn remove_listener(&self, id: u64) {
        self.listeners.borrow_mut().remove(&id);
    }

    pub fn open_connections(&self) -> usize {
        self.connections.borrow().len()
    }

    fn live_connections(&self) -> Vec<Rc<dyn Closable>> {
        self.connections.borrow().values().filter_map(Weak::upgrade).collect()
    }
}

/// Stops every listener, closes every connection with 1001, waits for them
/// up to `timeout`, aborts the rest, then calls `on_done`.
pub fn shutdown(lp: &'static Loop, timeout: Duration, on_done: Option<LuaCall>) {
    let registry = lp.registry();
    let listeners: Vec<Rc<Notify>> = registry.listeners.borrow_mut().drain().map(|(_, n)| n).collect();
    for stop in listeners {
        stop.notify_one();
    }
    for conn in registry.live_connections() {
        conn.going_away();
    }
    lp.spawn(async move {
        let registry = lp.registry();
        let wait = async {
            while registry.open_connections() > 0 {
                registry.drained.notified().await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            for conn in registry.live_connections() {
                conn.abort();
            }
        }
        if let (Some(call), Some(lua)) = (on_done, lp.lua()) {
            call.invoke(&lua, "shutdown callback");
        }
    });
}
