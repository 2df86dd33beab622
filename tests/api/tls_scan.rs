//! docs/reference.md §3 `tls`: testssl.sh (the Debian package) against the running binary on
//! loopback finds nothing of severity HIGH or CRITICAL. Its certificate is issued by a CA made
//! for the test (given to testssl.sh with `--add-ca`), valid 90 days and naming a CRL, so the
//! certificate findings judge tandem's handling rather than a self-signed placeholder.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    helpers::skip,
    tls::{Pair, start_binary},
};

/// The checks run: protocols and ALPN, cipher categories, server defaults and certificate,
/// HTTP headers (HSTS), and the known vulnerabilities. Each cipher one by one (`-e`) and the
/// client simulations are left out: they take minutes and add no severity rating.
const CHECKS: [&str; 5] = ["-p", "-s", "-S", "-h", "-U"];

/// Longest the scan may take before the test fails instead of hanging CI.
const SCAN_TIMEOUT: Duration = Duration::from_secs(400);

fn testssl() -> Option<&'static str> {
    ["testssl", "testssl.sh"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// A CA and a server certificate it issued for `localhost` and 127.0.0.1; returns the CA file.
fn ca_and_server_pair(dir: &Path) -> (std::path::PathBuf, Pair) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tandem test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let key = rcgen::KeyPair::generate().expect("server key");
    let mut server =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    server.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec!["http://127.0.0.1/ca.crl".to_string()],
    }];
    server.use_authority_key_identifier_extension = true;
    // rcgen's default start is 1975, which testssl.sh rates HIGH as a validity over ten years.
    let day = |days: i64| {
        let at = jiff::Zoned::now()
            .checked_add(jiff::Span::new().days(days))
            .unwrap();
        rcgen::date_time_ymd(i32::from(at.year()), at.month() as u8, at.day() as u8)
    };
    server.not_before = day(-1);
    server.not_after = day(90);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = server.signed_by(&key, &issuer).expect("server certificate");
    let pair = Pair {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        cert_der: cert.der().to_vec(),
    };
    std::fs::write(&pair.cert_file, cert.pem()).unwrap();
    std::fs::write(&pair.key_file, key.serialize_pem()).unwrap();
    (ca_file, pair)
}

#[test]
fn testssl_finds_nothing_high_or_critical() {
    let Some(testssl) = testssl() else {
        skip("testssl.sh is not installed (apt-get install testssl.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, pair) = ca_and_server_pair(dir.path());
    let server = start_binary(&pair, &[("TANDEM__TLS__HSTS_MAX_AGE_SECS", "31536000")]);
    let json = dir.path().join("testssl.json");
    let mut child = Command::new(testssl)
        .args(["--quiet", "--color", "0", "--warnings", "off", "--sneaky"])
        .args(["--openssl-timeout", "10", "--add-ca"])
        .arg(&ca_file)
        .arg("--jsonfile")
        .arg(&json)
        .args(CHECKS)
        .arg(format!("https://127.0.0.1:{}/", server.port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start testssl.sh");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = Instant::now() + SCAN_TIMEOUT;
    while child.try_wait().expect("testssl.sh status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("testssl.sh took longer than {SCAN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = reader.join().unwrap_or_default();
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("testssl.sh wrote its JSON"))
            .expect("testssl.sh JSON");
    assert!(
        findings.iter().any(|f| f["id"] == "TLS1_3"),
        "the scan did not run its checks:\n{report}"
    );
    let serious: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    // Printed past libtest's capture, so `cargo test` shows the summary to paste.
    let _ = writeln!(
        std::io::stdout(),
        "testssl.sh summary ({} findings):\n{report}",
        findings.len()
    );
    assert!(
        serious.is_empty(),
        "testssl.sh findings of severity HIGH or CRITICAL:\n{}\n\n{report}",
        serious.join("\n")
    );
}
