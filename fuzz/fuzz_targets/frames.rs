//! Bytes after the handshake, through the framing layer with our limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turbo_ws::fuzz_api::frames(data);
});
