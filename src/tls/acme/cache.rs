//! The ACME cache directory (docs/reference.md §3, `tls.acme.cache_dir`): the account and the
//! last certificate, so a restart reuses both instead of registering and ordering again (the
//! CA's rate limits count both).
//!
//! Layout: `account.json` (the account URL and its private key, for one directory URL),
//! `certificate.pem` (the chain, leaf first), `certificate-key.pem`, and `certificate.json`
//! (which directory and domains the certificate was ordered for). The directory is 0700 and
//! every file 0600: two of them hold private keys, and none needs to be read by anyone else.

use std::{
    fs::{self, DirBuilder, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};

use super::issued::IssuedCertificate;

const ACCOUNT: &str = "account.json";
const CHAIN: &str = "certificate.pem";
const CHAIN_KEY: &str = "certificate-key.pem";
const ORDERED_FOR: &str = "certificate.json";

#[derive(Debug)]
pub(crate) struct CacheDir {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct OrderedFor {
    directory_url: String,
    domains: Vec<String>,
}

impl CacheDir {
    /// Creates the directory (and its parents) 0700, and tightens an existing one to 0700.
    pub(crate) fn open(root: &Path) -> Result<Self, String> {
        let failed = |err: io::Error| {
            format!(
                "the ACME cache directory {} cannot be created ({err})",
                root.display()
            )
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(failed)?;
        fs::set_permissions(root, Permissions::from_mode(0o700)).map_err(failed)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The account registered with `directory_url`, if one is cached for that very directory.
    pub(crate) fn account(&self, directory_url: &str) -> Option<AccountCredentials> {
        let bytes = fs::read(self.root.join(ACCOUNT)).ok()?;
        let stored: StoredAccount = serde_json::from_slice(&bytes).ok()?;
        (stored.directory_url == directory_url).then_some(stored.credentials)
    }

    pub(crate) fn store_account(
        &self,
        directory_url: &str,
        credentials: AccountCredentials,
    ) -> Result<(), String> {
        let stored = StoredAccount {
            directory_url: directory_url.to_owned(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored)
            .map_err(|err| format!("the ACME account cannot be serialized ({err})"))?;
        self.write(ACCOUNT, &json)
    }

    /// Forgets the account, so the next order registers a new one (the CA no longer knows it).
    pub(crate) fn forget_account(&self) {
        let _ = fs::remove_file(self.root.join(ACCOUNT));
    }

    /// The cached certificate, if it was ordered from `directory_url` for exactly `domains`.
    /// `Ok(None)`: nothing usable cached; `Err`: files present but unreadable or inconsistent.
    pub(crate) fn certificate(
        &self,
        directory_url: &str,
        domains: &[String],
    ) -> Result<Option<IssuedCertificate>, String> {
        let Ok(ordered_for) = fs::read(self.root.join(ORDERED_FOR)) else {
            return Ok(None);
        };
        let ordered_for: OrderedFor = serde_json::from_slice(&ordered_for)
            .map_err(|err| format!("{ORDERED_FOR} is not valid ({err})"))?;
        if ordered_for.directory_url != directory_url {
            return Ok(None);
        }
        let chain = self.read(CHAIN)?;
        let key = self.read(CHAIN_KEY)?;
        let issued = IssuedCertificate::from_pem(&chain, &key)?;
        Ok(issued.names_exactly(domains).then_some(issued))
    }

    /// Key first, then chain, then the record that makes them count: a crash in between leaves
    /// no record or an old one, never a record pointing at a half-written pair.
    pub(crate) fn store_certificate(
        &self,
        directory_url: &str,
        domains: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), String> {
        let _ = fs::remove_file(self.root.join(ORDERED_FOR));
        self.write(CHAIN_KEY, key_pem.as_bytes())?;
        self.write(CHAIN, chain_pem.as_bytes())?;
        let ordered_for = OrderedFor {
            directory_url: directory_url.to_owned(),
            domains: domains.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&ordered_for)
            .map_err(|err| format!("{ORDERED_FOR} cannot be serialized ({err})"))?;
        self.write(ORDERED_FOR, &json)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let path = self.root.join(name);
        fs::read(&path).map_err(|err| format!("{} cannot be read ({err})", path.display()))
    }

    /// Written beside the target then renamed over it, so a reader sees the old file or the
    /// new one; created 0600 so a key is never readable by others, not even for an instant.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.root.join(name);
        let partial = self.root.join(format!(".{name}.partial"));
        let failed = |err: io::Error| format!("{} cannot be written ({err})", path.display());
        let _ = fs::remove_file(&partial);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(failed)?;
        file.write_all(bytes).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        fs::rename(&partial, &path).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_directory_is_private_and_tightened_when_it_already_exists() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("nested/acme");
        CacheDir::open(&root).expect("created");
        assert_eq!(mode(&root), 0o700);
        fs::set_permissions(&root, Permissions::from_mode(0o755)).expect("chmod");
        CacheDir::open(&root).expect("reopened");
        assert_eq!(mode(&root), 0o700);
    }

    #[test]
    fn a_certificate_is_cached_per_directory_url_with_its_key_private() {
        let parent = tempfile::tempdir().expect("tempdir");
        let cache = CacheDir::open(parent.path()).expect("created");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        let domains = vec!["a.test".to_owned()];
        cache
            .store_certificate(
                "https://ca/dir",
                &domains,
                &cert.pem(),
                &key.serialize_pem(),
            )
            .expect("stored");
        for name in [CHAIN, CHAIN_KEY, ORDERED_FOR] {
            assert_eq!(mode(&parent.path().join(name)), 0o600, "{name}");
        }
        let found = cache
            .certificate("https://ca/dir", &domains)
            .expect("readable");
        assert!(found.is_some());
        let staging = cache.certificate("https://staging/dir", &domains);
        assert!(staging.expect("readable").is_none());
        let other_names = cache.certificate("https://ca/dir", &["b.test".to_owned()]);
        assert!(other_names.expect("readable").is_none());
    }
}
