//! docs/reference.md §4 (the redirect listener, `tls.redirect_port`): the plain-HTTP listener,
//! over real HTTP on an ephemeral port, started through `tandem::tls::redirect::RedirectListener`
//! as the binary starts it, and the binary itself with `tls.redirect_port`. Raw requests, so the
//! tests choose the Host header and the request target.

use std::{
    net::TcpListener,
    path::PathBuf,
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;
use tandem::tls::redirect::RedirectListener;

use crate::helpers::{
    BinaryServer, free_port, raw_get, raw_request, tandem_command, test_settings,
};

/// A running server reached by raw HTTP (a redirect listener, or the main one); stopped when
/// dropped.
struct Listener {
    port: u16,
    handle: ServerHandle,
}

impl Listener {
    fn redirecting(public_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("an address").port();
        let server = RedirectListener::new(public_port)
            .serve(listener, &test_settings().server)
            .expect("the listener starts");
        let handle = server.handle();
        tokio::spawn(server);
        Self { port, handle }
    }

    /// Sends `request` as it is and parses the answer.
    async fn send(&self, request: &str) -> Answer {
        let (port, request) = (self.port, request.to_string());
        let (status, text) = tokio::task::spawn_blocking(move || raw_request(port, &request))
            .await
            .expect("the request task")
            .expect("an answer");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    async fn get(&self, target: &str, host: &str) -> Answer {
        self.send(&format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn location(&self) -> Option<&str> {
        self.header("location")
    }
}

#[tokio::test]
async fn every_request_is_a_308_to_the_same_host_path_and_query_on_the_public_https_port() {
    let redirect = Listener::redirecting(8443);
    let answer = redirect
        .get("/a%20b/c%2Fd?x=1&y=%E2%9C%93", "Example.COM:8080")
        .await;
    assert_eq!(answer.status, 308, "{}", answer.head);
    assert_eq!(
        answer.location(),
        Some("https://example.com:8443/a%20b/c%2Fd?x=1&y=%E2%9C%93")
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(answer.body.len() < 200, "a tiny body: {:?}", answer.body);
    assert!(answer.header("x-request-id").is_some(), "{}", answer.head);

    // 308, not 301: a POST stays a POST, with its body, on its way to HTTPS.
    let post = redirect
        .send(concat!(
            "POST /api/echo HTTP/1.1\r\nHost: example.com\r\nX-Request-ID: abc-123\r\n",
            "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        ))
        .await;
    assert_eq!(post.status, 308);
    assert_eq!(post.location(), Some("https://example.com:8443/api/echo"));
    assert_eq!(post.header("x-request-id"), Some("abc-123"));

    let head = redirect
        .send("HEAD /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(head.status, 308);
    assert_eq!(head.location(), Some("https://example.com:8443/x"));
    assert_eq!(head.body, "");
}

#[tokio::test]
async fn port_443_is_left_out_and_ip_literal_hosts_are_kept() {
    let redirect = Listener::redirecting(443);
    for (host, want) in [
        ("example.com:80", "https://example.com/p?q"),
        ("[::1]:8080", "https://[::1]/p?q"),
        ("[2001:DB8::0:1]", "https://[2001:db8::1]/p?q"),
        ("127.0.0.1:80", "https://127.0.0.1/p?q"),
    ] {
        let answer = redirect.get("/p?q", host).await;
        assert_eq!(answer.status, 308, "{host}");
        assert_eq!(answer.location(), Some(want), "{host}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_is_redirected_to_its_own_host() {
    let redirect = Listener::redirecting(443);
    let answer = redirect
        .get("http://other.example:80/p?q=1", "ignored.example")
        .await;
    assert_eq!(answer.status, 308);
    assert_eq!(answer.location(), Some("https://other.example/p?q=1"));
}

#[tokio::test]
async fn a_missing_or_odd_host_is_400_problem_json_and_never_a_redirect() {
    let redirect = Listener::redirecting(443);
    let mut answers = vec![(
        "no Host",
        redirect
            .send("GET / HTTP/1.0\r\nX-Request-ID: req-400\r\n\r\n")
            .await,
    )];
    for host in [
        "evil.example/@good.example",
        "good.example@evil.example",
        "under_score.example",
        "::1",
        "0x7f",
    ] {
        answers.push((host, redirect.get("/", host).await));
    }
    for (host, answer) in &answers {
        assert_eq!(answer.status, 400, "{host}: {}", answer.head);
        assert_eq!(answer.location(), None, "{host}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{host}"
        );
        let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
        assert_eq!(problem["status"], 400, "{host}");
        assert!(
            problem["detail"].as_str().unwrap().contains("Host"),
            "{host}"
        );
    }
    let body: serde_json::Value = serde_json::from_str(&answers[0].1.body).unwrap();
    assert_eq!(body["request_id"], "req-400");
}

#[tokio::test]
async fn healthz_answers_as_the_main_listener_does_for_local_checks() {
    let redirect = Listener::redirecting(443);
    // The main listener of the same build, asked the same way (raw HTTP, as a local check would).
    let main = tandem::Application::build(test_settings()).expect("the main server builds");
    let main = Listener {
        port: main.port(),
        handle: {
            let handle = main.handle();
            tokio::spawn(main.run_until_stopped());
            handle
        },
    };
    let expected = main.get("/healthz", "127.0.0.1").await;
    assert_eq!(expected.status, 200);
    let answer = redirect.get("/healthz", "127.0.0.1").await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.location(), None);
    for header in ["content-type", "cache-control"] {
        assert_eq!(answer.header(header), expected.header(header), "{header}");
    }
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.body, expected.body);
    // Without a Host header too: a local check need not name one.
    let bare = redirect.send("GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(bare.status, 200, "{}", bare.head);
    let post = redirect
        .send("POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn without_acme_the_challenge_path_is_redirected_like_any_other() {
    let redirect = Listener::redirecting(443);
    let answer = redirect
        .get("/.well-known/acme-challenge/abc", "example.com")
        .await;
    assert_eq!(answer.status, 308);
    assert_eq!(
        answer.location(),
        Some("https://example.com/.well-known/acme-challenge/abc")
    );
}

#[tokio::test]
async fn stopping_its_server_handle_closes_the_port() {
    let redirect = Listener::redirecting(443);
    assert_eq!(redirect.get("/", "example.com").await.status, 308);
    redirect.handle.stop(true).await;
    let port = redirect.port;
    let refused = tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await
    .unwrap();
    assert!(refused, "the port still accepts connections after stop");
}

/// A self-signed certificate for `localhost` and its key, as PEM files in a temporary directory.
fn certificate_files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pair =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, pair.cert.pem()).expect("cert.pem");
    std::fs::write(&key, pair.signing_key.serialize_pem()).expect("key.pem");
    (dir, cert, key)
}

#[test]
fn the_binary_serves_tls_redirect_port_and_closes_it_when_it_stops() {
    let (_dir, cert, key) = certificate_files();
    let redirect_port = free_port();
    let mut server = BinaryServer::spawn(&[
        ("TANDEM__STATIC__MODE", "nginx"),
        ("TANDEM__TLS__MODE", "files"),
        ("TANDEM__TLS__CERT_FILE", cert.to_str().unwrap()),
        ("TANDEM__TLS__KEY_FILE", key.to_str().unwrap()),
        ("TANDEM__TLS__REDIRECT_PORT", &redirect_port.to_string()),
        ("TANDEM__TLS__PUBLIC_PORT", "8443"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(raw_get(redirect_port, "/healthz"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "no /healthz on tls.redirect_port; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, text) = raw_request(
        redirect_port,
        "GET /a?b=1 HTTP/1.1\r\nHost: localhost:80\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(status, 308, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nlocation: https://localhost:8443/a?b=1\r\n"),
        "{text}"
    );
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redirect_port)).is_err(),
        "the redirect port outlived the server"
    );
}

#[test]
fn a_taken_redirect_port_stops_the_start_and_names_its_key() {
    let (_dir, cert, key) = certificate_files();
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port to occupy");
    let redirect_port = taken.local_addr().unwrap().port().to_string();
    let out = tandem_command()
        .arg("serve")
        .env("TANDEM__SERVER__PORT", free_port().to_string())
        .env("TANDEM__STATIC__MODE", "nginx")
        .env("TANDEM__TLS__MODE", "files")
        .env("TANDEM__TLS__CERT_FILE", &cert)
        .env("TANDEM__TLS__KEY_FILE", &key)
        .env("TANDEM__TLS__REDIRECT_PORT", &redirect_port)
        .output()
        .expect("tandem runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{redirect_port}"))
            && stderr.contains("already in use")
            && stderr.contains("tls.redirect_port"),
        "{stderr}"
    );
}
