//! The opening-handshake checks on arbitrary methods and headers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // method \n name: value \n name: value ...
    let mut lines = data.split(|b| *b == b'\n');
    let method = lines.next().unwrap_or_default();
    let headers: Vec<(&[u8], &[u8])> = lines
        .filter_map(|l| {
            let i = l.iter().position(|b| *b == b':')?;
            Some((&l[..i], &l[i + 1..]))
        })
        .collect();
    turbo_ws::fuzz_api::handshake(method, &headers);
});
