//! `GET /socket` (docs/reference.md §7): the upgrade. It is refused with 426 when the request is
//! not a WebSocket handshake and with 503 once `websocket.max_connections` sockets are open; an
//! accepted socket gets its own echo task. Over HTTP/2 (HTTPS with ALPN `h2`) it answers 505:
//! WebSockets over HTTP/2 (RFC 8441) are not supported, and browsers open an HTTP/1.1
//! connection for `wss://` when the server does not offer them.

use actix_http::ws::{self as proto, HandshakeError};
use actix_web::{
    FromRequest, HttpRequest, HttpResponse,
    dev::Payload,
    http::{
        StatusCode, Version,
        header::{self, HeaderValue},
    },
    web,
};

use super::{echo, frames::ScannedPayload, registry::SocketRegistry};
use crate::{problem::Problem, state::AppState};

pub(crate) async fn socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    registry: web::Data<SocketRegistry>,
) -> Result<HttpResponse, Problem> {
    if req.version() == Version::HTTP_2 {
        return Err(Problem::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "this resource is a WebSocket over HTTP/1.1 only (RFC 8441, WebSockets over HTTP/2, is not supported); connect with HTTP/1.1",
        ));
    }
    proto::verify_handshake(req.head()).map_err(refusal)?;
    let Some(place) = registry.clone().into_inner().try_open() else {
        return Err(Problem::service_unavailable(format!(
            "{} WebSockets are open, the most this server allows (websocket.max_connections); try again later",
            registry.max()
        )));
    };
    let settings = state.settings.websocket.clone();
    // The frames pass a scanner first: it refuses what actix-http's codec would buffer or misname.
    let scanned = ScannedPayload::new(body.into_inner(), settings.max_message_bytes);
    let mut scanned = Payload::from(Box::pin(scanned) as actix_http::BoxedPayloadStream);
    let body = web::Payload::from_request(&req, &mut scanned)
        .await
        .map_err(|err| {
            Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, Some(err.to_string()))
        })?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|err| Problem::bad_request(format!("WebSocket handshake failed: {err}")))?;
    let messages = messages.max_frame_size(settings.max_message_bytes);
    let stopping = state.lifecycle.stopping();
    actix_web::rt::spawn(echo::serve(session, messages, settings, stopping, place));
    Ok(response)
}

/// The answer to a request that is not a usable WebSocket handshake.
fn refusal(err: HandshakeError) -> Problem {
    let upgrade = || HeaderValue::from_static("websocket");
    match err {
        HandshakeError::GetMethodRequired => Problem::method_not_allowed("GET"),
        HandshakeError::NoWebsocketUpgrade => Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "this resource is a WebSocket; send a WebSocket handshake (Upgrade: websocket)",
        )
        .with_header(header::UPGRADE, upgrade()),
        HandshakeError::UnsupportedVersion | HandshakeError::NoVersionHeader => Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13 only (RFC 6455)",
        )
        .with_header(header::UPGRADE, upgrade())
        .with_header(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        ),
        HandshakeError::NoConnectionUpgrade => Problem::bad_request(
            "a WebSocket handshake needs `Connection: Upgrade` (check that the proxy forwards it)",
        ),
        HandshakeError::BadWebsocketKey => {
            Problem::bad_request("the Sec-WebSocket-Key header is missing or malformed")
        }
    }
}
