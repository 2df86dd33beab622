//! The certificate tandem presents right now (docs/reference.md §3, `tls`): one slot that a
//! file reload or an ACME renewal replaces, read by every TLS handshake.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// Empty until the first certificate is installed: handshakes then fail cleanly (no
/// certificate) instead of the server refusing to start while ACME obtains one.
#[derive(Debug, Default)]
pub(crate) struct CertificateSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl CertificateSlot {
    /// Installs `key` for every handshake from now on; connections already open keep theirs.
    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    pub(crate) fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
