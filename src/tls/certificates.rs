//! A certificate chain and its private key from PEM files (docs/reference.md §3 `tls.cert_file`,
//! `tls.key_file`): read, parsed and checked to belong together before anything serves them, at
//! start, on reload and in `tandem check`. Also what a certificate says about itself (subject
//! names, expiry, serial) for the log lines and `tandem check`.

use std::{
    fmt,
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Where the pair lives: the files named by `tls.cert_file` and `tls.key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemPaths {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

/// The two files' bytes, read once: parsed from these, and hashed to notice a change.
pub(crate) struct PemFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Why a pair cannot be served, as one sentence naming the file (both, for a mismatch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairError(String);

impl fmt::Display for PairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PairError {}

/// A pair ready to serve, with what its certificates say about themselves.
pub(crate) struct LoadedPair {
    pub(crate) key: Arc<CertifiedKey>,
    /// One per certificate of the chain, the server's own first.
    pub(crate) chain: Vec<CertificateFacts>,
}

/// What one certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateFacts {
    /// DNS names and IP addresses of its subjectAltName, or its subject's common name without one.
    pub(crate) subject_names: Vec<String>,
    pub(crate) not_after: jiff::Timestamp,
    /// Hexadecimal, colon-separated, as `openssl x509 -serial` groups it.
    pub(crate) serial: String,
}

impl fmt::Display for CertificateFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject names {}; expires {}; serial {}",
            self.subject_names.join(", "),
            self.not_after,
            self.serial
        )
    }
}

impl PemPaths {
    /// Reads both files (a missing or unreadable one is named).
    pub(crate) fn read(&self) -> Result<PemFiles, PairError> {
        let read = |key: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|err| PairError(format!("cannot read {key} {}: {err}", path.display())))
        };
        Ok(PemFiles {
            cert: read("tls.cert_file", &self.cert_file)?,
            key: read("tls.key_file", &self.key_file)?,
        })
    }

    /// Reads, parses and checks the pair.
    pub(crate) fn load(&self) -> Result<LoadedPair, PairError> {
        self.read()?.parse(self)
    }
}

impl PemFiles {
    /// Changes whenever either file's content does (not a defence against anyone: a change
    /// detector, so the poll reloads only what changed).
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.cert.hash(&mut hasher);
        self.key.hash(&mut hasher);
        hasher.finish()
    }

    /// The chain and key, refused unless the key is the one the first certificate was issued for.
    pub(crate) fn parse(&self, paths: &PemPaths) -> Result<LoadedPair, PairError> {
        let cert_file = paths.cert_file.display();
        let key_file = paths.key_file.display();
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                PairError(format!("tls.cert_file {cert_file} is not valid PEM: {err}"))
            })?;
        if chain.is_empty() {
            return Err(PairError(format!(
                "tls.cert_file {cert_file} holds no certificate (no -----BEGIN CERTIFICATE----- block)"
            )));
        }
        let facts = chain
            .iter()
            .map(|der| facts_of(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                PairError(format!(
                    "tls.cert_file {cert_file} holds a certificate that cannot be read: {err}"
                ))
            })?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|err| {
            PairError(format!(
                "tls.key_file {key_file} holds no usable PEM private key (PKCS#8, RSA or EC): {err}"
            ))
        })?;
        let signing_key = ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|err| {
                PairError(format!(
                    "tls.key_file {key_file} holds a key rustls cannot sign with (RSA, ECDSA P-256/P-384 or Ed25519 expected): {err}"
                ))
            })?;
        let key = CertifiedKey::new(chain, signing_key);
        // Strict, unlike `CertifiedKey::from_der`: a key whose public half cannot be compared is
        // refused too, since serving it would fail every handshake instead of the start.
        key.keys_match().map_err(|_| {
            PairError(format!(
                "tls.key_file {key_file} is not the private key of the certificate in tls.cert_file {cert_file}; give the key the certificate was issued for"
            ))
        })?;
        Ok(LoadedPair {
            key: Arc::new(key),
            chain: facts,
        })
    }
}

/// Subject names, expiry and serial of one DER certificate.
pub(crate) fn facts_of(der: &CertificateDer<'_>) -> Result<CertificateFacts, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|err| err.to_string())?;
    let mut subject_names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_string()),
                GeneralName::IPAddress(bytes) => ip_address(bytes).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(err) => return Err(err.to_string()),
    };
    if subject_names.is_empty() {
        subject_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
    }
    if subject_names.is_empty() {
        subject_names.push(cert.subject().to_string());
    }
    let not_after = jiff::Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|err| err.to_string())?;
    Ok(CertificateFacts {
        subject_names,
        not_after,
        serial: cert.raw_serial_as_string(),
    })
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, key: &rcgen::KeyPair) -> PemPaths {
        let params = rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".into()])
            .expect("params");
        let cert = params.self_signed(key).expect("self-signed");
        let paths = PemPaths {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&paths.cert_file, cert.pem()).unwrap();
        std::fs::write(&paths.key_file, key.serialize_pem()).unwrap();
        paths
    }

    #[test]
    fn a_matching_pair_loads_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let loaded = pair(dir.path(), "one.test", &key).load().unwrap();
            assert_eq!(loaded.chain.len(), 1);
            assert_eq!(loaded.chain[0].subject_names, ["one.test", "127.0.0.1"]);
        }
    }

    #[test]
    fn a_key_from_another_pair_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = pair(dir.path(), "one.test", &rcgen::KeyPair::generate().unwrap());
        let two = pair(dir.path(), "two.test", &rcgen::KeyPair::generate().unwrap());
        let crossed = PemPaths {
            cert_file: one.cert_file.clone(),
            key_file: two.key_file.clone(),
        };
        let err = crossed.load().err().expect("refused").to_string();
        assert!(
            err.contains("one.test.crt") && err.contains("two.test.key"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn files_without_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = pair(dir.path(), "one.test", &rcgen::KeyPair::generate().unwrap());
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let no_cert = PemPaths {
            cert_file: junk.clone(),
            key_file: good.key_file.clone(),
        };
        let err = no_cert.load().err().expect("refused").to_string();
        assert!(
            err.contains("tls.cert_file") && err.contains("junk.pem"),
            "{err}"
        );
        let no_key = PemPaths {
            cert_file: good.cert_file,
            key_file: junk,
        };
        let err = no_key.load().err().expect("refused").to_string();
        assert!(
            err.contains("tls.key_file") && err.contains("junk.pem"),
            "{err}"
        );
    }

    #[test]
    fn the_fingerprint_follows_either_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = pair(dir.path(), "one.test", &rcgen::KeyPair::generate().unwrap());
        let before = paths.read().unwrap().fingerprint();
        assert_eq!(before, paths.read().unwrap().fingerprint());
        let mut key = std::fs::read(&paths.key_file).unwrap();
        key.push(b'\n');
        std::fs::write(&paths.key_file, key).unwrap();
        assert_ne!(before, paths.read().unwrap().fingerprint());
    }
}
