//! End to end against Debian's `pebble` (the Let's Encrypt project's test CA) on loopback, with
//! real HTTP-01 validation: pebble's `httpPort` points at a small HTTP server here that answers
//! from the same [`Http01Challenges`] the ACME task fills. The domain is `localhost`, which
//! pebble resolves through the system resolver (`/etc/hosts`) to the loopback address.
//! pebble's `certificateValidityPeriod` makes certificates live seconds, so the renewal point
//! (two thirds of the lifetime) comes within the test.

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{AcmeSettings, Backoff, cache::CacheDir, issued::IssuedCertificate, run_with};
use crate::tls::{challenges::Http01Challenges, slot::CertificateSlot};

/// Long enough that ordering (about a second here) fits early in the lifetime and that the last
/// third (6 s) holds a failed renewal and its retries; short enough that the renewal point,
/// 12 s in, comes quickly.
const VALIDITY_SECS: u64 = 18;
const DOMAIN: &str = "localhost";
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

fn pebble_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file())
}

/// The pebble process this test started, stopped by its PID when the test ends.
struct Pebble {
    child: Child,
    directory_url: String,
    management: SocketAddr,
    ca_file: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// pebble serves its API over HTTPS; this CA signs that listener's certificate and is what
/// `tls.acme.ca_file` trusts, as an operator would for a private CA.
fn write_listener_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_params =
        rcgen::CertificateParams::new(vec![DOMAIN.to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("pebble.pem"),
        dir.join("pebble-key.pem"),
    );
    fs::write(&paths.0, ca.pem()).expect("write CA");
    fs::write(&paths.1, leaf.pem()).expect("write leaf");
    fs::write(&paths.2, leaf_key.serialize_pem()).expect("write leaf key");
    paths
}

impl Pebble {
    async fn start(binary: &Path, dir: &Path, http01_port: u16) -> Self {
        let (ca_file, certificate, private_key) = write_listener_certificate(dir);
        let (api, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": certificate,
            "privateKey": private_key,
            "httpPort": http01_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": VALIDITY_SECS,
        }});
        let config_path = dir.join("pebble-config.json");
        fs::write(&config_path, config.to_string()).expect("write pebble config");
        let log = fs::File::create(dir.join("pebble.log")).expect("pebble log");
        let child = Command::new(binary)
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order is validated for real, renewals included.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("pebble starts");
        let pebble = Self {
            child,
            directory_url: format!("https://127.0.0.1:{api}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            ca_file,
        };
        wait_for_port(api, dir).await;
        wait_for_port(management, dir).await;
        pebble
    }

    /// pebble makes a new root at every start; its management API hands it out.
    async fn root_certificate(&self) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        let ca = fs::read(&self.ca_file).expect("CA file");
        roots
            .add(CertificateDer::from_pem_slice(&ca).expect("CA PEM"))
            .expect("CA root");
        let stream = TcpStream::connect(self.management)
            .await
            .expect("management port");
        let name = ServerName::try_from("127.0.0.1").expect("IP name");
        let mut tls = connector(roots)
            .connect(name, stream)
            .await
            .expect("management TLS");
        let request = "GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        tls.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        let _ = tls.read_to_string(&mut response).await;
        let begin = response
            .find("-----BEGIN")
            .expect("a PEM root in the answer");
        CertificateDer::from_pem_slice(&response.as_bytes()[begin..]).expect("root PEM")
    }
}

async fn wait_for_port(port: u16, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        let log = fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "pebble did not listen on {port}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn connector(roots: RootCertStore) -> TlsConnector {
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
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
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).expect("pebble root");
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let name = ServerName::try_from(DOMAIN).expect("name");
        let tls = connector(roots)
            .connect(name, stream)
            .await
            .expect("a verified handshake");
        let leaf = &tls.get_ref().1.peer_certificates().expect("a certificate")[0];
        serial_of(leaf)
    }
}

fn serial_of(leaf: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).expect("leaf parses");
    parsed
        .raw_serial_as_string()
        .replace(':', "")
        .to_uppercase()
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

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// Everything one run of the scenario shares: pebble, the challenge answers, pebble's root.
struct Scenario {
    // Held for its Drop (pebble stopped by PID), declared first so that happens before the
    // temp dir holding its files goes.
    _pebble: Pebble,
    http01: ChallengeServer,
    challenges: Arc<Http01Challenges>,
    root: CertificateDer<'static>,
    settings: AcmeSettings,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Scenario {
    async fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let challenges = Arc::new(Http01Challenges::default());
        let http01 = ChallengeServer::start(challenges.clone()).await;
        let pebble = Pebble::start(binary, dir.path(), http01.port).await;
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
        Self {
            _pebble: pebble,
            http01,
            challenges,
            root,
            settings,
            started: Instant::now(),
            _dir: dir,
        }
    }

    /// What a start of tandem does: a fresh slot behind a TLS server, and the ACME task.
    async fn start_tandem(&self) -> (Arc<CertificateSlot>, SlotServer, JoinHandle<()>) {
        let slot = Arc::new(CertificateSlot::default());
        let server = SlotServer::start(slot.clone()).await;
        let task = tokio::spawn(run_with(
            self.settings.clone(),
            slot.clone(),
            self.challenges.clone(),
            FAST_BACKOFF,
        ));
        (slot, server, task)
    }

    fn cache_file(&self, name: &str) -> PathBuf {
        self.settings.cache_dir.join(name)
    }

    fn note(&self, what: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let _ = writeln!(std::io::stderr(), "pebble test {elapsed:>6.2}s: {what}");
    }

    /// Nothing cached: the task orders, pebble validates, the slot fills, the key files are
    /// private. Returns the serial.
    async fn first_start_orders(&self) -> String {
        let (slot, server, task) = self.start_tandem().await;
        let issued = wait_for_slot(&slot, None, Duration::from_secs(30)).await;
        self.note("first certificate issued");
        let served = server.served_serial(&self.root).await;
        assert_eq!(served, issued, "the slot's certificate is the one served");
        assert_eq!(
            mode(&self.settings.cache_dir),
            0o700,
            "cache directory mode"
        );
        for file in ["account.json", "certificate-key.pem", "certificate.pem"] {
            assert_eq!(mode(&self.cache_file(file)), 0o600, "{file}");
        }
        task.abort();
        issued
    }

    /// A restart serves the cached certificate at once, without an order (a new order would
    /// carry a new serial).
    async fn restart_serves_the_cache(&self, issued: &str) -> (Arc<CertificateSlot>, SlotServer) {
        let cached = super::load_cached(&self.settings).expect("cached certificate loads");
        assert_eq!(serial_of(&cached.cert[0]), issued, "load_cached");
        let (slot, server, task) = self.start_tandem().await;
        // Detached: it keeps running through the renewal phase; the test's runtime ends it.
        drop(task);
        let first = wait_for_slot(&slot, None, Duration::from_secs(1)).await;
        assert_eq!(
            first, issued,
            "the restart ordered instead of using the cache"
        );
        let served = server.served_serial(&self.root).await;
        assert_eq!(
            served, issued,
            "the cached certificate is served after a restart"
        );
        self.note("restart served the cached certificate");
        (slot, server)
    }

    /// With the challenge refused, renewal (at two thirds of the lifetime, not before) fails
    /// and the old certificate stays in service; once it answers again, a retry renews.
    async fn renewal_survives_a_failure(
        &self,
        slot: &CertificateSlot,
        server: &SlotServer,
        issued: &str,
    ) {
        let cache = CacheDir::open(&self.settings.cache_dir).expect("cache");
        let old: IssuedCertificate = cache
            .certificate(&self.settings.directory_url, &self.settings.domains)
            .expect("readable")
            .expect("cached");
        self.http01.refusing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(VALIDITY_SECS);
        while self.http01.refused.load(Ordering::SeqCst) == 0 {
            let current = slot_serial(slot);
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
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            server.served_serial(&self.root).await,
            issued,
            "old certificate kept"
        );
        self.http01.refusing.store(false, Ordering::SeqCst);
        let renewed = wait_for_slot(slot, Some(issued), Duration::from_secs(10)).await;
        self.note("renewed");
        let served = server.served_serial(&self.root).await;
        assert_eq!(served, renewed, "the renewed certificate is served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_issued_served_cached_and_renewed_by_pebble() {
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
    let issued = scenario.first_start_orders().await;
    let account = fs::read(scenario.cache_file("account.json")).expect("account cached");
    let (slot, server) = scenario.restart_serves_the_cache(&issued).await;
    scenario
        .renewal_survives_a_failure(&slot, &server, &issued)
        .await;
    let account_now = fs::read(scenario.cache_file("account.json")).expect("account");
    assert_eq!(
        account_now, account,
        "the account is reused, not registered again"
    );
}
