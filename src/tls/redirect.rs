//! The plain-HTTP listener beside the HTTPS one (docs/reference.md §3 `tls.redirect_port`, §4):
//! every request is answered `308 Permanent Redirect` to the same host, path and query on HTTPS;
//! ACME HTTP-01 challenges in flight are answered from [`Http01Challenges`]; `/healthz` answers
//! as on the main listener, so local checks keep working on the plain port.
//!
//! It is its own small actix server, not a route of the main one: it shares no pipeline (no rate
//! limit, no static files, no error pages) because all it ever sends is a redirect, a probe, a
//! challenge or a problem. Its requests are logged one line each at debug level (target
//! `tandem::redirect`), not in the access log: port 80 on the open internet is mostly scanners
//! and browsers being sent elsewhere, and the request that matters is logged when it arrives
//! over HTTPS. Request IDs follow the same rules as everywhere (§8): echoed, and named in problems.

use std::{
    io,
    net::{IpAddr, Ipv6Addr, TcpListener},
    sync::Arc,
    time::Duration,
};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::Server,
    http::{
        Method, StatusCode, Uri,
        header::{self, HeaderValue},
    },
    rt::net::TcpStream,
    web,
};

use super::challenges::Http01Challenges;
use crate::{config::ServerSettings, problem::Problem, request_id::Ids, routes::health};

/// Where ACME CAs fetch HTTP-01 key authorizations (RFC 8555 §8.3).
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

const HTTPS_DEFAULT_PORT: u16 = 443;

/// The plain-HTTP listener: what it redirects to and which challenges it answers.
#[derive(Debug, Clone)]
pub struct RedirectListener {
    public_port: u16,
    challenges: Option<Arc<Http01Challenges>>,
}

impl RedirectListener {
    /// Redirects to HTTPS on `public_port` (`tls.public_port`: the port clients reach, which
    /// behind a port mapping is not the port tandem binds), omitted from `Location` when 443.
    pub fn new(public_port: u16) -> Self {
        Self {
            public_port,
            challenges: None,
        }
    }

    /// Answers `/.well-known/acme-challenge/<token>` from `challenges` (ACME with HTTP-01):
    /// the key authorization while the token is in flight, 404 otherwise. Without it those paths
    /// are redirected like any other, so an external ACME client's webroot under `htdocs` still
    /// validates (CAs follow redirects to HTTPS).
    pub(crate) fn answering(mut self, challenges: Arc<Http01Challenges>) -> Self {
        self.challenges = Some(challenges);
        self
    }

    /// Starts serving on `listener` (bound and listening; `server.host:tls.redirect_port` in the
    /// binary) with `server`'s timeouts and connection cap, and returns the running server: the
    /// caller spawns it and stops it with the main server (its handle, in the stop sequence).
    /// Signals are left to the main server's stop sequence.
    ///
    /// One worker: each answer is a few hundred bytes built from the request line, so one thread
    /// answers tens of thousands a second, far more than browsers make on their way to HTTPS;
    /// more workers would only take threads and memory from the HTTPS workers.
    pub fn serve(self, listener: TcpListener, server: &ServerSettings) -> io::Result<Server> {
        let answers = web::Data::new(self);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(answers.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .keep_alive(Duration::from_secs(server.keep_alive_secs))
        .client_request_timeout(Duration::from_millis(server.client_request_timeout_ms))
        .client_disconnect_timeout(Duration::from_millis(server.client_disconnect_timeout_ms))
        .max_connections(server.max_connections)
        .shutdown_timeout(server.shutdown_timeout_secs)
        .disable_signals()
        .on_connect(|conn, _| {
            // As on the main listener: a response's body must not wait behind its head.
            if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .listen(listener)?
        .run();
        Ok(server)
    }

    /// The answer to one request, before the IDs are echoed.
    async fn respond(&self, req: &HttpRequest, request_id: &str) -> Result<HttpResponse, Problem> {
        let path = req.uri().path();
        if let (Some(challenges), Some(token)) =
            (&self.challenges, path.strip_prefix(ACME_CHALLENGE_PREFIX))
        {
            return challenge(challenges, req.method(), token);
        }
        if path == "/healthz" {
            return healthz(req.method()).await;
        }
        let location =
            https_location(req.uri(), req.headers().get(header::HOST), self.public_port)?;
        log::debug!(
            target: "tandem::redirect",
            "{} {:?} -> {location} request_id={request_id}",
            req.method(),
            req.uri().to_string(),
        );
        Ok(HttpResponse::build(StatusCode::PERMANENT_REDIRECT)
            .insert_header((header::LOCATION, location.as_str()))
            .content_type("text/plain; charset=utf-8")
            .body(format!("redirecting to {location}\n")))
    }
}

/// Every request, whatever its method and path.
async fn answer(req: HttpRequest, listener: web::Data<RedirectListener>) -> HttpResponse {
    let ids = Ids::of(req.headers());
    let mut res = match listener.respond(&req, ids.request_id()).await {
        Ok(res) => res,
        Err(problem) => {
            log::debug!(
                target: "tandem::redirect",
                "{} {:?} -> {problem} request_id={}",
                req.method(),
                req.uri().to_string(),
                ids.request_id(),
            );
            problem.to_response(Some(ids.request_id()))
        }
    };
    ids.echo(res.headers_mut());
    res
}

/// `/healthz` as the main listener answers it (the same handler), with its 405 for other methods.
async fn healthz(method: &Method) -> Result<HttpResponse, Problem> {
    if method == Method::GET || method == Method::HEAD {
        Ok(health::healthz().await)
    } else {
        Err(Problem::method_not_allowed("GET, HEAD"))
    }
}

/// An ACME HTTP-01 challenge: the key authorization as `text/plain` while `token` is in flight.
fn challenge(
    challenges: &Http01Challenges,
    method: &Method,
    token: &str,
) -> Result<HttpResponse, Problem> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Problem::method_not_allowed("GET, HEAD"));
    }
    match challenges.answer(token) {
        Some(key_authorization) => Ok(HttpResponse::Ok()
            .content_type("text/plain")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(key_authorization)),
        None => Err(Problem::not_found(
            "no ACME challenge with this token is in flight",
        )),
    }
}

/// `https://<host>[:public_port]<path and query>` for a request: the host is the request
/// target's authority when the client sent the absolute form (RFC 9112 §3.2.2: the `Host` header
/// is then ignored), the `Host` header otherwise, its port dropped. A host that is not a DNS name
/// or an IP literal is refused rather than echoed into a `Location`.
pub(crate) fn https_location(
    uri: &Uri,
    host_header: Option<&HeaderValue>,
    public_port: u16,
) -> Result<String, Problem> {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => host_header.and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Problem::bad_request(
                "the request has no Host header, so there is no HTTPS address to redirect it to",
            )
        })?,
    };
    let host = host_of(authority).ok_or_else(|| {
        Problem::bad_request(
            "the Host header is not a DNS name or an IP address (with an optional port), so there is no HTTPS address to redirect it to",
        )
    })?;
    let mut location = format!("https://{host}");
    if public_port != HTTPS_DEFAULT_PORT {
        location.push_str(&format!(":{public_port}"));
    }
    match uri.path_and_query().map(|p| p.as_str()) {
        // `OPTIONS *` and the like name no resource: the site's root is the closest answer.
        Some(target) if target.starts_with('/') => push_visible_ascii(&mut location, target),
        _ => location.push('/'),
    }
    Ok(location)
}

/// Appends `target` with every byte outside visible ASCII percent-encoded, so the `Location`
/// is a valid header value and a URI whatever bytes the request line carried.
fn push_visible_ascii(out: &mut String, target: &str) {
    for byte in target.bytes() {
        if byte.is_ascii_graphic() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// The host of `host[:port]`, normalised (lower case, IPv6 bracketed and canonical), when it is
/// a DNS name, an IPv4 address or a bracketed IPv6 address and the port is digits.
fn host_of(authority: &str) -> Option<String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (literal, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = literal.parse().ok()?;
            (
                format!("[{ip}]"),
                after
                    .strip_prefix(':')
                    .or_else(|| after.is_empty().then_some(""))?,
            )
        }
        None => {
            let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
            (canonical_name_or_ipv4(host)?, port)
        }
    };
    let port_ok = port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    port_ok.then_some(host)
}

/// `host` in lower case when it is an IPv4 address or a DNS name of letters, digits and hyphens
/// (RFC 1123 labels of 1-63 characters, 253 in all, an optional final dot) whose last label is
/// not a number: browsers read `10.1` or `0x7f` as an IPv4 address, so such a name would send
/// them somewhere else than it says.
fn canonical_name_or_ipv4(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_ipv4().then(|| ip.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last = labels.last()?;
    let numeric_last = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .or_else(|| last.strip_prefix("0X"))
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
    (name.len() <= 253 && labels.iter().all(label_ok) && !numeric_last)
        .then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(target: &str, host: Option<&str>, public_port: u16) -> Result<String, StatusCode> {
        let uri: Uri = target.parse().expect("a request target");
        let host = host.map(|h| HeaderValue::from_str(h).expect("a header value"));
        https_location(&uri, host.as_ref(), public_port).map_err(|p| p.status())
    }

    #[test]
    fn the_host_header_port_is_replaced_by_the_public_port_unless_443() {
        let cases = [
            ("/", "example.com", 443, "https://example.com/"),
            ("/", "example.com:80", 443, "https://example.com/"),
            ("/a", "example.com:8080", 8443, "https://example.com:8443/a"),
            ("/a", "Example.COM.", 443, "https://example.com./a"),
            ("/a", "203.0.113.7:80", 443, "https://203.0.113.7/a"),
            ("/a", "localhost", 8443, "https://localhost:8443/a"),
            (
                "/a",
                "xn--bcher-kva.example:",
                443,
                "https://xn--bcher-kva.example/a",
            ),
        ];
        for (target, host, port, want) in cases {
            assert_eq!(
                location(target, Some(host), port).as_deref(),
                Ok(want),
                "{host}"
            );
        }
    }

    #[test]
    fn ipv6_literals_stay_bracketed_and_canonical() {
        let cases = [
            ("[::1]", 443, "https://[::1]/"),
            ("[::1]:80", 8443, "https://[::1]:8443/"),
            ("[2001:DB8:0:0::1]:8080", 443, "https://[2001:db8::1]/"),
        ];
        for (host, port, want) in cases {
            assert_eq!(
                location("/", Some(host), port).as_deref(),
                Ok(want),
                "{host}"
            );
        }
    }

    #[test]
    fn path_and_query_are_kept_byte_for_byte_with_their_percent_encoding() {
        let cases = [
            (
                "/a%20b/c%2Fd?q=1&r=%E2%9C%93",
                "https://h.example/a%20b/c%2Fd?q=1&r=%E2%9C%93",
            ),
            ("/?", "https://h.example/?"),
            ("/search?q=a+b&&x=", "https://h.example/search?q=a+b&&x="),
            ("//evil.example/x", "https://h.example//evil.example/x"),
            ("*", "https://h.example/"),
        ];
        for (target, want) in cases {
            assert_eq!(
                location(target, Some("h.example"), 443).as_deref(),
                Ok(want),
                "{target}"
            );
        }
    }

    #[test]
    fn bytes_outside_visible_ascii_are_percent_encoded() {
        let mut out = String::new();
        push_visible_ascii(&mut out, "/caf\u{e9} x\u{7f}");
        assert_eq!(out, "/caf%C3%A9%20x%7F");
    }

    #[test]
    fn an_absolute_form_target_names_the_host_and_the_host_header_is_ignored() {
        assert_eq!(
            location(
                "http://other.example:80/p?q=1",
                Some("ignored.example"),
                8443
            )
            .as_deref(),
            Ok("https://other.example:8443/p?q=1")
        );
        assert_eq!(
            location("http://[::1]:8080/", None, 443).as_deref(),
            Ok("https://[::1]/")
        );
        // Userinfo is no host: refused, not carried into the Location.
        assert!(location("http://user@evil.example/", Some("good.example"), 443).is_err());
    }

    #[test]
    fn missing_and_odd_hosts_are_refused_with_400() {
        assert_eq!(location("/", None, 443), Err(StatusCode::BAD_REQUEST));
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "abcdefghi.".repeat(25));
        for host in [
            "",
            ":443",
            "evil.example/@good.example",
            "good.example@evil.example",
            "good.example\\evil.example",
            "a b.example",
            "under_score.example",
            "-lead.example",
            "trail-.example",
            "dot..example",
            "::1",
            "[::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "[127.0.0.1]",
            "example.com:80:80",
            "example.com:http",
            "example.com:123456",
            "10.1",
            "0x7f",
            "host.0X1F",
            "1.2.3.4.5",
            &long_label,
            &long_name,
        ] {
            let got = location("/", Some(host), 443);
            assert_eq!(got, Err(StatusCode::BAD_REQUEST), "{host:?}");
        }
    }

    /// Sends `request` over a new connection and reads the answer to its end: (status, text).
    async fn raw(port: u16, request: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.write_all(request.as_bytes()).expect("write");
            let mut text = String::new();
            stream.read_to_string(&mut text).expect("read");
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (status, text)
        })
        .await
        .expect("the request task")
    }

    /// Over real HTTP: a token in flight is answered, an unknown one is 404 problem+json, and
    /// once removed the token is no longer answered.
    #[tokio::test]
    async fn challenges_in_flight_are_answered_and_others_are_404() {
        let challenges = Arc::new(Http01Challenges::default());
        challenges.insert("tok-EN_1".into(), "tok-EN_1.thumbprint".into());
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("an address").port();
        let server = RedirectListener::new(443)
            .answering(challenges.clone())
            .serve(listener, &crate::Settings::default().server)
            .expect("serving");
        let handle = server.handle();
        tokio::spawn(server);
        let request = |method: &str, token: &str| {
            format!(
                "{method} {ACME_CHALLENGE_PREFIX}{token} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        };
        let (status, text) = raw(port, request("GET", "tok-EN_1")).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\r\ncontent-type: text/plain\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\ntok-EN_1.thumbprint"), "{text}");
        let (status, text) = raw(port, request("HEAD", "tok-EN_1")).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text}");
        assert_eq!(raw(port, request("POST", "tok-EN_1")).await.0, 405);
        challenges.remove("tok-EN_1");
        for token in ["tok-EN_1", "other"] {
            let (status, text) = raw(port, request("GET", token)).await;
            assert_eq!(status, 404, "{token}: {text}");
            assert!(
                text.contains("\r\ncontent-type: application/problem+json\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nx-request-id: "), "{text}");
            assert!(!text.contains("location:"), "{text}");
        }
        handle.stop(true).await;
    }
}
