//! Unpredictable bytes for handshake keys and client masking keys (RFC 6455
//! §5.3 asks for masking keys from a strong entropy source), and fractions
//! for jitter (the pub/sub hub's reconnect delays). The OS source
//! is read in blocks so that masking a frame costs no system call.

use std::cell::RefCell;

const POOL: usize = 256;

struct Pool {
    bytes: [u8; POOL],
    used: usize,
}

// A per-thread cache of OS entropy, deliberately not host-context state:
// bytes drawn from it do not depend on who holds it, so it needs no
// owner. It is read per frame a client sends (its masking key), in the
// codec, which knows no host context; per thread, that costs no lock, no
// system call and no handle passed down every call. It holds no Lua
// values and its destructor only frees an array. What a cache of random
// bytes must not survive is a fork (parent and child would draw the same
// bytes): `engine::workers` calls `discard` in each new worker.
thread_local! {
    static POOL_BYTES: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], used: POOL }) };
}

/// Forgets the bytes not drawn yet, so the next draw reads the OS source
/// afresh. A forked child calls it: it must not repeat its parent's bytes.
pub fn discard() {
    POOL_BYTES.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.bytes = [0; POOL];
        pool.used = POOL;
    })
}

/// Fills `dest` with random bytes.
pub fn fill(dest: &mut [u8]) {
    POOL_BYTES.with(|pool| {
        let mut pool = pool.borrow_mut();
        for b in dest {
            if pool.used == POOL {
                refill(&mut pool.bytes);
                pool.used = 0;
            }
            *b = pool.bytes[pool.used];
            pool.used += 1;
        }
    })
}

/// A masking key for one client frame.
pub fn mask_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    fill(&mut key);
    key
}

/// A number in [0, 1), e.g. to spread reconnect delays (jitter).
pub fn fraction() -> f64 {
    let mut bytes = [0u8; 8];
    fill(&mut bytes);
    // The top 53 bits: every value an f64 in [0, 1) can hold evenly.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn refill(bytes: &mut [u8; POOL]) {
    if getrandom::fill(bytes).is_ok() {
        return;
    }
    // The OS source failed (it practically never does): derive bytes from
    // the clock and the previous pool rather than stop the program.
    use sha1::{Digest, Sha1};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    for (i, chunk) in bytes.chunks_mut(20).enumerate() {
        let mut sha = Sha1::new();
        sha.update(now.as_nanos().to_le_bytes());
        sha.update(i.to_le_bytes());
        sha.update(&*chunk);
        let digest = sha.finalize();
        let n = chunk.len();
        chunk.copy_from_slice(&digest[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused() -> usize {
        POOL_BYTES.with(|pool| POOL - pool.borrow().used)
    }

    #[test]
    fn discarding_forgets_the_bytes_not_drawn_yet() {
        discard();
        assert_eq!(unused(), 0);
        let _ = mask_key();
        assert_eq!(unused(), POOL - 4);
        discard();
        assert_eq!(unused(), 0);
        let _ = mask_key();
        assert_eq!(unused(), POOL - 4, "the next draw refills from the OS");
    }
}
