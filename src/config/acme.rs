//! `[tls.acme]` (docs/reference.md §3): the settings of automatic certificates by ACME
//! (RFC 8555) and their validation, one sentence naming the key. The client that uses them is
//! `tls::acme`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

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
}
