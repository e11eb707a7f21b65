//! The HTTP/1.1 client, without Lua: one request with hyper over a
//! connection that http_session.rs opens (or keeps from an earlier
//! request), redirects followed under redirect.rs's rules, the whole
//! response (decoded when asked, bounded in size) returned as an `Answer`.
//! Any status is an answer; only network and protocol faults are errors,
//! each with its kind. `binding::http_client` reads the Lua options into a
//! `Request` and hands the outcome to the program's callback.

use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::engine::answer::Answer;
use crate::engine::dial::{Dial, Target};
use crate::engine::error::{Error, Kind};
use crate::engine::http_session::{hyper_error, Conn, Session, Stage};
use crate::engine::redirect::{self, Trail};

/// Largest response body kept by default (after decompression).
pub(crate) const DEFAULT_MAX_BODY: usize = 64 << 20;
/// Request headers that describe the body: the body given decides them,
/// and they go when a redirect turns the request into a GET.
const BODY_HEADERS: [&str; 4] = ["content-length", "transfer-encoding", "content-type", "content-encoding"];

/// One request as the program asked for it.
pub(crate) struct Request {
    pub target: Target,
    pub method: Method,
    pub version: Version,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    pub dial: Dial,
    /// For the whole request: redirects and body included.
    pub timeout: Option<Duration>,
    pub max_redirects: u32,
    pub max_body_size: usize,
    /// Ask for gzip/deflate and undo the Content-Encoding.
    pub decompress: bool,
    /// Keeps connections open between requests.
    pub session: Option<Rc<Session>>,
}

/// One request as it goes out: what a redirect may change.
#[derive(Clone, Debug)]
struct Outgoing {
    target: Target,
    method: Method,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
}

/// A failure, with the response when the server answered.
pub(crate) type Failure = (Error, Option<Box<Answer>>);

/// Sends the request, follows redirects and reads the final answer, all
/// within the request's timeout. Runs on a `LocalSet` (connections are
/// driven by local tasks).
pub(crate) async fn request(req: &Request) -> Result<Answer, Failure> {
    match req.timeout {
        Some(t) => tokio::time::timeout(t, fetch(req)).await.unwrap_or_else(|_| {
            Err((Error::new(Kind::Timeout, format!("the request did not finish within {t:?}")), None))
        }),
        None => fetch(req).await,
    }
}

/// Sends the request and follows redirects; the final answer.
async fn fetch(p: &Request) -> Result<Answer, Failure> {
    let mut headers = p.headers.clone();
    // The body given decides how it is framed.
    headers.retain(|(n, _)| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding")
    });
    let mut out =
        Outgoing { target: p.target.clone(), method: p.method.clone(), headers, body: p.body.clone() };
    let mut trail = Trail::new(&out.target.url);
    for redirects in 0..=p.max_redirects {
        let answer = exchange(&out, p).await.map_err(|e| (e, None))?;
        let location = answer.header("location").filter(|_| redirect::is_redirect(answer.status));
        match location {
            Some(loc) if redirects < p.max_redirects => {
                out = redirected(out, answer.status, &mut trail, &loc)
                    .map_err(|e| (e, Some(Box::new(answer))))?;
            }
            Some(_) if p.max_redirects > 0 => {
                let msg = format!("more than {} redirects", p.max_redirects);
                return Err((Error::new(Kind::Redirects, msg), Some(Box::new(answer))));
            }
            _ => return Ok(answer),
        }
    }
    Err((Error::new(Kind::Redirects, "too many redirects"), None))
}

/// The request to send after a redirect: to the new target, with
/// credentials only on the same origin, and as a GET without a body after
/// a 303 (any method but HEAD) or a 301/302 answering a POST (what browsers
/// and curl do); 307 and 308 keep method and body.
fn redirected(mut out: Outgoing, status: u16, trail: &mut Trail, location: &str) -> Result<Outgoing, Error> {
    let (next, same_origin) = out.target.follow(trail, location)?;
    if !same_origin {
        // Credentials (and a Host of the program's) were meant for the first origin only.
        redirect::strip_credentials(&mut out.headers);
        out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
    }
    let becomes_get = (status == 303 && out.method != Method::HEAD)
        || (matches!(status, 301 | 302) && out.method == Method::POST);
    if becomes_get {
        out.method = Method::GET;
        out.body = Bytes::new();
        out.headers.retain(|(n, _)| !BODY_HEADERS.iter().any(|b| n.eq_ignore_ascii_case(b)));
    }
    out.target = next;
    Ok(out)
}

/// One request and its whole response: on the session's idle connection to
/// that origin if there is one, else on a new connection (kept in the
/// session afterwards, else closed).
async fn exchange(out: &Outgoing, p: &Request) -> Result<Answer, Error> {
    if let Some(session) = &p.session {
        if let Some(mut conn) = session.take(&out.target).await {
            match send(&mut conn, out, p).await {
                Ok(answer) => {
                    session.put(conn);
                    return Ok(answer);
                }
                // The server may close a kept connection just as it is
                // reused; then nothing was answered and a new one is tried.
                Err((e, Stage::Request)) if matches!(e.kind, Kind::NoResponse | Kind::Io) => {}
                Err((e, _)) => return Err(e),
            }
        }
    }
    let mut conn = Conn::open(&out.target, &p.dial).await?;
    let answer = send(&mut conn, out, p).await.map_err(|(e, _)| e)?;
    if let Some(session) = &p.session {
        session.put(conn);
    }
    Ok(answer)
}

/// Sends the request on `conn` and reads the whole answer; a failure says
/// at which stage it happened.
async fn send(conn: &mut Conn, out: &Outgoing, p: &Request) -> Result<Answer, (Error, Stage)> {
    let request = build_request(out, p).map_err(|e| (e, Stage::Handshake))?;
    let response = conn
        .sender
        .send_request(request)
        .await
        .map_err(|e| (hyper_error(&e, Stage::Request), Stage::Request))?;
    read_answer(response, &out.target.url, p).await.map_err(|e| (e, Stage::Body))
}

/// The request as hyper sends it: Host (unless the program gave one) and,
/// outside a session, `Connection: close`; then the program's headers.
fn build_request(out: &Outgoing, p: &Request) -> Result<http::Request<Full<Bytes>>, Error> {
    let path = if out.target.path.is_empty() { "/" } else { out.target.path.as_str() };
    let uri: http::Uri =
        path.parse().map_err(|e| Error::new(Kind::BadUrl, format!("cannot send path '{path}': {e}")))?;
    let mut req = http::Request::builder().method(out.method.clone()).uri(uri).version(p.version);
    let given = |name: &str| out.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        req = req.header(http::header::HOST, out.target.host_header());
    }
    if p.session.is_none() && !given("connection") {
        req = req.header(http::header::CONNECTION, "close");
    }
    if p.decompress && !given("accept-encoding") {
        req = req.header(http::header::ACCEPT_ENCODING, "gzip, deflate");
    }
    let mut req = req
        .body(Full::new(out.body.clone()))
        .map_err(|e| Error::new(Kind::BadUrl, format!("cannot build the request: {e}")))?;
    for (name, value) in &out.headers {
        // Checked when the options were read.
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            req.headers_mut().append(n, v);
        }
    }
    Ok(req)
}

/// The response head and its whole body (decoded when asked), bounded by
/// `max_body_size`.
async fn read_answer(
    response: hyper::Response<Incoming>,
    url: &url::Url,
    p: &Request,
) -> Result<Answer, Error> {
    let (head, mut body) = response.into_parts();
    let mut data: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_error(&e, Stage::Body))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > p.max_body_size {
                return Err(too_big(p.max_body_size));
            }
            data.extend_from_slice(&chunk);
        }
    }
    let encoding = head.headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    if p.decompress {
        if let Some(encoding) = encoding {
            data = decode(encoding, data, p.max_body_size)?;
        }
    }
    Ok(Answer {
        status: head.status.as_u16(),
        reason: reason(&head),
        version: version_name(head.version).to_owned(),
        headers: head.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect(),
        body: Some(data),
        url: url.to_string(),
    })
}

fn too_big(limit: usize) -> Error {
    Error::new(Kind::TooBig, format!("the response body is over max_body_size ({limit} bytes)"))
}

/// The reason phrase as the server sent it, else the status's usual one.
fn reason(head: &http::response::Parts) -> String {
    match head.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
        None => StatusCode::canonical_reason(&head.status).unwrap_or("").to_owned(),
    }
}

fn version_name(v: Version) -> &'static str {
    if v == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// Undoes a gzip or deflate Content-Encoding (others are left as they
/// are), never producing more than `limit` bytes.
fn decode(encoding: &str, data: Vec<u8>, limit: usize) -> Result<Vec<u8>, Error> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    let result = match encoding.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&data[..]).take(cap).read_to_end(&mut out),
        // RFC 9110 says zlib-wrapped; some servers send raw deflate.
        "deflate" => match flate2::read::ZlibDecoder::new(&data[..]).take(cap).read_to_end(&mut out) {
            Ok(n) => Ok(n),
            Err(_) => {
                out.clear();
                flate2::read::DeflateDecoder::new(&data[..]).take(cap).read_to_end(&mut out)
            }
        },
        _ => return Ok(data),
    };
    result.map_err(|e| Error::new(Kind::BadResponse, format!("cannot decode the {encoding} body: {e}")))?;
    if out.len() > limit {
        return Err(too_big(limit));
    }
    Ok(out)
}

/// The client on its own, no Lua: the redirect rules and body decoding,
/// and whole requests against a raw HTTP peer written here.
#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::LocalSet;

    use super::*;
    use crate::engine::dial::Family;

    fn outgoing(url: &str, method: Method) -> Outgoing {
        Outgoing {
            target: Target::parse(url, Family::Http).unwrap(),
            method,
            headers: vec![
                ("Authorization".into(), "Basic x".into()),
                ("Cookie".into(), "a=b".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("X-Kept".into(), "1".into()),
            ],
            body: Bytes::from_static(b"data"),
        }
    }

    fn names(out: &Outgoing) -> Vec<&str> {
        out.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn see_other_turns_into_a_get_without_body() {
        let out = outgoing("http://a/x", Method::PUT);
        let mut trail = Trail::new(&out.target.url);
        let next = redirected(out, 303, &mut trail, "/y").unwrap();
        assert_eq!((&next.method, next.body.len()), (&Method::GET, 0));
        assert_eq!(names(&next), ["Authorization", "Cookie", "X-Kept"]);
    }

    #[test]
    fn temporary_and_permanent_redirects_keep_method_and_body() {
        for status in [307, 308] {
            let out = outgoing("http://a/x", Method::POST);
            let next = redirected(out.clone(), status, &mut Trail::new(&out.target.url), "/y").unwrap();
            assert_eq!((next.method, &next.body[..]), (Method::POST, &b"data"[..]));
        }
        let out = outgoing("http://a/x", Method::PUT);
        let next = redirected(out.clone(), 302, &mut Trail::new(&out.target.url), "/y").unwrap();
        assert_eq!(next.method, Method::PUT, "only POST becomes GET on 301/302");
    }

    #[test]
    fn credentials_stay_on_their_origin() {
        let out = outgoing("http://a/x", Method::GET);
        let next =
            redirected(out, 302, &mut Trail::new(&url::Url::parse("http://a/x").unwrap()), "http://b/y")
                .unwrap();
        assert_eq!(names(&next), ["Content-Type", "X-Kept"]);
        assert_eq!(next.target.url.as_str(), "http://b/y");
    }

    #[test]
    fn https_never_redirects_to_http() {
        let out = outgoing("https://a/x", Method::GET);
        let err =
            redirected(out, 301, &mut Trail::new(&url::Url::parse("https://a/x").unwrap()), "http://a/x")
                .unwrap_err();
        assert_eq!(err.kind, Kind::InsecureRedirect);
    }

    #[test]
    fn decoding_is_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'a'; 10_000]).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(decode("gzip", packed.clone(), 10_000).unwrap().len(), 10_000);
        assert_eq!(decode("gzip", packed, 9_999).unwrap_err().kind, Kind::TooBig);
        assert_eq!(decode("br", b"raw".to_vec(), 10).unwrap(), b"raw");
        assert_eq!(decode("gzip", b"not gzip".to_vec(), 100).unwrap_err().kind, Kind::BadResponse);
    }

    fn get(url: &str) -> Request {
        Request {
            target: Target::parse(url, Family::Http).expect("a valid URL"),
            method: Method::GET,
            version: Version::HTTP_11,
            headers: vec![("X-Test".into(), b"1".to_vec())],
            body: Bytes::new(),
            dial: Dial { connect_timeout: None, tls: Default::default(), unix_socket: None },
            timeout: Some(Duration::from_secs(5)),
            max_redirects: 0,
            max_body_size: DEFAULT_MAX_BODY,
            decompress: false,
            session: None,
        }
    }

    async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        (listener, base)
    }

    /// Reads one request head (these tests send no bodies).
    async fn read_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.expect("request head"));
        }
        String::from_utf8(head).expect("ASCII head")
    }

    /// A raw HTTP server: for each answer, accepts a connection, reads one
    /// request head, writes the answer and closes; returns the heads.
    async fn raw_peer(listener: TcpListener, answers: Vec<String>) -> Vec<String> {
        let mut heads = Vec::new();
        for answer in answers {
            let (mut s, _) = listener.accept().await.expect("accept");
            heads.push(read_head(&mut s).await);
            s.write_all(answer.as_bytes()).await.expect("answer");
        }
        heads
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_200_comes_back_with_its_body_reason_and_headers() {
        let (listener, base) = listen().await;
        let answer = "HTTP/1.1 200 Fine Here\r\nContent-Length: 5\r\nX-Answer: a\r\n\r\nhello".to_owned();
        let peer = tokio::spawn(raw_peer(listener, vec![answer]));
        let url = format!("{base}/path?q=1");
        let answer =
            LocalSet::new().run_until(request(&get(&url))).await.map_err(|(e, _)| e).expect("answer");
        assert_eq!((answer.status, answer.reason.as_str()), (200, "Fine Here"));
        assert_eq!(answer.body.as_deref(), Some(&b"hello"[..]));
        assert_eq!(answer.header("x-answer").as_deref(), Some("a"));
        assert_eq!(answer.url, url);
        let heads = peer.await.expect("peer");
        assert!(heads[0].starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{}", heads[0]);
        for line in [format!("Host: {}", &base[7..]), "Connection: close".into(), "X-Test: 1".into()] {
            assert!(heads[0].contains(&format!("\r\n{line}\r\n")), "{line} in {}", heads[0]);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_redirect_is_followed_to_the_final_answer() {
        let (listener, base) = listen().await;
        let answers = vec![
            "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone".to_owned(),
        ];
        let peer = tokio::spawn(raw_peer(listener, answers));
        let mut req = get(&format!("{base}/start"));
        req.max_redirects = 1;
        let answer = LocalSet::new().run_until(request(&req)).await.map_err(|(e, _)| e).expect("answer");
        assert_eq!((answer.status, answer.body.as_deref()), (200, Some(&b"done"[..])));
        assert_eq!(answer.url, format!("{base}/final"));
        let heads = peer.await.expect("peer");
        assert!(heads[1].starts_with("GET /final HTTP/1.1\r\n"), "{}", heads[1]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_redirect_over_the_limit_fails_with_the_redirect_answer() {
        let (listener, base) = listen().await;
        let answers =
            vec!["HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".to_owned()];
        let peer = tokio::spawn(raw_peer(listener, answers));
        let mut req = get(&format!("{base}/start"));
        req.max_redirects = 0;
        // No redirects asked for: the 301 is the answer.
        let answer = LocalSet::new().run_until(request(&req)).await.map_err(|(e, _)| e).expect("answer");
        assert_eq!(answer.status, 301);
        peer.await.expect("peer");

        let (listener, base) = listen().await;
        let answers = vec![
            "HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 302 Found\r\nLocation: /c\r\nContent-Length: 0\r\n\r\n".to_owned(),
        ];
        let peer = tokio::spawn(raw_peer(listener, answers));
        let mut req = get(&format!("{base}/a"));
        req.max_redirects = 1;
        let (err, answer) = LocalSet::new().run_until(request(&req)).await.err().expect("a failure");
        assert_eq!(err.kind, Kind::Redirects);
        assert_eq!(answer.map(|a| a.url), Some(format!("{base}/b")));
        peer.await.expect("peer");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_is_its_own_kind() {
        let (listener, base) = listen().await;
        drop(listener);
        let (err, answer) = LocalSet::new().run_until(request(&get(&base))).await.err().expect("a failure");
        assert_eq!(err.kind, Kind::Refused, "{err}");
        assert!(answer.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_server_closing_without_answering_is_no_response() {
        let (listener, base) = listen().await;
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            read_head(&mut s).await;
        });
        let (err, _) = LocalSet::new().run_until(request(&get(&base))).await.err().expect("a failure");
        assert_eq!(err.kind, Kind::NoResponse, "{err}");
        peer.await.expect("peer");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_session_sends_the_next_request_on_the_kept_connection() {
        let (listener, base) = listen().await;
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut heads = Vec::new();
            for body in ["one", "two"] {
                heads.push(read_head(&mut s).await);
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                s.write_all(answer.as_bytes()).await.expect("answer");
            }
            heads
        });
        let session = Rc::new(Session::default());
        let mut req = get(&base);
        req.session = Some(session.clone());
        let bodies = LocalSet::new()
            .run_until(async {
                let first = request(&req).await.map_err(|(e, _)| e).expect("first");
                assert_eq!(session.idle_count(), 1);
                let second = request(&req).await.map_err(|(e, _)| e).expect("second");
                (first.body, second.body)
            })
            .await;
        assert_eq!(bodies, (Some(b"one".to_vec()), Some(b"two".to_vec())));
        let heads = peer.await.expect("peer");
        assert!(!heads[0].contains("Connection: close"), "{}", heads[0]);
    }
}
