//! Incoming messages copied straight into memory of the face's own, for
//! LuaJIT's FFI (lua/turbo_ws/message_copy.lua).
//!
//! A connection's `on_message` gets each message as a Lua string. The
//! evlua face hands its handlers a fresh `unsigned char[n+1]` instead
//! (`msg.buf`), so that string was only a step: the bytes were copied
//! into it, hashed and interned (a compare of every byte against an equal
//! string), copied again into the buffer, and for payloads not seen before
//! it was one more large object for the collector. With the internal
//! callback `_on_message_length(length, binary)` (connection.rs) the face
//! is called with the length only; during that call `copy_message`, a
//! plain C function, copies the message into the face's buffer: one copy,
//! no string.
//!
//! The message's bytes are borrowed for the call only: [`offer`] makes
//! them the loop's offered message while the callback runs and puts back
//! the one before (nothing, unless a loop ever runs nested), also when the
//! call unwinds. Outside that, or asked for another length,
//! `copy_message` copies nothing and answers 1; Lua never holds the
//! address.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{LightUserData, Lua, Table};

use crate::binding::ioloop;

/// Where a loop keeps the message it offers: address and length.
type Slot = Cell<Option<(*const u8, usize)>>;

/// Puts the previous offered message back when the call is over (also
/// when it unwinds).
struct Restore<'a>(&'a Slot, Option<(*const u8, usize)>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Runs `call` with `data` as the message `copy_message` copies from.
pub fn offer<R>(lp: &ioloop::Loop, data: &[u8], call: impl FnOnce() -> R) -> R {
    offer_in(lp.offered_message(), data, call)
}

fn offer_in<R>(slot: &Slot, data: &[u8], call: impl FnOnce() -> R) -> R {
    let outer = slot.replace(Some((data.as_ptr(), data.len())));
    let _restore = Restore(slot, outer);
    call()
}

/// Copies the message offered by this thread's loop, which must be `len`
/// bytes long, to `dst`. Returns 0 when copied, 1 when there was nothing
/// to copy (no message being handed to Lua, another length, a null `dst`,
/// a caught panic).
///
/// # Safety
/// `dst` points at `len` writable bytes (an FFI buffer the caller holds
/// for the call).
unsafe extern "C" fn copy_message(dst: *mut u8, len: usize) -> c_int {
    // No unwinding may cross the C boundary; a panic becomes "not copied".
    let copied = catch_unwind(AssertUnwindSafe(|| {
        let offered = ioloop::current().and_then(|lp| lp.offered_message().get());
        // SAFETY: the caller's promise, passed on.
        unsafe { copy_from(offered, dst, len) }
    }));
    match copied {
        Ok(true) => 0,
        _ => 1,
    }
}

/// Copies `offered` to `dst` if it is `len` bytes long; whether it did.
///
/// # Safety
/// As [`copy_message`]; `offered` is a message borrowed for a call still
/// running.
unsafe fn copy_from(offered: Option<(*const u8, usize)>, dst: *mut u8, len: usize) -> bool {
    let Some((src, n)) = offered else { return false };
    if n != len || (dst.is_null() && len > 0) {
        return false;
    }
    if len > 0 {
        // SAFETY: `src` is the message `offer` borrows for the call still
        // running; `dst` holds `len` bytes (the caller's promise); a Lua
        // buffer cannot overlap the engine's read buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    }
    true
}

/// Adds `core._copy_entry`, the address of [`copy_message`], for the faces.
pub fn register(_lua: &Lua, core: &Table) -> mlua::Result<()> {
    let entry: unsafe extern "C" fn(*mut u8, usize) -> c_int = copy_message;
    core.set("_copy_entry", LightUserData(entry as *mut c_void))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(slot: &Slot, dst: &mut [u8], len: usize) -> c_int {
        // SAFETY: `dst` holds at least `len` bytes in every call below.
        c_int::from(!unsafe { copy_from(slot.get(), dst.as_mut_ptr(), len) })
    }

    #[test]
    fn copies_only_while_offered_and_only_the_whole_message() {
        let slot = Slot::default();
        let mut out = [0u8; 5];
        assert_eq!(copy(&slot, &mut out, 5), 1, "nothing offered");
        offer_in(&slot, b"hello", || {
            assert_eq!(copy(&slot, &mut out, 4), 1, "another length");
            assert_eq!(out, [0; 5]);
            assert_eq!(copy(&slot, &mut out, 5), 0);
        });
        assert_eq!(&out, b"hello");
        assert_eq!(copy(&slot, &mut out, 5), 1, "the call is over");
    }

    #[test]
    fn a_nested_message_is_current_only_during_its_own_call() {
        let slot = Slot::default();
        let mut out = [0u8; 3];
        offer_in(&slot, b"abc", || {
            offer_in(&slot, b"xy", || {
                assert_eq!(copy(&slot, &mut out, 2), 0);
            });
            assert_eq!(copy(&slot, &mut out, 3), 0);
        });
        assert_eq!(&out, b"abc");
    }

    #[test]
    fn an_empty_message_copies_nothing_and_succeeds() {
        let slot = Slot::default();
        offer_in(&slot, b"", || {
            // SAFETY: nothing is written for length 0, null included.
            assert!(unsafe { copy_from(slot.get(), std::ptr::null_mut(), 0) });
        });
    }

    #[test]
    fn the_outer_message_is_back_after_a_panicking_call() {
        let slot = Slot::default();
        let mut out = [0u8; 2];
        offer_in(&slot, b"ok", || {
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                offer_in(&slot, b"boom", || panic!("in a callback"))
            }));
            assert!(r.is_err());
            assert_eq!(copy(&slot, &mut out, 2), 0);
        });
        assert_eq!(&out, b"ok");
    }
}
