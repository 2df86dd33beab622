//! A certificate the CA issued, as tandem holds it (docs/reference.md §3, `tls.acme`): the
//! rustls key for the slot, plus the dates and names read from the leaf that decide when it is
//! renewed and whether a cached one still fits the configuration.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::{
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use x509_parser::{extensions::GeneralName, prelude::parse_x509_certificate};

/// Renewal starts once this share of the lifetime has passed (Let's Encrypt's advice for 90-day
/// certificates: renew with 30 days left).
const RENEW_AFTER_NUMERATOR: u32 = 2;
const RENEW_AFTER_DENOMINATOR: u32 = 3;

#[derive(Debug, Clone)]
pub(crate) struct IssuedCertificate {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    /// Hexadecimal, as `openssl x509 -serial` prints it: what an operator greps logs for.
    pub(crate) serial: String,
    pub(crate) dns_names: Vec<String>,
}

impl IssuedCertificate {
    /// Reads a PEM chain (leaf first) and its PEM private key; refuses a key that does not match.
    pub(crate) fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("the certificate chain is not valid PEM ({err})"))?;
        let leaf = chain
            .first()
            .ok_or("the certificate chain holds no certificate")?;
        let (_, parsed) = parse_x509_certificate(leaf)
            .map_err(|err| format!("the certificate cannot be parsed ({err})"))?;
        let not_before = unix_time(parsed.validity().not_before.timestamp());
        let not_after = unix_time(parsed.validity().not_after.timestamp());
        let serial = parsed
            .raw_serial_as_string()
            .replace(':', "")
            .to_uppercase();
        let dns_names = dns_names(&parsed);
        let private_key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|err| format!("the certificate key is not valid PEM ({err})"))?;
        let key = CertifiedKey::from_der(chain, private_key, &ring::default_provider())
            .map_err(|err| format!("the certificate and its key do not fit together ({err})"))?;
        Ok(Self {
            key: Arc::new(key),
            not_before,
            not_after,
            serial,
            dns_names,
        })
    }

    /// Two thirds into the lifetime: 60 days into a 90-day certificate, 4 s into a 6 s one.
    pub(crate) fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + lifetime * RENEW_AFTER_NUMERATOR / RENEW_AFTER_DENOMINATOR
    }

    pub(crate) fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    /// True when the certificate names exactly the configured domains (order aside), so a cache
    /// written before the domain list changed is not served for the new list.
    pub(crate) fn names_exactly(&self, domains: &[String]) -> bool {
        let mut wanted: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let mut held: Vec<String> = self
            .dns_names
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        wanted.sort();
        wanted.dedup();
        held.sort();
        held.dedup();
        wanted == held
    }
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

fn dns_names(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// "2026-11-28T03:04:05Z" for log lines; the dates come from the certificate, so UTC.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("{time:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(not_before: u64, not_after: u64, names: &[&str]) -> IssuedCertificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let cert = params.self_signed(&key).expect("self-signed");
        let mut found =
            IssuedCertificate::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
                .expect("a matching pair parses");
        found.not_before = UNIX_EPOCH + Duration::from_secs(not_before);
        found.not_after = UNIX_EPOCH + Duration::from_secs(not_after);
        found
    }

    #[test]
    fn renewal_starts_two_thirds_into_the_lifetime() {
        let cert = issued(1_000, 1_000 + 90 * 86_400, &["a.test"]);
        assert_eq!(
            cert.renew_at(),
            UNIX_EPOCH + Duration::from_secs(1_000 + 60 * 86_400)
        );
        let short = issued(100, 106, &["a.test"]);
        assert_eq!(short.renew_at(), UNIX_EPOCH + Duration::from_secs(104));
    }

    #[test]
    fn a_cached_certificate_fits_only_the_same_domain_list() {
        let cert = issued(0, 10, &["a.test", "www.a.test"]);
        assert!(cert.names_exactly(&["WWW.a.test".into(), "a.test".into()]));
        assert!(!cert.names_exactly(&["a.test".into()]));
        assert!(!cert.names_exactly(&["a.test".into(), "www.a.test".into(), "b.test".into()]));
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let other = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        let err =
            IssuedCertificate::from_pem(cert.pem().as_bytes(), other.serialize_pem().as_bytes())
                .expect_err("mismatched key");
        assert!(err.contains("do not fit together"), "{err}");
    }
}
