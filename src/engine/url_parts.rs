//! A URL split into its parts exactly as written (RFC 3986 §3's generic
//! syntax), for the faces: each original API had its own quirks (case of
//! the scheme, an empty path, which ports it refused), and those are
//! decisions about parts, which a face can make once the core has split
//! and checked the string. `dial::Target` is the normalising parser the
//! clients connect with (the `url` crate); this one changes nothing.
//!
//! What is checked: no control character or space anywhere; a scheme is
//! a letter then letters, digits, `+`, `-`, `.`; a bracketed host is an
//! IPv6 address; a port is digits, at most 65535. An authority
//! (`//host`) is read only after a scheme, so a request target such as
//! `//a/b?c` or `*` is all path (as HTTP reads it).

use std::net::Ipv6Addr;

use crate::engine::error::{Error, Kind};

/// The parts of a URL, each a slice of the input; `None` when the URL
/// does not have that part at all.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: Option<&'a [u8]>,
    pub userinfo: Option<&'a [u8]>,
    /// Present when the URL has an authority (`scheme://...`), possibly
    /// empty; an IPv6 literal without its brackets.
    pub host: Option<&'a [u8]>,
    /// The digits as written, possibly empty (`host:`).
    pub port: Option<&'a [u8]>,
    /// Up to `?` or `#`; empty when the URL has no path.
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub fragment: Option<&'a [u8]>,
}

/// Splits `raw` into its parts, or says which part is wrong: a `BadUrl`
/// error whose detail is `character`, `scheme`, `host` or `port`.
pub fn split(raw: &[u8]) -> Result<UrlParts<'_>, Error> {
    if let Some(&c) = raw.iter().find(|&&c| c <= b' ' || c == 0x7f) {
        return Err(bad(raw, "character", format!("character 0x{c:02x} is not allowed")));
    }
    let mut parts = UrlParts::default();
    let (before_fragment, fragment) = cut(raw, b'#');
    parts.fragment = fragment;
    let (mut rest, query) = cut(before_fragment, b'?');
    parts.query = query;
    if let Some(colon) = rest.iter().position(|&c| c == b':') {
        if !rest[..colon].contains(&b'/') {
            let scheme = &rest[..colon];
            if !is_scheme(scheme) {
                return Err(bad(
                    raw,
                    "scheme",
                    "the scheme must be a letter followed by letters, digits, '+', '-' or '.'",
                ));
            }
            parts.scheme = Some(scheme);
            rest = &rest[colon + 1..];
            if let Some(after) = rest.strip_prefix(b"//") {
                let end = after.iter().position(|&c| c == b'/').unwrap_or(after.len());
                split_authority(raw, &after[..end], &mut parts)?;
                rest = &after[end..];
            }
        }
    }
    parts.path = rest;
    Ok(parts)
}

/// `userinfo@host:port`; the userinfo ends at the last `@`.
fn split_authority<'a>(raw: &[u8], authority: &'a [u8], parts: &mut UrlParts<'a>) -> Result<(), Error> {
    let host_port = match authority.iter().rposition(|&c| c == b'@') {
        Some(at) => {
            parts.userinfo = Some(&authority[..at]);
            &authority[at + 1..]
        }
        None => authority,
    };
    let (host, after_host) = if let Some(bracketed) = host_port.strip_prefix(b"[") {
        let close =
            bracketed.iter().position(|&c| c == b']').ok_or_else(|| bad(raw, "host", "'[' without ']'"))?;
        let literal = &bracketed[..close];
        if std::str::from_utf8(literal).ok().and_then(|s| s.parse::<Ipv6Addr>().ok()).is_none() {
            return Err(bad(raw, "host", "what is inside [ ] is not an IPv6 address"));
        }
        (literal, &bracketed[close + 1..])
    } else {
        let end = host_port.iter().position(|&c| c == b':').unwrap_or(host_port.len());
        if host_port[..end].iter().any(|&c| c == b'[' || c == b']') {
            return Err(bad(raw, "host", "'[' and ']' only enclose an IPv6 address"));
        }
        (&host_port[..end], &host_port[end..])
    };
    parts.host = Some(host);
    if after_host.is_empty() {
        return Ok(());
    }
    let digits = after_host.strip_prefix(b":").ok_or_else(|| bad(raw, "host", "junk after the host"))?;
    if !digits.iter().all(u8::is_ascii_digit) || port_value(digits) > 65535 {
        return Err(bad(raw, "port", "the port must be a number from 0 to 65535"));
    }
    parts.port = Some(digits);
    Ok(())
}

/// Whether `value` is a valid Host header field (RFC 7230 §5.4:
/// `uri-host [":" port]`): a name of RFC 3986's reg-name characters, an
/// IPv4 address or a bracketed IPv6 address, possibly empty; no userinfo,
/// no path; a port of digits up to 65535.
pub fn is_host_field(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&c);
    let mut parts = UrlParts::default();
    value.iter().all(|&c| allowed(c)) && split_authority(value, value, &mut parts).is_ok()
}

/// The value of a run of ASCII digits, saturating (any leading zeros).
fn port_value(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |n, &d| n.saturating_mul(10).saturating_add(u32::from(d - b'0')))
}

fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(c) if c.is_ascii_alphabetic())
        && s.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Before the first `sep`, and after it when there is one.
fn cut(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&c| c == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn bad(raw: &[u8], detail: &'static str, why: impl std::fmt::Display) -> Error {
    Error::new(Kind::BadUrl, format!("bad URL '{}': {why}", String::from_utf8_lossy(raw))).with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fields_are_an_authority_without_userinfo_or_path() {
        for good in
            ["example.com", "example.com:8080", "127.0.0.1:80", "[::1]", "[::1]:9000", "h:", "", " a.b "]
        {
            assert!(is_host_field(good.as_bytes()), "{good:?}");
        }
        for bad in ["a b", "[::1", "[zz]", "h:99999", "h:abc", "a/b", "u@h", "h:1:2", "a\tb", "é"] {
            assert!(!is_host_field(bad.as_bytes()), "{bad:?}");
        }
    }

    fn parts(raw: &str) -> UrlParts<'_> {
        split(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn detail(raw: &str) -> &'static str {
        let e = split(raw.as_bytes()).expect_err(raw);
        assert_eq!(e.kind, Kind::BadUrl);
        e.detail.expect("a detail")
    }

    #[test]
    fn every_part_as_written() {
        let p = parts("WSS://User:Pw@Example.COM:0443/A/%7e/../b?Q=1&x#Frag");
        assert_eq!(p.scheme, Some(&b"WSS"[..]));
        assert_eq!(p.userinfo, Some(&b"User:Pw"[..]));
        assert_eq!(p.host, Some(&b"Example.COM"[..]));
        assert_eq!(p.port, Some(&b"0443"[..]));
        assert_eq!(p.path, b"/A/%7e/../b");
        assert_eq!(p.query, Some(&b"Q=1&x"[..]));
        assert_eq!(p.fragment, Some(&b"Frag"[..]));
    }

    #[test]
    fn absent_and_empty_parts_differ() {
        let p = parts("ws://h");
        assert_eq!((p.userinfo, p.port, p.path, p.query, p.fragment), (None, None, &b""[..], None, None));
        let p = parts("ws://@h:?#");
        assert_eq!(p.userinfo, Some(&b""[..]));
        assert_eq!(p.port, Some(&b""[..]));
        assert_eq!((p.query, p.fragment), (Some(&b""[..]), Some(&b""[..])));
        assert_eq!(parts("ws://").host, Some(&b""[..]));
        assert_eq!(parts("ws:/x").host, None);
        assert_eq!(parts("h?v=6#a?b").query, Some(&b"v=6"[..]));
    }

    #[test]
    fn ipv6_literals_lose_their_brackets() {
        let p = parts("ws://[::ffff:127.0.0.1]:9000/x");
        assert_eq!(
            (p.host, p.port, p.path),
            (Some(&b"::ffff:127.0.0.1"[..]), Some(&b"9000"[..]), &b"/x"[..])
        );
        assert_eq!(parts("wss://[2001:db8::7]").host, Some(&b"2001:db8::7"[..]));
        for raw in ["ws://[::1/", "ws://[zz]/", "ws://[127.0.0.1]/", "ws://[::1]x", "ws://h[1]/"] {
            assert_eq!(detail(raw), "host", "{raw}");
        }
    }

    #[test]
    fn ports_are_digits_up_to_65535() {
        assert_eq!(parts("ws://h:65535").port, Some(&b"65535"[..]));
        assert_eq!(parts("ws://h:0").port, Some(&b"0"[..]));
        for raw in
            ["ws://h:abc/", "ws://h:80x", "ws://h:65536/", "ws://h:99999999999999999999/", "ws://h:1:2"]
        {
            assert_eq!(detail(raw), "port", "{raw}");
        }
    }

    #[test]
    fn without_a_scheme_it_is_all_path() {
        let p = parts("/ws/room1?user=bob#f");
        assert_eq!((p.scheme, p.host, p.path), (None, None, &b"/ws/room1"[..]));
        assert_eq!(parts("//a/b?c").path, b"//a/b");
        assert_eq!(parts("*").path, b"*");
        assert_eq!(parts("/a:b").path, b"/a:b");
        assert_eq!(parts(""), UrlParts::default());
    }

    #[test]
    fn refuses_controls_spaces_and_bad_schemes() {
        for raw in ["/a b", "ws://h/\n", "ws://h/\x7f", "\tws://h/"] {
            assert_eq!(detail(raw), "character", "{raw:?}");
        }
        for raw in ["1ws://h/", ":x", "w_s://h"] {
            assert_eq!(detail(raw), "scheme", "{raw}");
        }
        let e = split(b"ws://h:x").expect_err("bad port");
        assert!(e.message.contains("'ws://h:x'"), "{}", e.message);
    }

    /// The parts written back together, the way the faces rebuild URLs.
    fn joined(p: &UrlParts) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |prefix: &[u8], part: Option<&[u8]>, suffix: &[u8]| {
            if let Some(bytes) = part {
                out.extend_from_slice(prefix);
                out.extend_from_slice(bytes);
                out.extend_from_slice(suffix);
            }
        };
        put(b"", p.scheme, b":");
        if let Some(host) = p.host {
            put(b"//", p.userinfo.or(Some(b"")), if p.userinfo.is_some() { b"@" } else { b"" });
            let bracketed = host.contains(&b':');
            put(if bracketed { b"[" } else { b"" }, Some(host), if bracketed { b"]" } else { b"" });
            put(b":", p.port, b"");
        }
        put(b"", Some(p.path), b"");
        put(b"?", p.query, b"");
        put(b"#", p.fragment, b"");
        out
    }

    #[test]
    fn what_splits_joins_back_to_the_same_bytes_and_nothing_panics() {
        // Strings made of the characters that matter, from a fixed seed.
        let alphabet = b"ws:/?#@[]:.1a9f%+-\x00 \xff";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let (mut split_ok, mut refused) = (0, 0);
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 16) as usize;
            let raw: Vec<u8> =
                (0..len).map(|i| alphabet[((seed >> (i * 4 % 60)) as usize + i) % alphabet.len()]).collect();
            match split(&raw) {
                Ok(p) => {
                    split_ok += 1;
                    assert_eq!(joined(&p), raw, "{:?}", String::from_utf8_lossy(&raw));
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.detail.is_some());
                }
            }
        }
        assert!(split_ok > 1000 && refused > 1000, "{split_ok} split, {refused} refused");
        let p = parts("wss://u:p@[::1]:8443/a?b#c");
        assert_eq!(joined(&p), b"wss://u:p@[::1]:8443/a?b#c");
    }

    #[test]
    fn bytes_beyond_ascii_pass_as_they_are() {
        assert_eq!(parts("ws://h/\u{e9}\u{20ac}").path, "/\u{e9}\u{20ac}".as_bytes());
        assert_eq!(parts("ws://h/\u{e9}").host, Some(&b"h"[..]));
        assert_eq!(split(b"ws://h/\xff").map(|p| p.path).ok(), Some(&b"/\xff"[..]));
    }
}
