//! Debian's `pebble` (the Let's Encrypt project's test CA) on free loopback ports in a temp dir,
//! stopped by its PID when dropped, with real HTTP-01 validation against `httpPort`. The domain
//! is `localhost`, which pebble resolves through the system resolver (`/etc/hosts`) to loopback.
//! `certificateValidityPeriod` makes certificates live seconds, so the renewal point (two thirds
//! of the lifetime) comes within a test.
//!
//! One harness for two test crates: `tests/api` (`tls_acme`, the real binary) lists it as a
//! module, and the library's `tls::acme` unit tests (the failed-renewal path, which needs a fast
//! backoff only they can set) include this file with `#[path]`. So it uses nothing from either
//! crate, only dependencies both have.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// The name every test certificate is ordered for.
pub const DOMAIN: &str = "localhost";

/// The `pebble` on `PATH`, if installed.
pub fn pebble_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file())
}

/// The pebble process a test started, stopped by its PID when dropped.
pub struct Pebble {
    child: Child,
    /// The ACME directory, for `tls.acme.directory_url`.
    pub directory_url: String,
    management: SocketAddr,
    /// The root that signed pebble's own HTTPS listener, for `tls.acme.ca_file`.
    pub ca_file: PathBuf,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unused_port() -> u16 {
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
    /// Starts `binary` with its files in `dir`, validating http-01 challenges on
    /// `127.0.0.1:http01_port` and issuing certificates valid for `validity_secs`; returns once
    /// its API and management ports listen.
    pub async fn start(binary: &Path, dir: &Path, http01_port: u16, validity_secs: u64) -> Self {
        let (ca_file, certificate, private_key) = write_listener_certificate(dir);
        let (api, management) = (unused_port(), unused_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": certificate,
            "privateKey": private_key,
            "httpPort": http01_port,
            "tlsPort": unused_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = dir.join("pebble-config.json");
        fs::write(&config_path, config.to_string()).expect("write pebble config");
        let log_path = dir.join("pebble.log");
        let log = fs::File::create(&log_path).expect("pebble log");
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
            log: log_path,
        };
        pebble.wait_for_port(api).await;
        pebble.wait_for_port(management).await;
        pebble
    }

    /// What pebble wrote so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen on {port}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// pebble makes a new root at every start; its management API hands it out.
    pub async fn root_certificate(&self) -> CertificateDer<'static> {
        let ca = fs::read(&self.ca_file).expect("CA file");
        let stream = TcpStream::connect(self.management)
            .await
            .expect("management port");
        let name = ServerName::try_from("127.0.0.1").expect("IP name");
        let mut tls = connector(CertificateDer::from_pem_slice(&ca).expect("CA PEM"))
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

/// A TLS client that trusts `root` only and offers no ALPN.
pub fn connector(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("a root certificate");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A certificate's serial number in upper-case hex, without colons.
pub fn serial_of(leaf: &[u8]) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).expect("leaf parses");
    parsed
        .raw_serial_as_string()
        .replace(':', "")
        .to_uppercase()
}
