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
    sync::Arc,
    time::{Duration, SystemTime},
};

use log::{info, warn};

use self::{
    cache::CacheDir,
    issued::{IssuedCertificate, rfc3339},
};
use super::{challenges::Http01Challenges, slot::CertificateSlot};
pub(crate) use crate::config::AcmeSettings;

/// The certificate cached for these settings, if it is still valid: what `run` installs first.
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
