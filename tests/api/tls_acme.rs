//! docs/reference.md §3 `tls.acme`, §4 (the redirect listener), §9 (SIGHUP): automatic
//! certificates end to end through the real binary, against Debian's `pebble` with real http-01
//! validation. pebble's `httpPort` is tandem's `tls.redirect_port`, so every certificate here
//! was proven by the redirect listener answering from the ACME client's challenges. Everything
//! is set through the environment, as in a container (`tls.acme.domains` as a list included).

use std::{
    io::Write,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hyper::Version;
use rustls::pki_types::CertificateDer;

use crate::{
    helpers::{BinaryServer, fixtures, free_port, raw_get, skip},
    pebble::{DOMAIN, Pebble, pebble_binary, serial_of},
    tls::{Answer, HttpsClient},
};

/// pebble's certificate lifetime: renewal comes 8 s after each issue (two thirds), which leaves
/// the first certificate time for the checks before it, and a restart time to find the renewed
/// one in the cache before its own renewal point.
const VALIDITY_SECS: u64 = 12;
/// Where the redirect listener sends browsers (not tandem's test port: the setting is what
/// `Location` must carry).
const PUBLIC_PORT: u16 = 8443;
const ISSUED: &str = "acme: issued certificate ";
const ORDERING: &str = "acme: ordering a certificate";

/// pebble, its root, and the settings every start of tandem in the test shares.
struct Acme {
    pebble: Pebble,
    root: CertificateDer<'static>,
    redirect_port: u16,
    cache_dir: PathBuf,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Acme {
    async fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let redirect_port = free_port();
        let pebble = Pebble::start(binary, dir.path(), redirect_port, VALIDITY_SECS).await;
        let root = pebble.root_certificate().await;
        Self {
            root,
            redirect_port,
            cache_dir: dir.path().join("state/acme"),
            started: Instant::now(),
            pebble,
            _dir: dir,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TANDEM__TLS__MODE", "acme".into()),
            ("TANDEM__TLS__REDIRECT_PORT", self.redirect_port.to_string()),
            ("TANDEM__TLS__PUBLIC_PORT", PUBLIC_PORT.to_string()),
            ("TANDEM__TLS__ACME__DOMAINS", DOMAIN.into()),
            ("TANDEM__TLS__ACME__CONTACT", "ops@tandem.test".into()),
            (
                "TANDEM__TLS__ACME__DIRECTORY_URL",
                self.pebble.directory_url.clone(),
            ),
            (
                "TANDEM__TLS__ACME__CACHE_DIR",
                self.cache_dir.display().to_string(),
            ),
            ("TANDEM__TLS__ACME__ACCEPT_TERMS_OF_SERVICE", "true".into()),
            (
                "TANDEM__TLS__ACME__CA_FILE",
                self.pebble.ca_file.display().to_string(),
            ),
        ]
    }

    fn spawn_tandem(&self) -> BinaryServer {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        BinaryServer::spawn(&env)
    }

    /// A client for `server` that verifies the chain against pebble's root for `localhost`
    /// and offers h2 first: a certificate that is not pebble's, or not for `localhost`, fails.
    fn client(&self, server: &BinaryServer) -> HttpsClient {
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
        HttpsClient::trusting(&[b"h2", b"http/1.1"], Some(self.root.clone()), addr)
    }

    fn note(&self, what: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        // Straight to the handle, like `skip()`: libtest captures `eprintln!`.
        let _ = writeln!(std::io::stderr(), "tls_acme {elapsed:>6.2}s: {what}");
    }

    /// Waits (at most `within`, and only while it runs) until `server` has logged its `count`th
    /// issued certificate and returns that certificate's serial, as logged.
    async fn issued(&self, server: &mut BinaryServer, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let stderr = server.stderr();
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("tandem exited ({status}) before certificate number {count}:\n{stderr}");
            }
            if let Some(line) = stderr.lines().filter(|l| l.contains(ISSUED)).nth(count - 1) {
                let rest = &line[line.find(ISSUED).expect("found") + ISSUED.len()..];
                return rest.split_whitespace().next().expect("a serial").to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no certificate number {count} within {within:?}; tandem:\n{stderr}\npebble:\n{}",
                self.pebble.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `GET path` over HTTP/2 on a new, verified connection: the answer, with the served leaf.
async fn get_h2(client: &HttpsClient, path: &str) -> Answer {
    let answer = client.get(path).await;
    assert_eq!(answer.version, Version::HTTP_2, "{path} over h2");
    answer
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The first start: ordered through the redirect listener, served over verified h2, the
/// redirect listener still redirecting, the cache private, SIGHUP only logged.
async fn first_start(acme: &Acme, tandem: &mut BinaryServer) -> String {
    let issued = acme.issued(tandem, 1, Duration::from_secs(30)).await;
    acme.note("first certificate issued");
    let client = acme.client(tandem);
    let health = get_h2(&client, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        serial_of(&health.certificate),
        issued,
        "the issued one served"
    );
    let page = get_h2(&client, "/page.html").await;
    assert_eq!(page.status, 200);
    let on_disk = std::fs::read(fixtures().join("htdocs/page.html")).expect("fixture");
    assert_eq!(page.body, on_disk, "the static file");

    let port = acme.redirect_port;
    let (status, text) = tokio::task::spawn_blocking(move || raw_get(port, "/page.html?x=1"))
        .await
        .expect("joined")
        .expect("the redirect listener answers");
    assert_eq!(status, 308, "{text}");
    let location = format!("location: https://127.0.0.1:{PUBLIC_PORT}/page.html?x=1");
    assert!(text.to_lowercase().contains(&location), "{text}");

    assert_eq!(mode(&acme.cache_dir), 0o700, "cache directory mode");
    for file in ["account.json", "certificate-key.pem", "certificate.pem"] {
        assert_eq!(mode(&acme.cache_dir.join(file)), 0o600, "{file}");
    }

    tandem.signal(libc::SIGHUP);
    let said = tandem.stderr_once_it_says(
        "SIGHUP: certificates come from ACME",
        Duration::from_secs(5),
    );
    assert!(
        said.contains("SIGHUP: certificates come from ACME"),
        "{said}"
    );
    assert_eq!(
        get_h2(&client, "/healthz").await.status,
        200,
        "serving after SIGHUP"
    );
    acme.note("served over h2, redirected, SIGHUP logged");
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_ordered_served_renewed_and_cached_across_a_restart() {
    let Some(binary) = pebble_binary() else {
        skip("pebble is not installed (apt-get install pebble)");
        return;
    };
    let acme = Acme::start(&binary).await;
    let mut tandem = acme.spawn_tandem();
    let first = first_start(&acme, &mut tandem).await;
    let account = std::fs::read(acme.cache_dir.join("account.json")).expect("account cached");

    // Renewal at two thirds of the lifetime, by the same process, seen by a new connection.
    let renewed = acme
        .issued(&mut tandem, 2, Duration::from_secs(VALIDITY_SECS + 10))
        .await;
    acme.note("renewed");
    assert_ne!(renewed, first, "a renewal is a new certificate");
    let answer = get_h2(&acme.client(&tandem), "/healthz").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        serial_of(&answer.certificate),
        renewed,
        "the renewed one served"
    );
    assert_eq!(
        tandem.child.try_wait().ok().flatten(),
        None,
        "still the same process"
    );
    drop(tandem);

    // A restart serves the renewed certificate from the cache, without ordering.
    let tandem = acme.spawn_tandem();
    let loaded =
        tandem.stderr_once_it_says("acme: loaded cached certificate", Duration::from_secs(10));
    assert!(
        loaded.contains(&format!("loaded cached certificate {renewed}")),
        "{loaded}"
    );
    let client = acme.client(&tandem);
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match client.try_get("/healthz", &[]).await {
            Ok(answer) => break answer,
            Err(err) => assert!(
                Instant::now() < deadline,
                "{err}; tandem:\n{}",
                tandem.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    acme.note("restart served the cached certificate");
    assert_eq!(answer.status, 200);
    assert_eq!(
        serial_of(&answer.certificate),
        renewed,
        "the cached one served"
    );
    let stderr = tandem.stderr();
    assert!(!stderr.contains(ORDERING), "a restart ordered:\n{stderr}");
    assert!(!stderr.contains("registered account"), "{stderr}");
    let account_now = std::fs::read(acme.cache_dir.join("account.json")).expect("account");
    assert_eq!(
        account_now, account,
        "the account is reused, not registered again"
    );
}
