//! The one place a status of 400 or more becomes tandem's error shape (docs/reference.md §4):
//! RFC 9457 problem+json naming the request, whoever produced the status (tandem's handlers and
//! layers, actix's router and extractors, a caught panic), or `htdocs/404.html` for a browser
//! that prefers HTML.

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    body::BoxBody,
    dev::ServiceResponse,
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
};

use super::drain;
use crate::{
    negotiate::prefers_html, problem::Problem, request_id::Ids, routes::KeepBody,
    static_files::StaticFiles,
};

/// Headers of the original error response that describe its old body and must not survive.
const BODY_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
];

/// Where the 404 page comes from: the static files' cache, when there is one.
#[derive(Clone, Default)]
pub(crate) struct ErrorPages {
    pub(crate) static_files: Option<Arc<StaticFiles>>,
}

/// Whether a response needs the error shape.
pub(crate) fn needs_rendering(res: &ServiceResponse<BoxBody>) -> bool {
    res.status().as_u16() >= 400 && res.response().extensions().get::<KeepBody>().is_none()
}

impl ErrorPages {
    /// Replaces the body of an error response with the problem (or the 404 page), keeping the
    /// headers that do not describe the old body.
    pub(crate) fn render(
        &self,
        res: ServiceResponse<BoxBody>,
        ids: &Ids,
    ) -> ServiceResponse<BoxBody> {
        let problem = problem_of(&res);
        let (request, old) = res.into_parts();
        let mut new = self.answer(&request, &problem, ids);
        keep_headers(&mut new, old.headers());
        ServiceResponse::new(request, new)
    }

    /// The answer to a problem no response was made for yet (a refusal, or the static files'
    /// own): the same as [`ErrorPages::render`] of the response it would have made.
    pub(crate) fn render_problem(
        &self,
        request: HttpRequest,
        problem: &Problem,
        ids: &Ids,
    ) -> ServiceResponse<BoxBody> {
        let mut new = self.answer(&request, problem, ids);
        keep_headers(&mut new, problem.headers());
        ServiceResponse::new(request, new)
    }

    /// The problem+json answer, or the 404 page for a browser that prefers HTML.
    fn answer(&self, request: &HttpRequest, problem: &Problem, ids: &Ids) -> HttpResponse {
        let page = (problem.status() == StatusCode::NOT_FOUND)
            .then(|| self.not_found_page(request))
            .flatten();
        match page {
            Some(page) => HttpResponse::build(StatusCode::NOT_FOUND)
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
                .body(page),
            None => problem.to_response(Some(ids.request_id())),
        }
    }

    fn not_found_page(&self, request: &HttpRequest) -> Option<actix_web::web::Bytes> {
        let accept = request.headers().get(header::ACCEPT);
        if !prefers_html(accept.and_then(|v| v.to_str().ok())) {
            return None;
        }
        self.static_files.as_ref()?.not_found_page()
    }
}

/// Copies onto the new answer the headers of the old one (or of its problem) that do not
/// describe the old body and that the new answer does not set itself.
fn keep_headers<'h>(
    new: &mut HttpResponse,
    old: impl IntoIterator<Item = (&'h HeaderName, &'h HeaderValue)>,
) {
    for (name, value) in old {
        if !BODY_HEADERS.contains(name) && !new.headers().contains_key(name) {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
}

/// The problem behind an error response: tandem's own, or the generic one for its status.
fn problem_of(res: &ServiceResponse<BoxBody>) -> Problem {
    let status = res.status();
    let Some(err) = res.response().error() else {
        return Problem::from_status(status, None);
    };
    if let Some(problem) = err.as_error::<Problem>() {
        return problem.clone();
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log::error!(
            "500 on {} {}: {err}",
            res.request().method(),
            res.request().path()
        );
    }
    Problem::from_status(status, Some(err.to_string()))
}

/// A problem answered after its request is gone (a panic unwound through it): actix builds the
/// response from this error, so it carries everything the response needs.
#[derive(Debug)]
pub(crate) struct Rendered {
    problem: Problem,
    ids: Ids,
    close: bool,
}

impl Rendered {
    pub(crate) fn new(problem: Problem, ids: Ids, close: bool) -> Self {
        Self {
            problem,
            ids,
            close,
        }
    }
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem.fmt(f)
    }
}

impl ResponseError for Rendered {
    fn status_code(&self) -> StatusCode {
        self.problem.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = self.problem.to_response(Some(self.ids.request_id()));
        self.ids.clone().echo(response.headers_mut());
        if self.close {
            response.head_mut().set_connection_type(drain::CLOSE);
        }
        response
    }
}
