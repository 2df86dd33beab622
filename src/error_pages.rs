//! Renders every error response the same way (SPEC §4): RFC 9457 problem+json carrying the
//! request ID, whoever produced it (tandem's handlers, actix's router and extractors, a caught
//! panic), or `htdocs/404.html` for a browser that asked for HTML.

use std::path::PathBuf;

use actix_web::{
    Error, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    middleware::Next,
    web,
};

use crate::{negotiate::prefers_html, problem::Problem, request_id::meta_of, routes::KeepBody};

/// The HTML page for 404s, when a document root has one.
#[derive(Debug, Clone, Default)]
pub struct NotFoundPage(pub Option<PathBuf>);

/// Headers of the original error response that describe its old body and must not survive.
const BODY_HEADERS: [header::HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
];

/// Middleware: turns every response of status 400 or more into tandem's error shape.
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // Middleware errors (a caught panic, a refused body) arrive as `Err`, with the request gone;
    // they become problems here, and `request_id::assign` (which owns the IDs) stamps them.
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            let status = err.as_response_error().status_code();
            let problem = match err.as_error::<Problem>() {
                Some(problem) => problem.clone(),
                None => {
                    log::error!("{status}: {err}");
                    Problem::from_status(status, Some(err.to_string()))
                }
            };
            return Err(problem.into());
        }
    };
    if res.status().as_u16() < 400 || res.response().extensions().get::<KeepBody>().is_some() {
        return Ok(res);
    }
    let status = res.status();
    let problem = match res.response().error() {
        Some(err) => match err.as_error::<Problem>() {
            Some(problem) => problem.clone(),
            None => {
                if status == StatusCode::INTERNAL_SERVER_ERROR {
                    log::error!(
                        "500 on {} {}: {err}",
                        res.request().method(),
                        res.request().path()
                    );
                }
                Problem::from_status(status, Some(err.to_string()))
            }
        },
        None => Problem::from_status(status, None),
    };
    let meta = meta_of(res.request());

    let html_page = if status == StatusCode::NOT_FOUND
        && prefers_html(
            res.request()
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        ) {
        match res
            .request()
            .app_data::<web::Data<NotFoundPage>>()
            .and_then(|p| p.0.clone())
        {
            Some(path) => tokio::fs::read(path).await.ok(),
            None => None,
        }
    } else {
        None
    };

    let (request, old) = res.into_parts();
    let mut new = match html_page {
        Some(page) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(page),
        None => problem.to_response(Some(&meta)),
    };
    for (name, value) in old.headers() {
        if !BODY_HEADERS.contains(name) && !new.headers().contains_key(name) {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, new))
}
