//! Close codes and reasons as a Lua program may pass them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let code = u16::from_be_bytes([data[0], data[1]]);
        turbo_ws::fuzz_api::close_args(code, &String::from_utf8_lossy(&data[2..]));
    }
});
