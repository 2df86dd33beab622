//! `GET /socket` (SPEC §7): the echo WebSocket. The upgrade is refused with 426 when the request
//! is not a WebSocket handshake and with 503 once `websocket.max_connections` sockets are open;
//! each accepted socket runs one task that echoes, answers pings, sends heartbeats, closes silent
//! clients and says 1001 when the server stops (SPEC §9).

use std::{
    pin::pin,
    time::{Duration, Instant},
};

use actix_http::ws::{self as proto, CloseCode, CloseReason, HandshakeError};
use actix_web::{
    FromRequest, HttpRequest, HttpResponse,
    dev::Payload,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    web,
};
use actix_ws::{Message, MessageStream, Session};

use crate::{
    config::WebSocketSettings,
    problem::Problem,
    startup::AppState,
    websocket::{
        Assembled, MessageAssembler, OpenSocket, ScannedPayload, SocketRegistry, StreamFailure,
        Violation, classify,
    },
};

pub async fn socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    registry: web::Data<SocketRegistry>,
) -> Result<HttpResponse, Problem> {
    proto::verify_handshake(req.head()).map_err(refusal)?;
    let Some(place) = registry.clone().into_inner().try_open() else {
        return Err(Problem::service_unavailable(format!(
            "{} WebSockets are open, the most this server allows (websocket.max_connections); try again later",
            registry.max()
        )));
    };
    let settings = state.settings.websocket.clone();
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
    actix_web::rt::spawn(serve(session, messages, settings, stopping, place));
    Ok(response)
}

/// The answer to a request that is not a usable WebSocket handshake.
fn refusal(err: HandshakeError) -> Problem {
    match err {
        HandshakeError::GetMethodRequired => Problem::method_not_allowed("GET"),
        HandshakeError::NoWebsocketUpgrade => Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "this resource is a WebSocket; send a WebSocket handshake (Upgrade: websocket)",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket")),
        HandshakeError::UnsupportedVersion | HandshakeError::NoVersionHeader => Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13 only (RFC 6455)",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket"))
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

/// How long the close frame may wait for room in the outgoing buffer.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a socket's task ends, and the close frame it sends on the way out (if anyone listens).
enum Ending {
    Close(Option<CloseReason>),
    Gone,
}

/// Runs one socket until it closes. `_place` holds its slot in the registry until the task ends.
async fn serve(
    mut session: Session,
    mut messages: MessageStream,
    settings: WebSocketSettings,
    stopping: impl Future<Output = ()>,
    _place: OpenSocket,
) {
    let heartbeat = Duration::from_secs(settings.heartbeat_secs);
    let client_timeout = Duration::from_secs(settings.client_timeout_secs);
    let mut assembler = MessageAssembler::new(settings.max_message_bytes);
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Checked lazily: the deadline moves only when it fires, not on every message.
    let mut silence = pin!(tokio::time::sleep(client_timeout));
    let mut stopping = pin!(stopping);

    let ending = loop {
        tokio::select! {
            biased;
            () = &mut stopping => {
                break Ending::Close(Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("server is shutting down".into()),
                }));
            }
            () = &mut silence => {
                let deadline = last_heard + client_timeout;
                if Instant::now() < deadline {
                    silence.as_mut().reset(deadline.into());
                    continue;
                }
                log::debug!("closing a WebSocket silent for {}s", client_timeout.as_secs());
                break Ending::Close(Some(CloseReason {
                    // What the `websockets` libraries send for an unanswered keepalive ping.
                    code: CloseCode::Error,
                    description: Some("keepalive ping timeout".into()),
                }));
            }
            _ = pings.tick() => {
                // Bounded like the echo below: a client that reads nothing cannot park us here.
                match tokio::time::timeout(client_timeout, session.ping(b"")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => break Ending::Gone,
                }
            }
            item = messages.recv() => {
                last_heard = Instant::now();
                match item {
                    None => break Ending::Gone,
                    Some(Err(err)) => match classify(&err, settings.max_message_bytes) {
                        StreamFailure::Violation(violation) => {
                            log::debug!("closing a WebSocket: {err}");
                            break Ending::Close(Some(violation.close_reason()));
                        }
                        StreamFailure::Transport => break Ending::Gone,
                    },
                    Some(Ok(message)) => {
                        // A client that sends but never reads fills our buffers and the echo
                        // waits for it: give up on it as on a silent one, and at shutdown.
                        let answered = tokio::select! {
                            biased;
                            answered = answer(&mut session, &mut assembler, message) => answered,
                            () = &mut stopping => break Ending::Gone,
                            () = tokio::time::sleep(client_timeout) => {
                                log::debug!("dropping a WebSocket that reads nothing for {}s", client_timeout.as_secs());
                                break Ending::Gone;
                            }
                        };
                        match answered {
                            Ok(None) => {}
                            Ok(Some(ending)) => break ending,
                            Err(violation) => break Ending::Close(Some(violation.close_reason())),
                        }
                    }
                }
            }
        }
    };
    if let Ending::Close(reason) = ending {
        // Bounded too: a client that reads nothing would otherwise hold the task here.
        let _ = tokio::time::timeout(CLOSE_SEND_TIMEOUT, session.close(reason)).await;
    }
}

/// Handles one message from the client; `Some` ends the connection.
async fn answer(
    session: &mut Session,
    assembler: &mut MessageAssembler,
    message: Message,
) -> Result<Option<Ending>, Violation> {
    let sent = match message {
        Message::Text(text) => session.text(text).await,
        Message::Binary(bytes) => session.binary(bytes).await,
        Message::Continuation(item) => match assembler.push(item)? {
            Some(Assembled::Text(text)) => session.text(text).await,
            Some(Assembled::Binary(bytes)) => session.binary(bytes).await,
            None => Ok(()),
        },
        Message::Ping(bytes) => session.pong(&bytes).await,
        Message::Pong(_) | Message::Nop => Ok(()),
        // The close handshake: answer with the client's code (RFC 6455 §5.5.1), no reason needed.
        Message::Close(reason) => {
            return Ok(Some(Ending::Close(reason.map(|r| CloseReason {
                code: r.code,
                description: None,
            }))));
        }
    };
    Ok(sent.is_err().then_some(Ending::Gone))
}
