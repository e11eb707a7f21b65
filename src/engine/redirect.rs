//! Following redirects safely, for every client (WebSocket and HTTP): where
//! a 3xx `Location` leads, whether it may be followed at all, and whether
//! the request's credentials may go along.
//!
//! The rules are those of curl, Python requests and browsers:
//! - a redirect from a secure scheme (`wss`, `https`) to a plain one
//!   (`ws`, `http`) is refused, so TLS is never silently dropped;
//! - on a redirect to another origin (scheme family, host or port differs)
//!   `Authorization`, `Proxy-Authorization` and `Cookie` are dropped;
//! - a location already visited is a loop, refused at once; the caller's
//!   redirect limit bounds everything else.

use url::Url;

use crate::engine::error::{Error, Kind};

/// Whether a status is a redirect a client follows: 301, 302, 303, 307
/// and 308. 300 (a choice for the user), 304 (not modified) and 305/306
/// (proxy, unused) carry no place to go, even with a `Location`.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Request headers that carry credentials, dropped on a cross-origin hop.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Whether a scheme runs over TLS.
fn is_secure(scheme: &str) -> bool {
    matches!(scheme, "wss" | "https")
}

/// Whether two URLs share an origin. `ws` and `http` (and `wss` and
/// `https`) count as one scheme: a WebSocket server may redirect with
/// either spelling and both reach the same server.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    is_secure(a.scheme()) == is_secure(b.scheme())
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Drops the credential headers from a header list.
pub fn strip_credentials<V>(headers: &mut Vec<(String, V)>) {
    headers.retain(|(name, _)| !CREDENTIAL_HEADERS.iter().any(|c| name.eq_ignore_ascii_case(c)));
}

/// One hop: the URL to go to, and whether it is on the same origin.
#[derive(Debug)]
pub struct Hop {
    pub url: Url,
    pub same_origin: bool,
}

/// The redirects followed so far by one request.
#[derive(Debug)]
pub struct Trail {
    visited: Vec<Url>,
}

impl Trail {
    /// A trail starting at the URL first asked for.
    pub fn new(start: &Url) -> Trail {
        Trail { visited: vec![start.clone()] }
    }

    /// Resolves `location` against `from` and checks that it may be followed.
    pub fn follow(&mut self, from: &Url, location: &str) -> Result<Hop, Error> {
        let url = from
            .join(location)
            .map_err(|e| Error::new(Kind::BadUrl, format!("bad redirect location '{location}': {e}")))?;
        if is_secure(from.scheme()) && !is_secure(url.scheme()) {
            return Err(Error::new(
                Kind::InsecureRedirect,
                format!(
                    "refused to follow a redirect from {} to {}: it would leave TLS",
                    shown(from),
                    shown(&url)
                ),
            ));
        }
        if self.visited.iter().any(|seen| loop_key(seen) == loop_key(&url)) {
            return Err(Error::new(
                Kind::Redirects,
                format!("redirect loop: {} was already visited", shown(&url)),
            ));
        }
        self.visited.push(url.clone());
        Ok(Hop { same_origin: same_origin(from, &url), url })
    }
}

/// A URL as an error message shows it: without user name and password
/// (messages end up in logs; the credentials are never sent anyway).
fn shown(url: &Url) -> Url {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

/// What makes two locations the same place for loop detection: the URL
/// without its fragment and user info (never sent), http and ws (https
/// and wss) alike, since a WebSocket client follows an http:// location
/// as ws://.
fn loop_key(url: &Url) -> String {
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => other,
    };
    format!("{scheme}://{}", &url[url::Position::BeforeHost..url::Position::AfterQuery])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn relative_locations_resolve_against_the_current_url() {
        let mut trail = Trail::new(&url("ws://a/x"));
        let hop = trail.follow(&url("ws://a/x"), "/y?z").unwrap();
        assert_eq!(hop.url.as_str(), "ws://a/y?z");
        assert!(hop.same_origin);
    }

    #[test]
    fn origin_is_scheme_family_host_and_port() {
        assert!(same_origin(&url("ws://a/"), &url("http://a:80/p")));
        assert!(same_origin(&url("wss://A/"), &url("https://a/")));
        assert!(!same_origin(&url("ws://a/"), &url("ws://b/")));
        assert!(!same_origin(&url("ws://a/"), &url("ws://a:8080/")));
        assert!(!same_origin(&url("ws://a/"), &url("wss://a/")));
    }

    #[test]
    fn leaving_tls_is_refused_and_entering_it_is_not() {
        let mut trail = Trail::new(&url("wss://a/"));
        for target in ["ws://b/", "http://a/", "ws://a:443/"] {
            let err = trail.follow(&url("wss://a/"), target).unwrap_err();
            assert_eq!(err.kind, Kind::InsecureRedirect, "{target}");
        }
        let hop = Trail::new(&url("ws://a/")).follow(&url("ws://a/"), "wss://a/").unwrap();
        assert!(!hop.same_origin);
    }

    #[test]
    fn a_location_seen_before_is_a_loop() {
        let start = url("ws://a/1");
        let mut trail = Trail::new(&start);
        let hop = trail.follow(&start, "/2").unwrap();
        assert_eq!(trail.follow(&hop.url, "/1#frag").unwrap_err().kind, Kind::Redirects);
        // http:// is followed as ws://: back to the start at once is a loop.
        let err = Trail::new(&start).follow(&start, "http://a/1").unwrap_err();
        assert_eq!(err.kind, Kind::Redirects);
        assert!(err.message.contains("http://a/1"), "{}", err.message);
        assert!(Trail::new(&start).follow(&start, "http://a/2").is_ok());
    }

    #[test]
    fn error_messages_show_no_credentials_of_a_location() {
        let start = url("ws://a/1");
        let err = Trail::new(&start).follow(&start, "http://user:secret@a/1").unwrap_err();
        assert_eq!(err.kind, Kind::Redirects);
        assert!(!err.message.contains("secret") && !err.message.contains("user"), "{}", err.message);
        let err = Trail::new(&url("wss://a/")).follow(&url("wss://a/"), "ws://user:secret@b/").unwrap_err();
        assert!(!err.message.contains("secret") && err.message.contains("ws://b/"), "{}", err.message);
    }

    #[test]
    fn credentials_are_stripped_by_name_in_any_case() {
        let mut headers = vec![
            ("Authorization".to_owned(), "Basic x".to_owned()),
            ("COOKIE".to_owned(), "a=b".to_owned()),
            ("proxy-authorization".to_owned(), "x".to_owned()),
            ("X-Other".to_owned(), "kept".to_owned()),
        ];
        strip_credentials(&mut headers);
        assert_eq!(headers, vec![("X-Other".to_owned(), "kept".to_owned())]);
    }
}
