//! What is open — listeners and connections — so that a graceful shutdown
//! can reach them all: stop accepting, send close 1001 to every connection,
//! wait for them up to a timeout, then drop the rest (the loop does the
//! waiting: `binding::ioloop::shutdown`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use tokio::sync::Notify;

/// A connection as the registry sees it.
pub trait Closable {
    /// Starts the closing handshake with 1001 (going away).
    fn going_away(&self);
    /// Drops the connection now.
    fn abort(&self);
    /// Whether it keeps the loop's `run()` going: not while its reading is
    /// paused with nothing left to write (as a libuv stream that stopped
    /// reading: a luvit program done with a connection it never closed
    /// still ends).
    fn keeps_loop(&self) -> bool;
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

    /// How many open connections do not keep `run()` going (`keeps_loop`).
    pub fn quiet_connections(&self) -> usize {
        self.connections.borrow().values().filter_map(Weak::upgrade).filter(|c| !c.keeps_loop()).count()
    }

    fn live_connections(&self) -> Vec<Rc<dyn Closable>> {
        self.connections.borrow().values().filter_map(Weak::upgrade).collect()
    }

    /// The first step of a graceful shutdown: stops every listener and
    /// sends close 1001 on every connection.
    pub fn stop_all(&self) {
        let listeners: Vec<Rc<Notify>> = self.listeners.borrow_mut().drain().map(|(_, n)| n).collect();
        for stop in listeners {
            stop.notify_one();
        }
        for conn in self.live_connections() {
            conn.going_away();
        }
    }

    /// Waits until no connection is left.
    pub async fn drained(&self) {
        while self.open_connections() > 0 {
            self.drained.notified().await;
        }
    }

    /// Drops every connection still open.
    pub fn abort_all(&self) {
        for conn in self.live_connections() {
            conn.abort();
        }
    }
}
