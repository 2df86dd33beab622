//! docs/reference.md §3 `tls`, §9 reload: HTTPS with HTTP/2 on the main listener, HSTS, the
//! certificate pair from files and its reload, `tandem check` and `tandem healthcheck` over TLS.
//! Certificates are made at test time with rcgen (RSA keys by the `openssl` CLI, since ring
//! cannot generate them).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;
use http_body_util::{BodyExt, Empty};
use hyper::{Version, body::Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{
    ClientConfig, ClientConnection, StreamOwned,
    crypto::ring,
    pki_types::{CertificateDer, ServerName},
};
use tandem::{Application, Settings, config::TlsMode};

use crate::helpers::{
    BinaryServer, StaticRoots, panicking_route, raw_get, skip, tandem_command, test_settings,
};

/// The key algorithms tandem must accept.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Ecdsa,
    Ed25519,
    Rsa,
}

/// A certificate for `localhost` and 127.0.0.1 with its key, written as PEM files.
pub struct Pair {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_der: Vec<u8>,
}

impl Pair {
    /// A pair named `name` in `dir`, valid for `days` more days.
    pub fn make(dir: &Path, name: &str, kind: KeyKind, days: i64) -> Option<Self> {
        let key = match kind {
            KeyKind::Ecdsa => rcgen::KeyPair::generate().expect("ECDSA key"),
            KeyKind::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key"),
            KeyKind::Rsa => rcgen::KeyPair::from_pem(&openssl_rsa_key()?).expect("RSA key"),
        };
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let until = jiff::Zoned::now()
            .checked_add(jiff::Span::new().days(days))
            .expect("date");
        params.not_after = rcgen::date_time_ymd(
            i32::from(until.year()),
            until.month() as u8,
            until.day() as u8,
        );
        let cert = params.self_signed(&key).expect("self-signed");
        let pair = Self {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
            cert_der: cert.der().to_vec(),
        };
        std::fs::write(&pair.cert_file, cert.pem()).expect("write cert");
        std::fs::write(&pair.key_file, key.serialize_pem()).expect("write key");
        Some(pair)
    }

    /// Settings serving this pair over HTTPS, on port 0, with the fixtures as roots.
    pub fn settings(&self, mut settings: Settings) -> Settings {
        settings.tls.mode = TlsMode::Files;
        settings.tls.cert_file = self.cert_file.clone();
        settings.tls.key_file = self.key_file.clone();
        settings
    }

    /// The environment for the binary serving this pair.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TANDEM__TLS__MODE", "files".into()),
            (
                "TANDEM__TLS__CERT_FILE",
                self.cert_file.display().to_string(),
            ),
            ("TANDEM__TLS__KEY_FILE", self.key_file.display().to_string()),
        ]
    }

    /// Copies this pair's files over `target`'s paths, the way an operator rotates certificates.
    pub fn install_as(&self, target: &Pair) {
        std::fs::copy(&self.cert_file, &target.cert_file).expect("copy cert");
        std::fs::copy(&self.key_file, &target.key_file).expect("copy key");
    }
}

/// A 2048-bit RSA key in PKCS#8 PEM, from the `openssl` CLI; `None` (skipped) without it.
fn openssl_rsa_key() -> Option<String> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).expect("PEM")),
        _ => {
            skip("the openssl CLI is needed to make an RSA key");
            None
        }
    }
}

/// A rustls client offering `alpn`; it trusts `root` only, or any certificate without one.
fn client_config(alpn: &[&[u8]], root: Option<CertificateDer<'static>>) -> ClientConfig {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let mut config = match root {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).expect("root");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tandem::healthcheck::AnyCertificate(
                provider,
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// One HTTPS exchange, read to the end of its body.
pub struct Answer {
    pub status: u16,
    pub version: Version,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    /// The DER of the leaf certificate the server presented on this answer's connection.
    pub certificate: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("a text header")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTPS client for `localhost` at one address, offering its ALPN list; every request opens
/// its own connection and speaks what ALPN chose.
#[derive(Clone)]
pub struct HttpsClient {
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
}

impl HttpsClient {
    pub fn new(alpn: &[&[u8]], root: Option<&Pair>, addr: SocketAddr) -> Self {
        let root = root.map(|pair| CertificateDer::from(pair.cert_der.clone()));
        Self::trusting(alpn, root, addr)
    }

    /// A client that trusts `root` (any certificate with `None`), e.g. a CA's.
    pub fn trusting(
        alpn: &[&[u8]],
        root: Option<CertificateDer<'static>>,
        addr: SocketAddr,
    ) -> Self {
        Self {
            connector: Arc::new(client_config(alpn, root)).into(),
            addr,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.try_get(path, headers).await.expect("an HTTPS answer")
    }

    pub async fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Answer> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("localhost").expect("name");
        let tls = self.connector.connect(name, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.to_vec())
            .unwrap_or_default();
        let authority = format!("localhost:{}", self.addr.port());
        // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
        let mut request = match h2 {
            true => hyper::Request::get(format!("https://{authority}{path}")),
            false => hyper::Request::get(path).header("host", &authority),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(std::io::Error::other)?;
        let io = TokioIo::new(tls);
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            sender.send_request(request).await
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        .map_err(std::io::Error::other)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(std::io::Error::other)?;
        Ok(Answer {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body: body.to_bytes().to_vec(),
            certificate,
        })
    }
}

/// An HTTPS server in the test process, with clients that negotiate HTTP/2 and HTTP/1.1.
pub struct HttpsApp {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub lifecycle: Arc<tandem::lifecycle::Lifecycle>,
    pub h2: HttpsClient,
    pub h1: HttpsClient,
}

/// Starts `settings` (HTTPS) in the test process; the clients trust `pair` only.
pub async fn spawn_https(settings: Settings, pair: &Pair) -> HttpsApp {
    spawn_https_with(settings, pair, None).await
}

/// Like [`spawn_https`], with `extra` routes of the test's.
pub async fn spawn_https_with(
    settings: Settings,
    pair: &Pair,
    extra: Option<tandem::startup::ExtraRoutes>,
) -> HttpsApp {
    let app = Application::build_with(settings, extra, Box::new(|| {})).expect("server builds");
    let addr = app.local_addr();
    let handle = app.handle();
    let lifecycle = app.lifecycle();
    tokio::spawn(app.run_until_stopped());
    let app = HttpsApp {
        addr,
        handle,
        lifecycle,
        h2: HttpsClient::new(&[b"h2", b"http/1.1"], Some(pair), addr),
        h1: HttpsClient::new(&[b"http/1.1"], Some(pair), addr),
    };
    wait_until_started(&app.h2).await;
    app
}

async fn wait_until_started(client: &HttpsClient) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(res) = client.try_get("/startupz", &[]).await
            && res.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "the HTTPS server never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ecdsa_pair(dir: &Path) -> Pair {
    Pair::make(dir, "server", KeyKind::Ecdsa, 90).expect("ECDSA pair")
}

#[tokio::test]
async fn https_negotiates_http2_and_http11_by_alpn_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let app = spawn_https(pair.settings(test_settings()), &pair).await;
    let res = app.h2.get("/healthz").await;
    assert_eq!((res.status, res.version), (200, Version::HTTP_2));
    let res = app.h1.get("/healthz").await;
    assert_eq!((res.status, res.version), (200, Version::HTTP_11));
    // The client verifies the chain: one that trusts another certificate is refused.
    let other = Pair::make(dir.path(), "other", KeyKind::Ecdsa, 90).unwrap();
    let stranger = HttpsClient::new(&[b"h2"], Some(&other), app.addr);
    assert!(stranger.try_get("/healthz", &[]).await.is_err());
    // Nothing but TLS on that port: a plain HTTP request gets no HTTP answer.
    let port = app.addr.port();
    let plain = tokio::task::spawn_blocking(move || raw_get(port, "/healthz"))
        .await
        .unwrap();
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");
}

#[tokio::test]
async fn static_negotiation_ranges_and_304_work_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let roots = StaticRoots::new();
    let app = spawn_https(pair.settings(roots.settings()), &pair).await;
    let res = app
        .h2
        .get_with("/page.html", &[("accept-encoding", "gzip, br")])
        .await;
    assert_eq!((res.status, res.version), (200, Version::HTTP_2));
    assert_eq!(res.header("content-encoding"), "br");
    let br = std::fs::read(roots.htdocs().join("page.html.br")).unwrap();
    assert_eq!(res.body, br);
    let etag = res.header("etag").to_string();

    let res = app
        .h2
        .get_with(
            "/page.html",
            &[("accept-encoding", "br"), ("range", "bytes=2-9")],
        )
        .await;
    assert_eq!((res.status, res.version), (206, Version::HTTP_2));
    assert_eq!(
        res.header("content-range"),
        format!("bytes 2-9/{}", br.len())
    );
    assert_eq!(res.body, br[2..=9]);

    let res = app
        .h2
        .get_with(
            "/page.html",
            &[("accept-encoding", "br"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!((res.status, res.version), (304, Version::HTTP_2));
    assert_eq!(res.header("etag"), etag);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn the_api_request_ids_and_rate_limit_headers_work_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let mut settings = pair.settings(test_settings());
    settings.rate_limit.enabled = true;
    settings.rate_limit.burst = 2;
    settings.rate_limit.per_second = 1;
    let app = spawn_https(settings, &pair).await;
    let res = app
        .h2
        .get_with("/api/status", &[("x-request-id", "h2-request-1")])
        .await;
    assert_eq!((res.status, res.version), (200, Version::HTTP_2));
    assert_eq!(res.header("x-request-id"), "h2-request-1");
    assert_eq!(res.header("x-ratelimit-limit"), "2");
    assert_eq!(res.json()["service"], "tandem");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let res = app.h2.get("/api/status").await;
        statuses.push(res.status);
        if res.status == 429 {
            assert_eq!(res.header("content-type"), "application/problem+json");
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn hsts_is_sent_on_every_https_response_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let app = spawn_https(pair.settings(test_settings()), &pair).await;
    let res = app.h2.get("/healthz").await;
    assert!(res.headers.get("strict-transport-security").is_none());

    let mut settings = pair.settings(test_settings());
    settings.tls.hsts_max_age_secs = 31_536_000;
    let app = spawn_https_with(settings, &pair, Some(panicking_route())).await;
    // A file, a probe, the API, a 404 and a panicking handler's 500: every way out of the pipeline.
    for path in [
        "/healthz",
        "/page.html",
        "/api/status",
        "/no-such-file",
        "/test/panic",
    ] {
        for client in [&app.h2, &app.h1] {
            let res = client.get(path).await;
            assert_eq!(
                res.header("strict-transport-security"),
                "max-age=31536000",
                "{path} {:?}",
                res.version
            );
        }
    }
}

#[tokio::test]
async fn an_http2_request_for_the_websocket_gets_a_problem_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let app = spawn_https(pair.settings(test_settings()), &pair).await;
    let res = tokio::time::timeout(Duration::from_secs(5), app.h2.get("/socket"))
        .await
        .expect("an answer, not a hang");
    assert_eq!((res.status, res.version), (505, Version::HTTP_2));
    assert_eq!(res.header("content-type"), "application/problem+json");
    let detail = res.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("HTTP/1.1"), "{detail}");
    // Over HTTP/1.1 on the same listener it is the WebSocket it always was.
    assert_eq!(app.h1.get("/socket").await.status, 426);
}

#[tokio::test]
async fn an_in_flight_http2_request_finishes_during_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let slow: tandem::startup::ExtraRoutes = Arc::new(|cfg: &mut actix_web::web::ServiceConfig| {
        cfg.route(
            "/test/slow",
            actix_web::web::get().to(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "slow answer"
            }),
        );
    });
    let app = Application::build_with(pair.settings(test_settings()), Some(slow), Box::new(|| {}))
        .expect("server builds");
    let client = HttpsClient::new(&[b"h2"], Some(&pair), app.local_addr());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    wait_until_started(&client).await;
    let request = tokio::spawn(async move { client.try_get("/test/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::spawn(handle.stop(true));
    let res = request
        .await
        .unwrap()
        .expect("the in-flight stream is answered");
    assert_eq!((res.status, res.version), (200, Version::HTTP_2));
    assert_eq!(res.body, b"slow answer");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server stops")
        .unwrap();
}

#[tokio::test]
async fn draining_closes_http11_connections_and_still_answers_http2() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let app = spawn_https(pair.settings(test_settings()), &pair).await;
    let res = app.h1.get("/healthz").await;
    assert!(res.headers.get("connection").is_none());
    app.lifecycle.begin_drain();
    let res = app.h1.get("/healthz").await;
    assert_eq!(res.header("connection"), "close");
    // HTTP/2 has no `Connection` header: the request is answered, the stop closes the connection.
    let res = app.h2.get("/readyz").await;
    assert_eq!((res.status, res.version), (503, Version::HTTP_2));
}

#[tokio::test]
async fn rsa_ecdsa_and_ed25519_keys_each_serve() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Rsa, KeyKind::Ecdsa, KeyKind::Ed25519] {
        let Some(pair) = Pair::make(dir.path(), &format!("{kind:?}"), kind, 90) else {
            return;
        };
        let app = spawn_https(pair.settings(test_settings()), &pair).await;
        assert_eq!(app.h2.get("/healthz").await.status, 200, "{kind:?}");
        app.handle.stop(false).await;
    }
}

// --- The binary: start refusal, reload, healthcheck and check. ---

/// Starts the binary on `pair` with `extra` settings and waits until it answers over HTTPS.
pub fn start_binary(pair: &Pair, extra: &[(&str, &str)]) -> BinaryServer {
    let env = pair.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    let server = BinaryServer::spawn(&all);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut conn) = TlsConnection::open(server.port)
            && conn.get("/healthz").is_ok_and(|(status, _)| status == 200)
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "tandem did not answer over HTTPS; stderr:\n{}",
        server.stderr()
    );
}

/// One blocking HTTPS/1.1 keep-alive connection to 127.0.0.1, accepting any certificate.
struct TlsConnection(StreamOwned<ClientConnection, TcpStream>);

impl TlsConnection {
    fn open(port: u16) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let conn = ClientConnection::new(
            Arc::new(client_config(&[b"http/1.1"], None)),
            ServerName::try_from("localhost").expect("name"),
        )
        .map_err(std::io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Self(stream))
    }

    /// The certificate the server presented on this connection.
    fn certificate(&self) -> Vec<u8> {
        self.0.conn.peer_certificates().expect("a certificate")[0].to_vec()
    }

    /// `GET path` on this connection, kept open: (status, body).
    fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        self.0.flush()?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.0.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// docs/reference.md §4 "A slow second head", over HTTPS with HTTP/1.1 chosen by ALPN: the
/// connection watchdog covers TLS connections too (keep-alive 1 s + head timeout 1 s).
#[tokio::test]
async fn a_trickled_second_head_over_https_http11_is_cut_by_the_head_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let mut settings = pair.settings(test_settings());
    settings.server.keep_alive_secs = 1;
    settings.server.client_request_timeout_ms = 1000;
    let app = spawn_https(settings, &pair).await;
    let port = app.addr.port();
    let lasted = tokio::task::spawn_blocking(move || {
        let mut conn = TlsConnection::open(port).expect("a TLS connection");
        assert_eq!(conn.get("/healthz").expect("a first answer").0, 200);
        let answered = Instant::now();
        conn.0
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let head = [
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Trickle: ".as_slice(),
            &[b'a'; 100],
        ]
        .concat();
        let mut buf = [0u8; 1024];
        for byte in head {
            if answered.elapsed() > Duration::from_secs(8) {
                break;
            }
            if conn
                .0
                .write_all(&[byte])
                .and_then(|()| conn.0.flush())
                .is_err()
            {
                return Some(answered.elapsed());
            }
            match conn.0.read(&mut buf) {
                Ok(0) => return Some(answered.elapsed()),
                Ok(n) => panic!("an answer to a head never finished: {:?}", &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Some(answered.elapsed()),
            }
        }
        None
    })
    .await
    .unwrap();
    let lasted = lasted.expect("the trickling HTTPS connection was still open after 8 s");
    assert!(
        lasted >= Duration::from_millis(1800) && lasted < Duration::from_secs(4),
        "closed {lasted:?} after the first answer"
    );
}

fn stderr_says(server: &BinaryServer, needle: &str) -> String {
    server.stderr_once_it_says(needle, Duration::from_secs(10))
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let one = ecdsa_pair(dir.path());
    let two = Pair::make(dir.path(), "other", KeyKind::Ecdsa, 90).unwrap();
    let env = [
        ("TANDEM__TLS__MODE", "files".to_string()),
        (
            "TANDEM__TLS__CERT_FILE",
            one.cert_file.display().to_string(),
        ),
        ("TANDEM__TLS__KEY_FILE", two.key_file.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Spawned, not waited for: a server that wrongly starts must fail the test, not hang it.
    let mut server = BinaryServer::spawn(&env);
    let code = server.wait_exit(Duration::from_secs(20));
    let stderr = server.stderr_once_it_says("tls.key_file", Duration::from_secs(2));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("tls.key_file")
            && stderr.contains(&*two.key_file.to_string_lossy())
            && stderr.contains(&*one.cert_file.to_string_lossy())
            && stderr.contains("is not the private key of the certificate"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn sighup_reloads_for_new_connections_while_open_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let live = ecdsa_pair(dir.path());
    let first = live.cert_der.clone();
    let next = Pair::make(dir.path(), "next", KeyKind::Ed25519, 90).unwrap();
    let server = start_binary(&live, &[("TANDEM__TLS__RELOAD_CHECK_SECS", "0")]);
    let mut old = TlsConnection::open(server.port).unwrap();
    assert_eq!(old.get("/healthz").unwrap().0, 200);
    assert_eq!(old.certificate(), first);

    next.install_as(&live);
    server.signal(libc::SIGHUP);
    let stderr = stderr_says(&server, "SIGHUP: new connections get the certificate");
    assert!(
        stderr.contains("SIGHUP: new connections get the certificate from")
            && stderr.contains("subject names localhost, 127.0.0.1"),
        "{stderr}"
    );
    let fresh = TlsConnection::open(server.port).unwrap();
    assert_eq!(fresh.certificate(), next.cert_der);
    // The connection made before the reload still answers, with the certificate it began with.
    assert_eq!(old.get("/healthz").unwrap().0, 200);
    assert_eq!(old.certificate(), first);
}

#[test]
fn a_bad_pair_on_reload_keeps_the_current_certificate_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let live = ecdsa_pair(dir.path());
    let first = live.cert_der.clone();
    let other = Pair::make(dir.path(), "other", KeyKind::Ecdsa, 90).unwrap();
    let server = start_binary(&live, &[("TANDEM__TLS__RELOAD_CHECK_SECS", "0")]);
    // A new certificate with the old key: the files no longer belong together.
    std::fs::copy(&other.cert_file, &live.cert_file).unwrap();
    server.signal(libc::SIGHUP);
    let stderr = stderr_says(&server, "kept the current certificate");
    let line = stderr
        .lines()
        .find(|l| l.contains("kept the current certificate"))
        .unwrap_or_else(|| panic!("no refusal line:\n{stderr}"));
    assert!(
        line.contains("SIGHUP") && line.contains("is not the private key of the certificate"),
        "{line}"
    );
    let mut fresh = TlsConnection::open(server.port).unwrap();
    assert_eq!(fresh.certificate(), first);
    assert_eq!(fresh.get("/healthz").unwrap().0, 200);
}

#[test]
fn changed_files_are_reloaded_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let live = ecdsa_pair(dir.path());
    let next = Pair::make(dir.path(), "next", KeyKind::Ecdsa, 90).unwrap();
    let server = start_binary(&live, &[("TANDEM__TLS__RELOAD_CHECK_SECS", "1")]);
    next.install_as(&live);
    let stderr = stderr_says(&server, "the certificate files changed: new connections");
    assert!(
        stderr.contains("the certificate files changed: new connections get the certificate"),
        "{stderr}"
    );
    assert_eq!(
        TlsConnection::open(server.port).unwrap().certificate(),
        next.cert_der
    );
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let server = start_binary(&pair, &[("TANDEM__TLS__HANDSHAKE_TIMEOUT_MS", "300")]);
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let read = silent.read(&mut [0u8; 16]);
    // actix's own default is 3 s: well past this bound.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?} {read:?}",
        started.elapsed()
    );
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[test]
fn handshakes_beyond_the_cap_wait_for_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let server = start_binary(
        &pair,
        &[
            ("TANDEM__SERVER__WORKERS", "1"),
            ("TANDEM__TLS__MAX_HANDSHAKES", "1"),
            ("TANDEM__TLS__HANDSHAKE_TIMEOUT_MS", "1500"),
        ],
    );
    // A connection that sends nothing holds the worker's only handshake slot until it times out.
    let _silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let mut conn = TlsConnection::open(server.port).unwrap();
    assert_eq!(conn.get("/healthz").unwrap().0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "answered after {:?}, before the silent handshake's slot was free",
        started.elapsed()
    );
}

#[test]
fn healthcheck_works_against_an_https_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ecdsa_pair(dir.path());
    let server = start_binary(&pair, &[]);
    let run = |mode: &str| {
        let mut cmd = tandem_command();
        cmd.arg("healthcheck")
            .env("TANDEM__SERVER__PORT", server.port.to_string());
        for (k, v) in pair.env() {
            cmd.env(k, v);
        }
        cmd.env("TANDEM__TLS__MODE", mode).output().unwrap()
    };
    let out = run("files");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same probe in plain HTTP gets no answer from a TLS-only port: the TLS path is needed.
    assert_eq!(run("off").status.code(), Some(1));
}

#[test]
fn check_prints_each_certificate_and_warns_under_fourteen_days() {
    let dir = tempfile::tempdir().unwrap();
    let check = |pair: &Pair, status: i32| {
        let mut cmd = tandem_command();
        cmd.arg("check");
        for (k, v) in pair.env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(status), "{stderr}");
        stderr
    };
    let lasting = Pair::make(dir.path(), "lasting", KeyKind::Ecdsa, 90).unwrap();
    let stderr = check(&lasting, 0);
    let line = stderr
        .lines()
        .find(|l| l.contains("certificate 1 of 1 in"))
        .unwrap_or_else(|| panic!("no certificate line:\n{stderr}"));
    assert!(
        line.contains("subject names localhost, 127.0.0.1") && line.contains("expires 20"),
        "{line}"
    );
    assert!(!stderr.contains("under 14"), "{stderr}");

    let expiring = Pair::make(dir.path(), "expiring", KeyKind::Ecdsa, 5).unwrap();
    let stderr = check(&expiring, 0);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("tandem: warning: certificate 1 of 1 in")
                && l.contains("under 14")),
        "{stderr}"
    );

    // A pair `serve` would refuse is refused by `check` too, with the same sentence.
    let crossed = Pair {
        cert_file: lasting.cert_file.clone(),
        key_file: expiring.key_file.clone(),
        cert_der: Vec::new(),
    };
    let stderr = check(&crossed, 2);
    assert!(
        stderr.contains("is not the private key of the certificate in tls.cert_file"),
        "{stderr}"
    );
}
