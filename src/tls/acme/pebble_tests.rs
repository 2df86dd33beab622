//! The failed-renewal path against Debian's `pebble` (docs/reference.md §3 `tls.acme`): at the
//! renewal point with the challenge refused, the order fails, the old certificate stays in
//! service and the backoff retries until the challenge answers again. Only here, with the client
//! driven directly: the production backoff (a minute, doubling) is too slow for a test of the
//! binary. Everything else ACME does — the first order through the redirect listener, serving,
//! renewal, the cache on restart, SIGHUP — is proven through the real binary in
//! `tests/api/tls_acme.rs`, which shares this pebble harness.

#[path = "../../../tests/api/pebble.rs"]
mod pebble;

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, ServerName},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

use self::pebble::{DOMAIN, Pebble, connector, pebble_binary, serial_of};
use super::{AcmeSettings, Backoff, cache::CacheDir, issued::IssuedCertificate, run_with};
use crate::tls::{challenges::Http01Challenges, slot::CertificateSlot};

/// Long enough that ordering (about a second here) fits early in the lifetime and that the last
/// third (6 s) holds a failed renewal and its retries; short enough that the renewal point,
/// 12 s in, comes quickly.
const VALIDITY_SECS: u64 = 18;
const FAST_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(500),
    longest: Duration::from_secs(1),
};

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !value.is_empty() && value != "0" && !value.eq_ignore_ascii_case("false")
    })
}
/// Where pebble's validation requests land: answers from [`Http01Challenges`] unless told to
/// refuse, counting the requests it refused.
struct ChallengeServer {
    port: u16,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChallengeServer {
    async fn start(challenges: Arc<Http01Challenges>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let refusing = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (refusing.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (challenges, flag, count) = (challenges.clone(), flag.clone(), count.clone());
                tokio::spawn(answer(stream, challenges, flag, count));
            }
        });
        Self {
            port,
            refusing,
            refused,
            task,
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    challenges: Arc<Http01Challenges>,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let token = path.strip_prefix("/.well-known/acme-challenge/");
    let body = match token.and_then(|token| challenges.answer(token)) {
        Some(_) if refusing.load(Ordering::SeqCst) => {
            refused.fetch_add(1, Ordering::SeqCst);
            None
        }
        found => found,
    };
    let response = match body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A rustls server whose resolver is the slot, as the main listener's will be.
struct SlotServer {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for SlotServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlotServer {
    async fn start(slot: Arc<CertificateSlot>) -> Self {
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(slot);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(b"hello").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// The serial of the certificate a client trusting only `root` is served for `localhost`:
    /// the handshake itself proves the chain reaches pebble's root and names the domain.
    async fn served_serial(&self, root: &CertificateDer<'static>) -> String {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let name = ServerName::try_from(DOMAIN).expect("name");
        let tls = connector(root.clone())
            .connect(name, stream)
            .await
            .expect("a verified handshake");
        let leaf = &tls.get_ref().1.peer_certificates().expect("a certificate")[0];
        serial_of(leaf)
    }
}

fn slot_serial(slot: &CertificateSlot) -> Option<String> {
    slot.current().map(|key| serial_of(&key.cert[0]))
}

async fn wait_for_slot(
    slot: &CertificateSlot,
    other_than: Option<&str>,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match slot_serial(slot) {
            Some(serial) if Some(serial.as_str()) != other_than => return serial,
            _ => assert!(
                Instant::now() < deadline,
                "no new certificate within {limit:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// pebble validating against a challenge server that answers from the client's
/// [`Http01Challenges`], and the client itself behind a TLS server reading its slot.
struct Scenario {
    // Held for its Drop (pebble stopped by PID), declared first so that happens before the
    // temp dir holding its files goes.
    _pebble: Pebble,
    http01: ChallengeServer,
    root: CertificateDer<'static>,
    settings: AcmeSettings,
    slot: Arc<CertificateSlot>,
    server: SlotServer,
    task: JoinHandle<()>,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scenario {
    async fn start(binary: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let challenges = Arc::new(Http01Challenges::default());
        let http01 = ChallengeServer::start(challenges.clone()).await;
        let pebble = Pebble::start(binary, dir.path(), http01.port, VALIDITY_SECS).await;
        let root = pebble.root_certificate().await;
        let settings = AcmeSettings {
            domains: vec![DOMAIN.to_owned()],
            contact: "ops@tandem.test".to_owned(),
            directory_url: pebble.directory_url.clone(),
            cache_dir: dir.path().join("state/acme"),
            accept_terms_of_service: true,
            ca_file: Some(pebble.ca_file.clone()),
            ..AcmeSettings::default()
        };
        assert_eq!(settings.validate(), Ok(()));
        let slot = Arc::new(CertificateSlot::default());
        let server = SlotServer::start(slot.clone()).await;
        let task = tokio::spawn(run_with(
            settings.clone(),
            slot.clone(),
            challenges,
            FAST_BACKOFF,
        ));
        Self {
            _pebble: pebble,
            http01,
            root,
            settings,
            slot,
            server,
            task,
            started: Instant::now(),
            _dir: dir,
        }
    }

    fn note(&self, what: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let _ = writeln!(std::io::stderr(), "pebble test {elapsed:>6.2}s: {what}");
    }

    /// With the challenge refused, renewal (at two thirds of the lifetime, not before) fails
    /// and the old certificate stays in service; once it answers again, a retry renews.
    async fn renewal_survives_a_failure(&self, issued: &str) {
        let cache = CacheDir::open(&self.settings.cache_dir).expect("cache");
        let old: IssuedCertificate = cache
            .certificate(&self.settings.directory_url, &self.settings.domains)
            .expect("readable")
            .expect("cached");
        self.http01.refusing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(VALIDITY_SECS);
        while self.http01.refused.load(Ordering::SeqCst) == 0 {
            let current = slot_serial(&self.slot);
            assert_eq!(
                current.as_deref(),
                Some(issued),
                "replaced before the renewal point"
            );
            assert!(
                Instant::now() < deadline,
                "no renewal attempt within the lifetime"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.note("renewal attempted with the challenge refused");
        // pebble asks for the token only after the order started, so never before renew_at.
        let asked = SystemTime::now();
        let lifetime = old
            .not_after
            .duration_since(old.not_before)
            .expect("lifetime");
        let two_thirds = old.not_before + lifetime * 2 / 3;
        assert!(
            asked >= two_thirds,
            "renewal began before two thirds of the lifetime"
        );
        // The backoff retries (FAST_BACKOFF.first later), and fails again, while the old
        // certificate (6 s of its lifetime left at the renewal point) is still valid.
        let deadline = Instant::now() + Duration::from_secs(4);
        while self.http01.refused.load(Ordering::SeqCst) < 2 {
            assert!(
                Instant::now() < deadline,
                "no retry after the failed renewal"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            self.server.served_serial(&self.root).await,
            issued,
            "old certificate kept"
        );
        self.http01.refusing.store(false, Ordering::SeqCst);
        let renewed = wait_for_slot(&self.slot, Some(issued), Duration::from_secs(10)).await;
        self.note("renewed");
        let served = self.server.served_serial(&self.root).await;
        assert_eq!(served, renewed, "the renewed certificate is served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_old_certificate_and_is_retried() {
    let Some(binary) = pebble_binary() else {
        assert!(
            !under_ci(),
            "cannot run under CI: pebble is not installed (apt-get install pebble)"
        );
        let _ = writeln!(std::io::stderr(), "SKIPPED: pebble is not installed");
        return;
    };
    // The task's one-line steps, shown with --nocapture (RUST_LOG=info).
    let _ = env_logger::builder().is_test(true).try_init();
    let scenario = Scenario::start(&binary).await;
    let issued = wait_for_slot(&scenario.slot, None, Duration::from_secs(30)).await;
    scenario.note("first certificate issued");
    scenario.renewal_survives_a_failure(&issued).await;
}
