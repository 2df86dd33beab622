//! The request's context, decided once as it enters (docs/reference.md §6, §8): its IDs and its
//! client address. The other steps read them from the [`RequestContext`] the pipeline keeps
//! beside the request; handlers read them through the `RequestMeta` and `ClientIp` extractors,
//! which the context fills in only for requests that go to a route. Nothing is computed that no
//! one reads: a static file that is neither rate-limited nor logged never resolves the client
//! address, and builds no strings for its IDs.

use std::{cell::OnceCell, net::IpAddr};

use actix_web::{HttpMessage, dev::ServiceRequest};

use crate::{
    client_ip::{ClientIp, TrustedProxies, peer_of},
    request_id::Ids,
};

/// What the pipeline knows about a request once it has entered.
pub(crate) struct RequestContext<'p> {
    pub(crate) ids: Ids,
    proxies: &'p TrustedProxies,
    client_ip: OnceCell<IpAddr>,
}

/// Decides the IDs; the client address waits until a step asks for it.
pub(crate) fn enter<'p>(req: &ServiceRequest, proxies: &'p TrustedProxies) -> RequestContext<'p> {
    RequestContext {
        ids: Ids::of(req.headers()),
        proxies,
        client_ip: OnceCell::new(),
    }
}

impl RequestContext<'_> {
    /// The resolved client address (docs/reference.md §6), resolved at most once.
    pub(crate) fn client_ip(&self, req: &ServiceRequest) -> IpAddr {
        *self
            .client_ip
            .get_or_init(|| self.proxies.resolve(peer_of(req.request()), req.headers()))
    }

    /// Stores the IDs and the client address for a route's extractors.
    pub(crate) fn store(&self, req: &ServiceRequest) {
        let meta = self.ids.meta(req.headers());
        let client_ip = self.client_ip(req);
        let mut extensions = req.extensions_mut();
        extensions.insert(ClientIp(client_ip));
        extensions.insert(meta);
    }
}
