//! The JSON API (docs/reference.md §4): `/api/status`, `/json`, `POST /api/echo` (a JSON body
//! echoed back, the route that exercises body limits, media types and `Idempotency-Key`), and
//! `/api/metrics` (the last minutes of the figures, for the status page's chart).

use actix_web::{HttpResponse, error::JsonPayloadError, http::StatusCode, web};
use serde_json::{Value, json};

use crate::{client_ip::ClientIp, problem::Problem, request_id::RequestMeta, state::AppState};

/// JSON bodies: at most `limit` bytes, `application/json` only, errors as problem details.
pub(crate) fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let problem = match &err {
                JsonPayloadError::ContentType => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "send the body as Content-Type: application/json",
                ),
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body is larger than {limit} bytes (server.max_body_bytes)"
                    ),
                ),
                JsonPayloadError::Deserialize(e) => {
                    Problem::bad_request(format!("the body is not valid JSON: {e}"))
                }
                other => Problem::bad_request(format!("cannot read the JSON body: {other}")),
            };
            problem.into()
        })
}

pub(crate) async fn status(
    state: web::Data<AppState>,
    client: ClientIp,
    meta: RequestMeta,
) -> HttpResponse {
    let settings = &state.settings;
    json_response(json!({
        "service": settings.app.service,
        "version": settings.app.version,
        "status": "healthy",
        "timestamp": jiff::Timestamp::now().to_string(),
        "client_ip": client.0.to_string(),
        "uptime_secs": state.started_at.elapsed().as_secs(),
        "static_mode": settings.static_files.mode.as_str(),
        "request_id": meta.request_id,
    }))
}

pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    json_response(state.metrics.summary())
}

pub(crate) async fn hello() -> HttpResponse {
    json_response(json!({ "message": "Hello, World!" }))
}

pub(crate) async fn echo(body: web::Json<Value>, meta: RequestMeta) -> HttpResponse {
    json_response(json!({
        "echo": body.into_inner(),
        "request_id": meta.request_id,
        "idempotency_key": meta.idempotency_key,
    }))
}

/// Every JSON answer is private to this moment: `Cache-Control: no-store`.
pub(crate) fn json_response(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(body)
}
