//! HTTPS for a standalone tandem (docs/reference.md §3, `tls`): the certificate every handshake
//! reads, the ACME HTTP-01 answers in flight, and the ACME client that keeps both filled.

pub(crate) mod acme;
pub(crate) mod challenges;
pub(crate) mod slot;
