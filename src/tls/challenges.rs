//! ACME HTTP-01 challenges in flight (docs/reference.md §3, `tls.acme`): the ACME client puts a
//! token's key authorization here while the CA validates it; the plain-HTTP redirect listener
//! answers `/.well-known/acme-challenge/<token>` from it.

use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
};

#[derive(Debug, Default)]
pub(crate) struct Http01Challenges(RwLock<HashMap<String, String>>);

impl Http01Challenges {
    pub(crate) fn insert(&self, token: String, key_authorization: String) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }

    pub(crate) fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// The key authorization to send for `token`, if a challenge for it is in flight.
    pub(crate) fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}
