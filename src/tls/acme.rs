//! Automatic certificates by ACME, RFC 8555 (docs/reference.md §3, `tls.acme`): the settings,
//! their validation, and the long-running task that keeps [`CertificateSlot`] filled — from the
//! cache at start, from the CA when there is none, again two thirds into each certificate's
//! lifetime, with bounded exponential backoff while the CA or the challenge fails.
//!
//! Built on `instant-acme`, which leaves the order to us: the renewal point, the challenge
//! answered through the shared [`Http01Challenges`], and the cache layout are tandem's.

mod cache;
mod issued;
mod order;
#[cfg(test)]
mod pebble_tests;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use log::{info, warn};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use self::{
    cache::CacheDir,
    issued::{IssuedCertificate, rfc3339},
};
use super::{challenges::Http01Challenges, slot::CertificateSlot};
use crate::config::ConfigError;

/// Let's Encrypt's production directory: trusted certificates, strict rate limits.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous limits; try here first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[tls.acme]`. Used when `tls.mode = "acme"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeSettings {
    /// The names the certificate covers; each must resolve to this server for the CA.
    pub domains: Vec<String>,
    /// E-mail address the CA may write to about the account (expiry, policy changes).
    pub contact: String,
    pub directory_url: String,
    /// Account and certificate cache; relative paths are from the working directory.
    pub cache_dir: PathBuf,
    /// The CA's terms of service are agreed to only when this is `true`.
    pub accept_terms_of_service: bool,
    /// A PEM root certificate trusted for the directory's HTTPS instead of the system roots
    /// (a private or test CA such as pebble).
    pub ca_file: Option<PathBuf>,
    pub challenge: AcmeChallenge,
}

/// How the CA checks that tandem answers for the domains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeChallenge {
    /// The CA fetches `http://<domain>/.well-known/acme-challenge/<token>` on port 80, which the
    /// redirect listener (`tls.redirect_port`) answers.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            contact: String::new(),
            directory_url: LETS_ENCRYPT_PRODUCTION.to_owned(),
            cache_dir: PathBuf::from("acme"),
            accept_terms_of_service: false,
            ca_file: None,
            challenge: AcmeChallenge::Http01,
        }
    }
}

fn key_problem(key: &str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(format!("configuration key `tls.acme.{key}` {problem}"))
}

impl AcmeSettings {
    /// Rejects settings no CA would accept, naming the key (docs/reference.md §3).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(key_problem(
                "domains",
                "must list at least one domain name, e.g. [\"example.com\"]",
            ));
        }
        if let Some(bad) = self.domains.iter().find(|d| !is_dns_name(d)) {
            return Err(key_problem(
                "domains",
                format!(
                    "holds {bad:?}, which is not a domain name (no IP addresses or wildcards: \
                     http-01 cannot prove those)"
                ),
            ));
        }
        if !is_email(&self.contact) {
            return Err(key_problem(
                "contact",
                format!(
                    "is {:?}; give an e-mail address the CA can reach",
                    self.contact
                ),
            ));
        }
        self.validate_directory()
    }

    fn validate_directory(&self) -> Result<(), ConfigError> {
        if !self.directory_url.starts_with("https://") {
            return Err(key_problem(
                "directory_url",
                format!(
                    "is {:?}; an ACME directory URL starts with https://",
                    self.directory_url
                ),
            ));
        }
        if !self.accept_terms_of_service {
            return Err(key_problem(
                "accept_terms_of_service",
                "must be true: read the CA's terms of service (Let's Encrypt: \
                 https://letsencrypt.org/repository/) and set it to agree to them",
            ));
        }
        if self.cache_dir.as_os_str().is_empty() {
            return Err(key_problem("cache_dir", "must name a directory"));
        }
        match &self.ca_file {
            Some(ca_file) if !ca_file.is_file() => Err(key_problem(
                "ca_file",
                format!("is {}, which is not a readable file", ca_file.display()),
            )),
            _ => Ok(()),
        }
    }
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The certificate cached for these settings, if it is still valid: read from disk only, so the
/// listener can start with it before the ACME task has run at all.
pub(crate) fn load_cached(settings: &AcmeSettings) -> Option<Arc<CertifiedKey>> {
    cached(settings).map(|issued| issued.key)
}

fn cached(settings: &AcmeSettings) -> Option<IssuedCertificate> {
    let cache = CacheDir::open(&settings.cache_dir).ok()?;
    match cache.certificate(&settings.directory_url, &settings.domains) {
        Ok(Some(issued)) if !issued.is_expired(SystemTime::now()) => Some(issued),
        Ok(_) => None,
        Err(err) => {
            warn!("acme: ignoring the cached certificate: {err}");
            None
        }
    }
}

/// How long to wait after a failed order before the next one: doubling from `first` up to
/// `longest`, so a CA outage costs a retry an hour and not a rate-limit ban.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) longest: Duration,
}

impl Backoff {
    pub(crate) const PRODUCTION: Self = Self {
        first: Duration::from_secs(60),
        longest: Duration::from_secs(3600),
    };

    fn after(self, previous: Option<Duration>) -> Duration {
        previous.map_or(self.first, |wait| (wait * 2).min(self.longest))
    }
}

/// Keeps `slot` holding a valid certificate for `settings.domains`, for as long as it runs (the
/// caller spawns it and aborts it at shutdown). Never returns.
pub(crate) async fn run(
    settings: AcmeSettings,
    slot: Arc<CertificateSlot>,
    challenges: Arc<Http01Challenges>,
) {
    run_with(settings, slot, challenges, Backoff::PRODUCTION).await;
}

async fn run_with(
    settings: AcmeSettings,
    slot: Arc<CertificateSlot>,
    challenges: Arc<Http01Challenges>,
    backoff: Backoff,
) {
    let mut current = cached(&settings);
    if let Some(issued) = &current {
        slot.replace(issued.key.clone());
        info!(
            "acme: loaded cached certificate {} for {}, expires {}, renewal at {}",
            issued.serial,
            issued.dns_names.join(", "),
            rfc3339(issued.not_after),
            rfc3339(issued.renew_at())
        );
    }
    let mut wait = None;
    loop {
        if let Some(issued) = &current {
            sleep_until(issued.renew_at()).await;
        }
        match renew(&settings, &challenges).await {
            Ok(issued) => {
                slot.replace(issued.key.clone());
                log_issued(&issued);
                current = Some(issued);
                wait = None;
            }
            Err(err) => {
                let next = backoff.after(wait);
                log_failure(&err, next, current.as_ref());
                tokio::time::sleep(next).await;
                wait = Some(next);
            }
        }
    }
}

async fn renew(
    settings: &AcmeSettings,
    challenges: &Http01Challenges,
) -> Result<IssuedCertificate, String> {
    let cache = CacheDir::open(&settings.cache_dir)?;
    order::obtain(settings, &cache, challenges).await
}

/// Wakes at least hourly to look at the wall clock again: a suspended VM or a clock stepped by
/// NTP would otherwise stretch a 60-day monotonic sleep past the certificate's expiry.
async fn sleep_until(when: SystemTime) {
    const RECHECK: Duration = Duration::from_secs(3600);
    while let Ok(wait) = when.duration_since(SystemTime::now()) {
        if wait.is_zero() {
            return;
        }
        tokio::time::sleep(wait.min(RECHECK)).await;
    }
}

fn log_issued(issued: &IssuedCertificate) {
    info!(
        "acme: issued certificate {} for {}, expires {}, renewal at {}",
        issued.serial,
        issued.dns_names.join(", "),
        rfc3339(issued.not_after),
        rfc3339(issued.renew_at())
    );
}

fn log_failure(err: &str, next: Duration, serving: Option<&IssuedCertificate>) {
    match serving {
        Some(old) => warn!(
            "acme: renewal failed: {err}; retrying in {next:?}, still serving {} (expires {})",
            old.serial,
            rfc3339(old.not_after)
        ),
        None => warn!(
            "acme: ordering failed: {err}; retrying in {next:?}, no certificate to serve until then"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AcmeSettings {
        AcmeSettings {
            domains: vec!["example.com".into(), "www.example.com".into()],
            contact: "ops@example.com".into(),
            accept_terms_of_service: true,
            ..AcmeSettings::default()
        }
    }

    fn problem(settings: AcmeSettings) -> String {
        settings.validate().expect_err("invalid").to_string()
    }

    #[test]
    fn complete_settings_are_accepted_and_default_to_lets_encrypt_production() {
        let settings = valid();
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.directory_url, LETS_ENCRYPT_PRODUCTION);
        assert_eq!(settings.challenge, AcmeChallenge::Http01);
    }

    #[test]
    fn each_problem_names_its_key() {
        let cases: [(AcmeSettings, &str); 7] = [
            (
                AcmeSettings {
                    domains: vec![],
                    ..valid()
                },
                "tls.acme.domains",
            ),
            (
                AcmeSettings {
                    domains: vec!["*.example.com".into()],
                    ..valid()
                },
                "tls.acme.domains",
            ),
            (
                AcmeSettings {
                    domains: vec!["127.0.0.1".into()],
                    ..valid()
                },
                "tls.acme.domains",
            ),
            (
                AcmeSettings {
                    contact: "ops".into(),
                    ..valid()
                },
                "tls.acme.contact",
            ),
            (
                AcmeSettings {
                    directory_url: "http://ca/dir".into(),
                    ..valid()
                },
                "tls.acme.directory_url",
            ),
            (
                AcmeSettings {
                    accept_terms_of_service: false,
                    ..valid()
                },
                "`tls.acme.accept_terms_of_service` must be true",
            ),
            (
                AcmeSettings {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..valid()
                },
                "tls.acme.ca_file",
            ),
        ];
        for (settings, expected) in cases {
            let sentence = problem(settings);
            assert!(sentence.contains(expected), "{sentence}");
        }
    }

    #[test]
    fn unknown_keys_and_challenges_are_refused() {
        let unknown = toml::from_str::<AcmeSettings>("domain = [\"example.com\"]");
        assert!(
            unknown
                .expect_err("unknown key")
                .to_string()
                .contains("domain")
        );
        let alpn = toml::from_str::<AcmeSettings>("challenge = \"tls-alpn-01\"");
        assert!(
            alpn.expect_err("unsupported")
                .to_string()
                .contains("http-01")
        );
        let http = toml::from_str::<AcmeSettings>("challenge = \"http-01\"").expect("parses");
        assert_eq!(http.challenge, AcmeChallenge::Http01);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff::PRODUCTION;
        let mut wait = None;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let next = backoff.after(wait);
            seen.push(next.as_secs());
            wait = Some(next);
        }
        assert_eq!(seen, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
