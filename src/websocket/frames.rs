//! The WebSocket frame rules of `/socket` that actix-ws leaves to us (docs/reference.md §7):
//! reassembly of fragmented messages within `websocket.max_message_bytes` (with UTF-8 checked as
//! the fragments arrive), refusing oversized frames from their header alone, close reasons that
//! are not UTF-8, and which close code each violation earns.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use actix_http::{
    error::PayloadError,
    ws::{CloseCode, CloseReason, Item, ProtocolError},
};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

/// Why a connection is being failed (RFC 6455 §7.1.7), and the close code it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// 1002: the frames break RFC 6455 (bad opcode, reserved bits, unmasked, bad fragmentation).
    Protocol(String),
    /// 1007: a text message (or close reason) is not UTF-8.
    InvalidUtf8,
    /// 1009: a message is larger than `websocket.max_message_bytes`.
    TooBig { max: usize },
}

impl Violation {
    pub(crate) fn close_reason(&self) -> CloseReason {
        let (code, description) = match self {
            Violation::Protocol(why) => (CloseCode::Protocol, why.clone()),
            Violation::InvalidUtf8 => (CloseCode::Invalid, "text is not valid UTF-8".to_string()),
            Violation::TooBig { max } => (
                CloseCode::Size,
                format!("message larger than {max} bytes (websocket.max_message_bytes)"),
            ),
        };
        CloseReason {
            code,
            description: Some(description),
        }
    }
}

/// What a decoding error from actix-ws means for the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamFailure {
    /// The client broke the protocol: tell it why with a close frame.
    Violation(Violation),
    /// The transport failed (reset, EOF mid-frame): nobody is left to tell.
    Transport,
}

/// Maps actix-ws errors to close codes. actix-http reports invalid UTF-8 and reserved bits as
/// `Io(InvalidData)`, so the wrapped error tells them apart.
pub(crate) fn classify(err: &ProtocolError, max_message_bytes: usize) -> StreamFailure {
    let too_big = StreamFailure::Violation(Violation::TooBig {
        max: max_message_bytes,
    });
    match err {
        ProtocolError::Overflow => too_big,
        ProtocolError::Io(io_err) => {
            let inner = io_err.get_ref();
            if inner.is_some_and(|e| {
                e.downcast_ref::<std::str::Utf8Error>().is_some() || is_invalid_close_reason(e)
            }) {
                StreamFailure::Violation(Violation::InvalidUtf8)
            } else if inner.is_some_and(|e| {
                matches!(
                    e.downcast_ref::<PayloadError>(),
                    Some(PayloadError::Overflow)
                )
            }) {
                too_big
            } else if io_err.kind() == io::ErrorKind::InvalidData {
                StreamFailure::Violation(Violation::Protocol(io_err.to_string()))
            } else {
                StreamFailure::Transport
            }
        }
        other => StreamFailure::Violation(Violation::Protocol(other.to_string())),
    }
}

/// The scanner's finding that a close frame's reason is not UTF-8.
#[derive(Debug)]
pub(crate) struct InvalidCloseReason;

impl std::fmt::Display for InvalidCloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the close frame's reason is not UTF-8")
    }
}

impl std::error::Error for InvalidCloseReason {}

/// actix-ws wraps the payload stream's errors: `PayloadError::Io` around our finding.
fn is_invalid_close_reason(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match err.downcast_ref::<PayloadError>() {
        Some(PayloadError::Io(io_err)) => io_err
            .get_ref()
            .is_some_and(|e| e.downcast_ref::<InvalidCloseReason>().is_some()),
        _ => false,
    }
}

/// A complete data message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Assembled {
    Text(ByteString),
    Binary(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Joins continuation frames into one message, failing as early as the violation is visible:
/// the size as soon as the fragments exceed the limit, UTF-8 as soon as a fragment holds a byte
/// sequence no continuation could repair (Autobahn's "fail fast" cases 6.4.x).
#[derive(Debug)]
pub(crate) struct MessageAssembler {
    max: usize,
    kind: Option<Kind>,
    buf: BytesMut,
    /// Bytes of a text message already known to be valid UTF-8.
    checked: usize,
}

impl MessageAssembler {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            max: max_message_bytes,
            kind: None,
            buf: BytesMut::new(),
            checked: 0,
        }
    }

    /// Takes one fragment; returns the whole message after its last fragment.
    pub(crate) fn push(&mut self, item: Item) -> Result<Option<Assembled>, Violation> {
        let (bytes, last) = match item {
            Item::FirstText(bytes) => (self.start(Kind::Text, bytes)?, false),
            Item::FirstBinary(bytes) => (self.start(Kind::Binary, bytes)?, false),
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some(kind) = self.kind else {
            return Err(Violation::Protocol(
                "continuation frame without a message to continue".into(),
            ));
        };
        if self.buf.len() + bytes.len() > self.max {
            self.reset();
            return Err(Violation::TooBig { max: self.max });
        }
        self.buf.extend_from_slice(&bytes);
        if kind == Kind::Text {
            self.check_utf8(last)?;
        }
        if !last {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.buf).freeze();
        self.reset();
        Ok(Some(match kind {
            Kind::Binary => Assembled::Binary(bytes),
            Kind::Text => {
                Assembled::Text(ByteString::try_from(bytes).map_err(|_| Violation::InvalidUtf8)?)
            }
        }))
    }

    fn start(&mut self, kind: Kind, bytes: Bytes) -> Result<Bytes, Violation> {
        if self.kind.is_some() {
            return Err(Violation::Protocol(
                "new message started before the previous one ended".into(),
            ));
        }
        self.kind = Some(kind);
        Ok(bytes)
    }

    fn check_utf8(&mut self, last: bool) -> Result<(), Violation> {
        match std::str::from_utf8(&self.buf[self.checked..]) {
            Ok(_) => {
                self.checked = self.buf.len();
                Ok(())
            }
            // A sequence cut at the end of a fragment may still be completed by the next one.
            Err(err) if err.error_len().is_none() && !last => {
                self.checked += err.valid_up_to();
                Ok(())
            }
            Err(_) => {
                self.reset();
                Err(Violation::InvalidUtf8)
            }
        }
    }

    fn reset(&mut self) {
        self.kind = None;
        self.buf = BytesMut::new();
        self.checked = 0;
    }
}

/// Reads frame headers as the bytes stream past and remembers where the next header starts, so
/// a frame declaring more payload than allowed is refused before any of it is buffered. (The
/// codec of actix-http waits for a whole frame, however large, before it checks the size.) It
/// also reads close frames' reasons: actix-http reports a reason that is not UTF-8 as a bad
/// opcode, which would earn 1002 where RFC 6455 §8.1 asks for 1007.
#[derive(Debug)]
pub(crate) struct FrameScanner {
    max_payload: u64,
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass; `None` while reading a header.
    skipping: Option<u64>,
    /// The unmasked payload of the close frame being read, with its mask.
    close: Option<(Vec<u8>, Option<[u8; 4]>)>,
}

/// Why the scanner stopped a stream, and how many bytes of the chunk may still pass first.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: PayloadError,
    pub(crate) pass: usize,
}

const OPCODE_CLOSE: u8 = 0x8;

impl FrameScanner {
    pub(crate) fn new(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload as u64,
            header: [0; 14],
            have: 0,
            skipping: None,
            close: None,
        }
    }

    /// Scans the next chunk of the connection; `Err` when a data frame header declares a payload
    /// over the limit (the whole chunk may pass: the messages before it are still answered), or
    /// when a close reason is not UTF-8 (only the bytes before that frame pass, so the codec
    /// never misreads it). Control frames' sizes are left to the codec (it allows 125 bytes).
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        let mut frame_start = 0;
        let mut at = 0;
        while at < chunk.len() {
            if let Some(remaining) = self.skipping {
                let take = remaining.min((chunk.len() - at) as u64) as usize;
                self.collect_close(&chunk[at..at + take]);
                at += take;
                let remaining = remaining - take as u64;
                self.skipping = (remaining > 0).then_some(remaining);
                if remaining == 0 && !self.close_reason_is_utf8() {
                    return Err(Refusal {
                        error: PayloadError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            InvalidCloseReason,
                        )),
                        pass: frame_start,
                    });
                }
                continue;
            }
            if self.have == 0 {
                frame_start = at;
            }
            self.header[self.have] = chunk[at];
            self.have += 1;
            at += 1;
            if let Some((opcode, payload)) = self.parsed_header() {
                let is_control = opcode & 0x08 != 0;
                if !is_control && payload > self.max_payload {
                    return Err(Refusal {
                        error: PayloadError::Overflow,
                        pass: chunk.len(),
                    });
                }
                self.close = (opcode == OPCODE_CLOSE && payload <= 125)
                    .then(|| (Vec::with_capacity(payload as usize), self.mask()));
                self.have = 0;
                self.skipping = (payload > 0).then_some(payload);
            }
        }
        Ok(())
    }

    fn mask(&self) -> Option<[u8; 4]> {
        let h = &self.header[..self.have];
        (h[1] & 0x80 != 0).then(|| {
            let at = h.len() - 4;
            [h[at], h[at + 1], h[at + 2], h[at + 3]]
        })
    }

    fn collect_close(&mut self, bytes: &[u8]) {
        if let Some((reason, mask)) = &mut self.close {
            for &b in bytes {
                let key = mask.map_or(0, |m| m[reason.len() % 4]);
                reason.push(b ^ key);
            }
        }
    }

    /// True unless a finished close frame carries a reason that is not UTF-8.
    fn close_reason_is_utf8(&mut self) -> bool {
        match self.close.take() {
            Some((payload, _)) if payload.len() > 2 => std::str::from_utf8(&payload[2..]).is_ok(),
            _ => true,
        }
    }

    /// The opcode and payload length once the whole header has been read.
    fn parsed_header(&self) -> Option<(u8, u64)> {
        let h = &self.header[..self.have];
        if h.len() < 2 {
            return None;
        }
        let mask_len = if h[1] & 0x80 != 0 { 4 } else { 0 };
        let (ext_len, short) = match h[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            len => (0, Some(u64::from(len))),
        };
        if h.len() < 2 + ext_len + mask_len {
            return None;
        }
        let payload = short.unwrap_or_else(|| {
            h[2..2 + ext_len]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        });
        Some((h[0] & 0x0f, payload))
    }
}

/// The request body of an upgraded connection, passed through a [`FrameScanner`]. An oversized
/// frame ends the stream with `PayloadError::Overflow`, delivered one poll after the bytes before
/// it so the messages that preceded it are still answered.
pub(crate) struct ScannedPayload<S> {
    inner: S,
    scanner: FrameScanner,
    failed: Option<PayloadError>,
    yielded_before_failure: bool,
}

impl<S> ScannedPayload<S> {
    pub(crate) fn new(inner: S, max_payload: usize) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(max_payload),
            failed: None,
            yielded_before_failure: false,
        }
    }
}

impl<S> Stream for ScannedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(err) = this.failed.take() {
            if !this.yielded_before_failure {
                // Let the reader decode what it has before it sees the error.
                this.yielded_before_failure = true;
                this.failed = Some(err);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(err)));
        }
        if this.yielded_before_failure {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => match this.scanner.scan(&bytes) {
                Ok(()) => Poll::Ready(Some(Ok(bytes))),
                Err(refusal) => {
                    this.failed = Some(refusal.error);
                    Poll::Ready(Some(Ok(bytes.slice(..refusal.pass))))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> Bytes {
        Bytes::copy_from_slice(bytes)
    }

    #[test]
    fn fragments_are_joined_into_one_message() {
        let cases: Vec<(Vec<Item>, Assembled)> = vec![
            (
                vec![
                    Item::FirstText(text(b"Hel")),
                    Item::Continue(text(b"lo, ")),
                    Item::Last(text(b"world")),
                ],
                Assembled::Text("Hello, world".into()),
            ),
            (
                vec![Item::FirstBinary(text(&[0, 1])), Item::Last(text(&[2]))],
                Assembled::Binary(text(&[0, 1, 2])),
            ),
            (
                vec![Item::FirstText(Bytes::new()), Item::Last(Bytes::new())],
                Assembled::Text("".into()),
            ),
            // "€" is E2 82 AC: cut between fragments it is still valid.
            (
                vec![
                    Item::FirstText(text(&[0xE2])),
                    Item::Continue(text(&[0x82])),
                    Item::Last(text(&[0xAC])),
                ],
                Assembled::Text("€".into()),
            ),
        ];
        for (items, expected) in cases {
            let mut assembler = MessageAssembler::new(64);
            let mut result = None;
            for item in items {
                result = assembler.push(item).unwrap();
            }
            assert_eq!(result, Some(expected));
        }
    }

    #[test]
    fn invalid_utf8_fails_at_the_first_fragment_that_shows_it() {
        let mut assembler = MessageAssembler::new(64);
        assert_eq!(
            assembler.push(Item::FirstText(text(b"ok \xC0\xAF"))),
            Err(Violation::InvalidUtf8)
        );
        let mut assembler = MessageAssembler::new(64);
        assert_eq!(assembler.push(Item::FirstText(text(b"\xE2\x82"))), Ok(None));
        assert_eq!(
            assembler.push(Item::Continue(text(b"A"))),
            Err(Violation::InvalidUtf8)
        );
        let mut assembler = MessageAssembler::new(64);
        assert_eq!(assembler.push(Item::FirstText(text(b"\xE2\x82"))), Ok(None));
        assert_eq!(
            assembler.push(Item::Last(Bytes::new())),
            Err(Violation::InvalidUtf8),
            "a sequence still open at the end of the message is invalid"
        );
    }

    #[test]
    fn fragments_over_the_limit_fail_before_the_message_ends() {
        let mut assembler = MessageAssembler::new(4);
        assert_eq!(assembler.push(Item::FirstBinary(text(b"abc"))), Ok(None));
        assert_eq!(
            assembler.push(Item::Continue(text(b"de"))),
            Err(Violation::TooBig { max: 4 })
        );
        let mut assembler = MessageAssembler::new(4);
        assembler.push(Item::FirstBinary(text(b"ab"))).unwrap();
        assert_eq!(
            assembler.push(Item::Last(text(b"cd"))),
            Ok(Some(Assembled::Binary(text(b"abcd")))),
            "exactly the limit is allowed"
        );
    }

    #[test]
    fn continuations_out_of_order_are_protocol_errors() {
        let mut assembler = MessageAssembler::new(64);
        assert!(matches!(
            assembler.push(Item::Continue(text(b"x"))),
            Err(Violation::Protocol(_))
        ));
        assert!(matches!(
            assembler.push(Item::Last(text(b"x"))),
            Err(Violation::Protocol(_))
        ));
        assembler.push(Item::FirstText(text(b"a"))).unwrap();
        assert!(matches!(
            assembler.push(Item::FirstBinary(text(b"b"))),
            Err(Violation::Protocol(_))
        ));
    }

    #[test]
    fn violations_close_with_their_rfc_6455_codes() {
        let cases = [
            (Violation::Protocol("x".into()), 1002u16),
            (Violation::InvalidUtf8, 1007),
            (Violation::TooBig { max: 1 }, 1009),
        ];
        for (violation, code) in cases {
            assert_eq!(u16::from(violation.close_reason().code), code);
        }
    }

    #[test]
    fn decoding_errors_are_classified_by_their_cause() {
        let not_utf8 = vec![0xFF];
        let utf8 = std::str::from_utf8(&not_utf8).unwrap_err();
        let cases = [
            (ProtocolError::Overflow, Some(1009u16)),
            (
                ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, utf8)),
                Some(1007),
            ),
            (
                ProtocolError::Io(io::Error::other(PayloadError::Overflow)),
                Some(1009),
            ),
            (
                ProtocolError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "Received a frame with non-zero reserved bits",
                )),
                Some(1002),
            ),
            (ProtocolError::UnmaskedFrame, Some(1002)),
            (ProtocolError::InvalidOpcode(3), Some(1002)),
            (ProtocolError::BadOpCode, Some(1002)),
            (
                ProtocolError::Io(io::Error::other(PayloadError::Incomplete(None))),
                None,
            ),
        ];
        for (err, code) in cases {
            let got = match classify(&err, 10) {
                StreamFailure::Violation(v) => Some(u16::from(v.close_reason().code)),
                StreamFailure::Transport => None,
            };
            assert_eq!(got, code, "{err:?}");
        }
    }

    /// A masked client frame header for `opcode` with `len` bytes of payload.
    fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(opcode: u8, len: u64) -> Vec<u8> {
        let mut f = header(opcode, true, len);
        f.resize(f.len() + len as usize, b'x');
        f
    }

    #[test]
    fn the_scanner_refuses_a_data_frame_over_the_limit_from_its_header() {
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("small text", frame(1, 10), true),
            ("exactly the limit", frame(2, 100), true),
            ("one over", header(2, true, 101), false),
            ("16-bit length", header(1, false, 300), false),
            ("64-bit length", header(0, true, 1 << 40), false),
            ("ping is the codec's business", frame(9, 120), true),
            (
                "second frame over",
                [frame(1, 5), header(2, true, 1000)].concat(),
                false,
            ),
            (
                "several frames",
                [frame(1, 100), frame(9, 0), frame(0, 100)].concat(),
                true,
            ),
        ];
        for (name, bytes, ok) in cases {
            // Whole, and split at every position, so headers cut between chunks are read right.
            for split in 0..=bytes.len() {
                let mut scanner = FrameScanner::new(100);
                let result = scanner
                    .scan(&bytes[..split])
                    .and_then(|()| scanner.scan(&bytes[split..]));
                assert_eq!(result.is_ok(), ok, "{name}, split at {split}");
            }
        }
    }

    fn close_frame(reason: &[u8]) -> Vec<u8> {
        let payload: Vec<u8> = [&[0x03, 0xe8][..], reason].concat();
        let mut f = header(8, true, payload.len() as u64);
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        f
    }

    #[test]
    fn the_scanner_stops_before_a_close_frame_whose_reason_is_not_utf8() {
        let text = frame(1, 5);
        for (reason, refused) in [
            (&b"bye"[..], false),
            (&[0xff, 0xfe][..], true),
            (&[0xc3][..], true),
        ] {
            let bytes = [text.clone(), close_frame(reason)].concat();
            for split in 0..=bytes.len() {
                let mut scanner = FrameScanner::new(100);
                // Bytes that reach the codec: all of a chunk that passed, the allowed part of
                // the refused one. Never the close frame, unless it began in an earlier chunk.
                let (passed, refusal) = match scanner.scan(&bytes[..split]) {
                    Err(refusal) => (refusal.pass, Some(refusal)),
                    Ok(()) => match scanner.scan(&bytes[split..]) {
                        Err(refusal) => (split + refusal.pass, Some(refusal)),
                        Ok(()) => (bytes.len(), None),
                    },
                };
                assert_eq!(refusal.is_some(), refused, "{reason:?}, split at {split}");
                if let Some(refusal) = refusal {
                    assert!(matches!(refusal.error, PayloadError::Io(_)));
                    let whole_frame_in_one_chunk = split == bytes.len();
                    let expected = if whole_frame_in_one_chunk {
                        text.len()
                    } else {
                        split.max(text.len())
                    };
                    assert_eq!(passed, expected, "{reason:?}, split at {split}");
                }
            }
        }
    }
}
