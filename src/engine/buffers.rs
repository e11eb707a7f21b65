//! Buffers lent to connections while they hold bytes: a busy connection
//! does not allocate per message, and an idle one holds none. One small
//! pool per thread (connections live on the loop's thread): a connection
//! takes a buffer when it has bytes to hold and gives it back when it runs
//! empty.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept at most; more given back are freed.
const KEEP: usize = 32;
/// Buffers with more capacity than this are freed, not kept.
const MAX_KEPT_CAPACITY: usize = 256 << 10;

// A per-thread cache, deliberately not host-context state (the host
// context, `binding::ioloop::Loop`, owns what a program can observe:
// the loop, timers, registry, signal handlers, pub/sub). This pool holds
// only emptied memory: which pool lends a buffer changes nothing anyone
// can see, so it needs no owner. It is taken and given back on every
// burst of messages, deep in the codec and the connection driver, which
// know no host context; a thread-local costs one TLS lookup there, where
// a handle to an owner would have to be passed down every per-message
// call. All connections of a loop run on the loop's one thread (tokio
// current-thread runtime with a `LocalSet`), so per thread is per loop.
// At thread exit its destructor only frees memory (no runtime, no Lua
// values), so it need not be leaked like the loop.
thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub fn take(capacity: usize) -> BytesMut {
    let mut buf = POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_default();
    buf.reserve(capacity);
    buf
}

/// Gives an emptied buffer back (its contents are dropped).
pub fn give_back(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_lent_again_empty_with_its_room() {
        let mut buf = take(1000);
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        give_back(buf);
        let again = take(10);
        assert!(again.is_empty());
        assert!(again.capacity() >= 1000);
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn large_buffers_are_freed_not_kept() {
        give_back(BytesMut::with_capacity(MAX_KEPT_CAPACITY * 2));
        assert!(take(1).capacity() <= MAX_KEPT_CAPACITY);
    }
}
