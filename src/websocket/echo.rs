//! The task behind one accepted WebSocket (docs/reference.md §7, §9): it echoes, answers pings,
//! sends heartbeats, closes silent clients, and says 1001 when the server stops.

use std::{
    pin::{Pin, pin},
    time::{Duration, Instant},
};

use actix_http::ws::{CloseCode, CloseReason, ProtocolError};
use actix_ws::{Message, MessageStream, Session};

use super::{
    frames::{Assembled, MessageAssembler, StreamFailure, Violation, classify},
    registry::OpenSocket,
};
use crate::config::WebSocketSettings;

/// How long the close frame may wait for room in the outgoing buffer.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a socket's task ends, and the close frame it sends on the way out (if anyone listens).
enum Ending {
    Close(Option<CloseReason>),
    Gone,
}

impl Ending {
    fn close(code: CloseCode, why: &str) -> Self {
        Ending::Close(Some(CloseReason {
            code,
            description: Some(why.into()),
        }))
    }
}

/// One socket's state between events.
struct Connection {
    session: Session,
    assembler: MessageAssembler,
    max_message_bytes: usize,
    client_timeout: Duration,
    last_heard: Instant,
}

/// Runs one socket until it closes. `place` holds its slot in the registry until the task ends,
/// and counts how it ended.
pub(super) async fn serve(
    session: Session,
    mut messages: MessageStream,
    settings: WebSocketSettings,
    stopping: impl Future<Output = ()>,
    place: OpenSocket,
) {
    let mut connection = Connection {
        session,
        assembler: MessageAssembler::new(settings.max_message_bytes),
        max_message_bytes: settings.max_message_bytes,
        client_timeout: Duration::from_secs(settings.client_timeout_secs),
        last_heard: Instant::now(),
    };
    let heartbeat = Duration::from_secs(settings.heartbeat_secs);
    let ending = connection
        .run(&mut messages, heartbeat, pin!(stopping))
        .await;
    match ending {
        Ending::Close(reason) => {
            // 1005: a close frame without a code (RFC 6455 §7.1.5).
            place.ended(Some(reason.as_ref().map_or(1005, |r| u16::from(r.code))));
            // Bounded too: a client that reads nothing would otherwise hold the task here.
            let _ =
                tokio::time::timeout(CLOSE_SEND_TIMEOUT, connection.session.close(reason)).await;
        }
        Ending::Gone => place.ended(None),
    }
}

impl Connection {
    async fn run(
        &mut self,
        messages: &mut MessageStream,
        heartbeat: Duration,
        mut stopping: Pin<&mut impl Future<Output = ()>>,
    ) -> Ending {
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Checked lazily: the deadline moves only when it fires, not on every message.
        let mut silence = pin!(tokio::time::sleep(self.client_timeout));
        loop {
            let ended = tokio::select! {
                biased;
                () = &mut stopping => Some(Ending::close(CloseCode::Away, "server is shutting down")),
                () = &mut silence => self.on_silence(silence.as_mut()),
                _ = pings.tick() => self.ping().await,
                item = messages.recv() => {
                    self.last_heard = Instant::now();
                    self.on_item(item, stopping.as_mut()).await
                }
            };
            if let Some(ending) = ended {
                return ending;
            }
        }
    }

    /// The silence timer fired: close the socket if nothing was heard since it was set.
    fn on_silence(&self, silence: Pin<&mut tokio::time::Sleep>) -> Option<Ending> {
        let deadline = self.last_heard + self.client_timeout;
        if Instant::now() < deadline {
            silence.reset(deadline.into());
            return None;
        }
        log::debug!(
            "closing a WebSocket silent for {}s",
            self.client_timeout.as_secs()
        );
        // What the `websockets` libraries send for an unanswered keepalive ping.
        Some(Ending::close(CloseCode::Error, "keepalive ping timeout"))
    }

    async fn ping(&mut self) -> Option<Ending> {
        // Bounded like the echo: a client that reads nothing cannot park us here.
        match tokio::time::timeout(self.client_timeout, self.session.ping(b"")).await {
            Ok(Ok(())) => None,
            Ok(Err(_)) | Err(_) => Some(Ending::Gone),
        }
    }

    async fn on_item(
        &mut self,
        item: Option<Result<Message, ProtocolError>>,
        stopping: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Ending> {
        match item {
            None => Some(Ending::Gone),
            Some(Err(err)) => match classify(&err, self.max_message_bytes) {
                StreamFailure::Violation(violation) => {
                    log::debug!("closing a WebSocket: {err}");
                    Some(Ending::Close(Some(violation.close_reason())))
                }
                StreamFailure::Transport => Some(Ending::Gone),
            },
            Some(Ok(message)) => {
                // A client that sends but never reads fills our buffers and the echo waits for
                // it: give up on it as on a silent one, and at shutdown.
                let timeout = self.client_timeout;
                let answered = tokio::select! {
                    biased;
                    answered = self.answer(message) => answered,
                    () = stopping => return Some(Ending::Gone),
                    () = tokio::time::sleep(timeout) => {
                        log::debug!("dropping a WebSocket that reads nothing for {}s", timeout.as_secs());
                        return Some(Ending::Gone);
                    }
                };
                answered
                    .unwrap_or_else(|violation| Some(Ending::Close(Some(violation.close_reason()))))
            }
        }
    }

    /// Handles one message from the client; `Some` ends the connection.
    async fn answer(&mut self, message: Message) -> Result<Option<Ending>, Violation> {
        let session = &mut self.session;
        let sent = match message {
            Message::Text(text) => session.text(text).await,
            Message::Binary(bytes) => session.binary(bytes).await,
            Message::Continuation(item) => match self.assembler.push(item)? {
                Some(Assembled::Text(text)) => session.text(text).await,
                Some(Assembled::Binary(bytes)) => session.binary(bytes).await,
                None => Ok(()),
            },
            Message::Ping(bytes) => session.pong(&bytes).await,
            Message::Pong(_) | Message::Nop => Ok(()),
            // The close handshake: answer with the client's code (RFC 6455 §5.5.1), no reason.
            Message::Close(reason) => {
                return Ok(Some(Ending::Close(reason.map(|r| CloseReason {
                    code: r.code,
                    description: None,
                }))));
            }
        };
        Ok(sent.is_err().then_some(Ending::Gone))
    }
}
