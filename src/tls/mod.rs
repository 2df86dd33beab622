//! HTTPS on the main listener (docs/reference.md §3 `tls`, §9 reload): the rustls server
//! configuration (TLS 1.2 and 1.3 with rustls' safe defaults on the `ring` provider; actix-http
//! adds ALPN `h2` and `http/1.1`), the certificate slot every handshake reads, the pair from
//! files and its reload, the HSTS header, and the certificate lines of `tandem check`. Beside it,
//! the plain-HTTP listener that redirects to HTTPS ([`redirect`]) and the ACME client ([`acme`]).

pub(crate) mod acme;
pub(crate) mod certificates;
pub(crate) mod challenges;
pub mod redirect;
pub(crate) mod reload;
pub(crate) mod slot;

use std::{sync::Arc, time::Duration};

use actix_web::http::header::HeaderValue;
use rustls::{ServerConfig, crypto::ring, version};

use tokio::signal::unix::{Signal, SignalKind, signal};

use self::{
    certificates::{PairError, PemFiles, PemPaths},
    challenges::Http01Challenges,
    reload::{CertificateTask, FileReload},
    slot::CertificateSlot,
};
use crate::config::{AcmeSettings, ConfigError, TlsMode, TlsSettings};

/// Everything the main listener needs to speak HTTPS, built once at start.
pub(crate) struct Https {
    /// The certificate handshakes get; file reloads (and ACME renewals) replace it.
    pub(crate) slot: Arc<CertificateSlot>,
    pub(crate) server_config: ServerConfig,
    pub(crate) handshake_timeout: Duration,
    /// Handshakes in flight per worker; more connections wait in the accept queue.
    pub(crate) max_handshakes: usize,
    /// With `tls.mode = "files"`: the files and what was loaded from them.
    files: Option<(PemPaths, PemFiles)>,
    reload_every: Option<Duration>,
    /// With `tls.mode = "acme"`: the client's settings, until `keep_current` starts it.
    acme: Option<AcmeSettings>,
    /// With `tls.mode = "acme"`: the http-01 answers the client leaves for the redirect listener.
    pub(crate) challenges: Option<Arc<Http01Challenges>>,
}

impl Https {
    /// `None` with `tls.mode = "off"`. With `"files"` the pair is loaded and checked now, so a bad
    /// one stops the start with its sentence (exit status 2).
    pub(crate) fn from_settings(tls: &TlsSettings) -> Result<Option<Self>, ConfigError> {
        let slot = Arc::new(CertificateSlot::default());
        let files = match tls.mode {
            TlsMode::Off => return Ok(None),
            TlsMode::Acme => None,
            TlsMode::Files => {
                let paths = pem_paths(tls);
                let files = paths.read().map_err(refused)?;
                let loaded = files.parse(&paths).map_err(refused)?;
                for facts in &loaded.chain {
                    log::info!(
                        "serving the certificate from {}: {facts}",
                        paths.cert_file.display()
                    );
                }
                slot.replace(loaded.key);
                Some((paths, files))
            }
        };
        Ok(Some(Self {
            server_config: server_config(slot.clone())?,
            slot,
            handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms),
            max_handshakes: tls.max_handshakes,
            files,
            reload_every: (tls.reload_check_secs > 0)
                .then(|| Duration::from_secs(tls.reload_check_secs)),
            acme: tls.acme.clone().filter(|_| tls.mode == TlsMode::Acme),
            challenges: (tls.mode == TlsMode::Acme).then(Arc::default),
        }))
    }

    /// Starts what keeps the certificate current: the file reload (SIGHUP and changed files), or
    /// the ACME client (cached certificate, order, renewal). Call it once, inside the runtime.
    pub(crate) fn keep_current(&mut self) -> std::io::Result<Option<CertificateTask>> {
        if let Some((paths, files)) = self.files.take() {
            return FileReload::new(paths, &files, self.slot.clone(), self.reload_every)
                .spawn()
                .map(Some);
        }
        let (Some(settings), Some(challenges)) = (self.acme.take(), self.challenges.clone()) else {
            return Ok(None);
        };
        // Installed now, like the file reload's: SIGHUP must not end an ACME server either.
        let hangup = signal(SignalKind::hangup())?;
        let client = acme::run(settings, self.slot.clone(), challenges);
        Ok(Some(CertificateTask(tokio::spawn(acme_until_stopped(
            client, hangup,
        )))))
    }
}

/// Runs the ACME client; SIGHUP is answered with a log line, since there are no files to read.
async fn acme_until_stopped(client: impl std::future::Future<Output = ()>, mut hangup: Signal) {
    tokio::pin!(client);
    loop {
        tokio::select! {
            () = &mut client => return,
            Some(()) = hangup.recv() => log::info!(
                "SIGHUP: certificates come from ACME (tls.mode = \"acme\"), nothing to reload; renewal runs on its own schedule"
            ),
        }
    }
}

/// The rustls configuration of the main listener: certificates come from `slot`. ALPN is
/// actix-http's to set: `listen_rustls_0_23` puts `h2` then `http/1.1` (which `/socket` needs)
/// in front of whatever the configuration lists, so it lists nothing.
pub(crate) fn server_config(slot: Arc<CertificateSlot>) -> Result<ServerConfig, ConfigError> {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|err| ConfigError::new(format!("cannot configure TLS: {err}")))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    Ok(config)
}

/// `Strict-Transport-Security: max-age=N`, built once; `None` when `tls.hsts_max_age_secs` is 0
/// or the listener speaks plain HTTP (browsers ignore the header there, RFC 6797 §8.1).
pub(crate) fn hsts_header(tls: &TlsSettings) -> Option<HeaderValue> {
    (tls.mode != TlsMode::Off && tls.hsts_max_age_secs > 0)
        .then(|| HeaderValue::try_from(format!("max-age={}", tls.hsts_max_age_secs)))
        .and_then(Result::ok)
}

fn pem_paths(tls: &TlsSettings) -> PemPaths {
    PemPaths {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
    }
}

fn refused(err: PairError) -> ConfigError {
    ConfigError::new(err.to_string())
}

/// Certificates under this many days from expiry get a warning from `tandem check`.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// What `tandem check` says about the configured certificates (docs/reference.md §2): one line
/// per certificate of the chain, and warnings for those expiring within 14 days. Empty unless
/// `tls.mode = "files"`; `Err` is the sentence that would stop `tandem serve`.
pub fn certificate_report(tls: &TlsSettings) -> Result<CertificateReport, String> {
    let mut report = CertificateReport::default();
    match (tls.mode, &tls.acme) {
        (TlsMode::Files, _) => {}
        // The certificate may not exist yet, and checking must not create the cache: say where
        // it will come from instead.
        (TlsMode::Acme, Some(acme)) => {
            report.lines.push(format!(
                "certificates for {} come from ACME ({}), cached in {}; renewed two thirds into their lifetime",
                acme.domains.join(", "),
                acme.directory_url,
                acme.cache_dir.display()
            ));
            return Ok(report);
        }
        _ => return Ok(report),
    }
    let paths = pem_paths(tls);
    let loaded = paths.load().map_err(|err| err.to_string())?;
    let now = jiff::Timestamp::now();
    let count = loaded.chain.len();
    for (i, facts) in loaded.chain.iter().enumerate() {
        let place = format!(
            "certificate {} of {count} in {}",
            i + 1,
            paths.cert_file.display()
        );
        let left = facts.not_after.as_second() - now.as_second();
        let days = left.div_euclid(86_400);
        report
            .lines
            .push(format!("{place}: {facts} (in {days} days)"));
        if left < 0 {
            report
                .warnings
                .push(format!("{place} expired on {}", facts.not_after));
        } else if days < EXPIRY_WARNING_DAYS {
            report.warnings.push(format!(
                "{place} expires in {days} days (on {}), under {EXPIRY_WARNING_DAYS}; renew it",
                facts.not_after
            ));
        }
    }
    Ok(report)
}

/// Lines for `tandem check`.
#[derive(Debug, Default)]
pub struct CertificateReport {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_is_built_only_for_https_with_a_max_age() {
        let mut tls = TlsSettings {
            hsts_max_age_secs: 600,
            ..TlsSettings::default()
        };
        assert_eq!(hsts_header(&tls), None, "plain HTTP");
        tls.mode = TlsMode::Files;
        assert_eq!(hsts_header(&tls).unwrap(), "max-age=600");
        tls.hsts_max_age_secs = 0;
        assert_eq!(hsts_header(&tls), None, "max-age 0");
    }

    #[test]
    fn check_says_where_acme_certificates_come_from() {
        let tls = TlsSettings {
            mode: TlsMode::Acme,
            acme: Some(AcmeSettings {
                domains: vec!["example.com".into()],
                ..AcmeSettings::default()
            }),
            ..TlsSettings::default()
        };
        let report = certificate_report(&tls).unwrap();
        assert_eq!(report.lines.len(), 1, "{:?}", report.lines);
        assert!(
            report.lines[0].contains("example.com"),
            "{}",
            report.lines[0]
        );
        assert!(report.lines[0].contains(crate::config::LETS_ENCRYPT_PRODUCTION));
        assert!(report.warnings.is_empty());
    }
}
