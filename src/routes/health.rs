//! Probes (docs/reference.md §4): `/health`, `/healthz` (liveness), `/readyz` (readiness),
//! `/startupz`. The route table marks them: never rate limited, logged at debug level only.

use actix_web::{HttpResponse, http::StatusCode, web};
use serde_json::json;

use super::KeepBody;
use crate::state::AppState;

pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body("ok\n")
}

pub(crate) async fn healthz() -> HttpResponse {
    probe(StatusCode::OK, "ok")
}

pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.lifecycle.is_draining() {
        probe(StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        probe(StatusCode::OK, "ready")
    }
}

pub(crate) async fn startupz(state: web::Data<AppState>) -> HttpResponse {
    if state.lifecycle.is_started() {
        probe(StatusCode::OK, "started")
    } else {
        probe(StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

fn probe(status: StatusCode, word: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "status": word }));
    response.extensions_mut().insert(KeepBody);
    response
}
