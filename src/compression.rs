//! On-the-fly compression of dynamic responses (docs/reference.md §4): bodies of 1 KiB or more, of a
//! compressible type, in the best coding `Accept-Encoding` allows (br, zstd, gzip).

use actix_http::encoding::Encoder;
use actix_web::{
    Error,
    body::{BodySize, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, ContentEncoding, HeaderValue},
    middleware::Next,
};

use crate::{
    encoding::{Encoding, is_compressible},
    negotiate::choose_encoding,
};

/// Bodies smaller than this are sent as they are: compression would not pay for itself.
pub const MIN_COMPRESS_BYTES: u64 = 1024;

/// Middleware for dynamic routes.
pub async fn compress_dynamic(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let res = next.call(req).await?;
    Ok(res.map_body(move |head, body| {
        let compressible = !head.headers.contains_key(header::CONTENT_ENCODING)
            && head
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_compressible);
        let large_enough = match body.size() {
            BodySize::Sized(n) => n >= MIN_COMPRESS_BYTES,
            BodySize::Stream => true,
            BodySize::None => false,
        };
        let chosen = if compressible && large_enough {
            choose_encoding(accept.as_deref(), &Encoding::ALL, |_| true)
        } else {
            None
        };
        if compressible && chosen.is_none() {
            // The same URL may be compressed for another client: caches must key on it.
            head.headers
                .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        let coding = chosen.map_or(ContentEncoding::Identity, Encoding::content_encoding);
        Encoder::response(coding, head, body)
    }))
}
