//! docs/reference.md §7: RFC 6455 violations close the socket with the right code: 1002 for protocol errors,
//! 1007 for invalid UTF-8, 1009 for messages over `websocket.max_message_bytes`.

use std::time::Duration;

use crate::{
    helpers::{spawn_app, test_settings},
    websocket_client::{BINARY, CLOSE, CONTINUATION, PING, RawSocket, TEXT, encode},
};

const WAIT: Duration = Duration::from_secs(5);
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const TOO_BIG: u16 = 1009;

async fn socket_with_limit(max_message_bytes: usize) -> (crate::helpers::TestApp, RawSocket) {
    let mut settings = test_settings();
    settings.websocket.max_message_bytes = max_message_bytes;
    let app = spawn_app(settings).await;
    let socket = RawSocket::connect(app.addr).await;
    (app, socket)
}

async fn assert_closed_with(socket: &mut RawSocket, code: u16) {
    assert_eq!(socket.expect_close(WAIT).await, code);
    assert!(
        socket.hung_up(WAIT).await,
        "the server ends the connection after failing it"
    );
}

#[tokio::test]
async fn a_message_over_max_message_bytes_closes_with_1009() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    socket.send(true, BINARY, &[1u8; 1000]).await;
    assert_eq!(socket.next_frame(WAIT).await.unwrap().payload.len(), 1000);
    socket.send(true, BINARY, &[1u8; 1001]).await;
    assert_closed_with(&mut socket, TOO_BIG).await;
}

#[tokio::test]
async fn a_huge_frame_is_refused_from_its_header_before_its_payload_arrives() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    // Announce 1 GiB and send only the header: the answer cannot wait for the payload.
    let mut header = encode(true, BINARY, &[], true);
    header[1] = 0x80 | 127;
    header.splice(2..2, (1u64 << 30).to_be_bytes());
    socket.send_raw(&header).await;
    assert_closed_with(&mut socket, TOO_BIG).await;
}

#[tokio::test]
async fn fragments_adding_up_to_more_than_max_message_bytes_close_with_1009() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    socket.send(false, TEXT, &[b'a'; 600]).await;
    socket.send(false, CONTINUATION, &[b'a'; 600]).await;
    // No final fragment: the limit is enforced as the fragments arrive.
    assert_closed_with(&mut socket, TOO_BIG).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    socket.send(true, TEXT, b"caf\xC3").await;
    assert_closed_with(&mut socket, INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_fragmented_text_closes_with_1007_without_waiting_for_the_end() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    socket.send(false, TEXT, "κόσμε".as_bytes()).await;
    socket.send(false, CONTINUATION, b"\xED\xA0\x80").await; // a UTF-16 surrogate
    assert_closed_with(&mut socket, INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn a_text_message_ending_inside_a_character_closes_with_1007() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    socket.send(false, TEXT, b"ok \xE2\x82").await;
    socket.send(true, CONTINUATION, b"").await;
    assert_closed_with(&mut socket, INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let reserved_bits = {
        let mut frame = encode(true, TEXT, b"rsv", true);
        frame[0] |= 0x40;
        frame
    };
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "an unmasked client frame",
            vec![encode(true, TEXT, b"hi", false)],
        ),
        ("reserved data opcode 3", vec![encode(true, 0x3, b"", true)]),
        (
            "reserved control opcode 11",
            vec![encode(true, 0xB, b"", true)],
        ),
        ("reserved bits without an extension", vec![reserved_bits]),
        (
            "a continuation with nothing to continue",
            vec![encode(true, CONTINUATION, b"x", true)],
        ),
        (
            "a new message inside a fragmented one",
            vec![
                encode(false, TEXT, b"a", true),
                encode(true, TEXT, b"b", true),
            ],
        ),
        ("a fragmented ping", vec![encode(false, PING, b"", true)]),
        (
            "a ping longer than 125 bytes",
            vec![encode(true, PING, &[0; 126], true)],
        ),
        (
            "a close code that may not be sent",
            vec![encode(true, 0x8, &1005u16.to_be_bytes(), true)],
        ),
        (
            "a close frame of one byte",
            vec![encode(true, 0x8, &[3], true)],
        ),
    ];
    for (name, frames) in cases {
        let (_app, mut socket) = socket_with_limit(1000).await;
        for frame in frames {
            socket.send_raw(&frame).await;
        }
        assert_eq!(socket.expect_close(WAIT).await, PROTOCOL_ERROR, "{name}");
        assert!(socket.hung_up(WAIT).await, "{name}: the connection ends");
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_close_reason_closes_with_1007() {
    let (_app, mut socket) = socket_with_limit(1000).await;
    // Code 1000, then a reason that is not UTF-8.
    socket.send(true, CLOSE, &[0x03, 0xe8, 0xff, 0xfe]).await;
    assert_closed_with(&mut socket, INVALID_PAYLOAD).await;
}
