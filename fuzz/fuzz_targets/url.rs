//! URL parsing, the Host header, and redirect resolution.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (url, location) = text.split_once('\n').unwrap_or((&text, "/"));
    turbo_ws::fuzz_api::url(url, location);
});
