//! The request's context, decided once as it enters (docs/reference.md §6, §8): its IDs and its
//! client address. Handlers read them through the `RequestMeta` and `ClientIp` extractors, the
//! other layers from the [`RequestContext`] the pipeline keeps beside the request.

use std::net::IpAddr;

use actix_web::{
    HttpMessage,
    dev::ServiceRequest,
    http::header::{HeaderMap, HeaderValue},
};

use crate::{
    client_ip::{ClientIp, TrustedProxies, peer_of},
    request_id::{RequestMeta, X_CORRELATION_ID, X_REQUEST_ID},
};

/// The IDs a response echoes, captured before the request goes in, so an answer built after the
/// request is gone (a panic) still carries them.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    request_id: Option<HeaderValue>,
    correlation_id: Option<HeaderValue>,
}

impl Ids {
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().and_then(|v| v.to_str().ok())
    }

    /// Puts both IDs on a response, replacing whatever a handler set.
    pub(crate) fn echo(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            (X_REQUEST_ID, &self.request_id),
            (X_CORRELATION_ID, &self.correlation_id),
        ] {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
    }
}

/// What the pipeline knows about a request once it has entered.
#[derive(Debug)]
pub(crate) struct RequestContext {
    pub(crate) ids: Ids,
    pub(crate) client_ip: IpAddr,
}

/// Decides the IDs and the client address and stores them for the extractors (and the access
/// log, which reads them only when its line will be printed).
pub(crate) fn enter(req: &ServiceRequest, proxies: &TrustedProxies) -> RequestContext {
    let meta = RequestMeta::of(req.headers());
    let client_ip = proxies.resolve(peer_of(req.request()), req.headers());
    // Both IDs passed validation or were generated, so they are always valid header values.
    let request_id = HeaderValue::from_str(&meta.request_id).ok();
    let correlation_id = if meta.correlation_id == meta.request_id {
        request_id.clone()
    } else {
        HeaderValue::from_str(&meta.correlation_id).ok()
    };
    let mut extensions = req.extensions_mut();
    extensions.insert(ClientIp(client_ip));
    extensions.insert(meta);
    RequestContext {
        ids: Ids {
            request_id,
            correlation_id,
        },
        client_ip,
    }
}
