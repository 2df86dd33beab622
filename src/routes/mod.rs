//! HTTP routes (SPEC §4), one file per resource family.

pub mod api;
pub mod health;
pub mod socket;

use actix_web::{HttpResponse, guard, web};

use crate::problem::Problem;

/// Every path a route answers (SPEC §4). Routes win over files with the same path, so
/// `tandem check` warns about files here. Keep in step with `startup.rs`.
pub const ROUTE_PATHS: &[&str] = &[
    "/health",
    "/healthz",
    "/readyz",
    "/startupz",
    "/json",
    "/socket",
    "/api/status",
    "/api/echo",
];

/// Marks a non-2xx response whose body is part of the contract (probe answers), so the error
/// renderer leaves it as it is.
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

/// A resource answering GET and HEAD with `handler`, and 405 with `Allow` to anything else.
pub fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(Problem::method_not_allowed("GET, HEAD"))
        }))
}
