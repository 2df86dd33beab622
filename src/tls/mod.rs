//! HTTPS (docs/reference.md §3, `tls`): the certificate slot every handshake reads, the ACME
//! HTTP-01 challenges in flight, and the plain-HTTP listener that redirects to HTTPS.

// The ACME client fills it; it is merged from its own branch.
#[allow(dead_code, reason = "filled by the ACME client, merged separately")]
pub(crate) mod challenges;
pub mod redirect;
// The certificate loader and the ACME client fill it; they are merged from their own branches.
#[allow(dead_code, reason = "used by the HTTPS listener, merged separately")]
pub(crate) mod slot;
