//! docs/reference.md §3, §8: malformed WebSocket frames from a client never reach the log at
//! ERROR, whatever `RUST_LOG` an operator sets (the shipped files set none). actix-http's codec
//! reports one of them, a fragmented control frame, with `tracing::error!`, which reaches
//! env_logger through tracing's `log` feature; tandem silences that target under every filter
//! except one that names it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use crate::{
    helpers::BinaryServer,
    websocket_client::{PING, RawSocket, TEXT, encode},
};

const WAIT: Duration = Duration::from_secs(5);
const PROTOCOL_ERROR: u16 = 1002;
/// What actix-http's codec logs for a fragmented control frame.
const CODEC_ERROR: &str = "ERROR actix_http::ws::codec: Unfinished fragment";
/// tandem's access line for an upgrade, written when the socket's connection has ended.
const UPGRADE_LOGGED: &str = "\"GET /socket\" 101";

/// Sends every kind of malformed frame, each on its own socket, and returns tandem's stderr once
/// the access log shows every one of those sockets has ended (so the codec has had its say).
async fn stderr_after_malformed_frames(rust_log: &str) -> String {
    let tandem = BinaryServer::start(&[("RUST_LOG", rust_log), ("TANDEM__STATIC__MODE", "nginx")]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, tandem.port));
    let reserved_bits = {
        let mut frame = encode(true, TEXT, b"rsv", true);
        frame[0] |= 0x40;
        frame
    };
    let violations: [(&str, Vec<u8>); 5] = [
        ("an unmasked frame", encode(true, TEXT, b"hi", false)),
        ("a reserved opcode", encode(true, 0x3, b"", true)),
        ("reserved bits", reserved_bits),
        ("a ping over 125 bytes", encode(true, PING, &[0; 126], true)),
        ("a fragmented ping", encode(false, PING, b"", true)),
    ];
    for (name, frame) in &violations {
        let mut socket = RawSocket::connect(addr).await;
        socket.send_raw(frame).await;
        assert_eq!(socket.expect_close(WAIT).await, PROTOCOL_ERROR, "{name}");
    }
    // An unfinished fragment: the message never ends because the client hangs up.
    let mut socket = RawSocket::connect(addr).await;
    socket.send_raw(&encode(false, TEXT, b"never ", true)).await;
    drop(socket);

    let sockets = violations.len() + 1;
    let deadline = Instant::now() + WAIT;
    while tandem.stderr().matches(UPGRADE_LOGGED).count() < sockets && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stderr = tandem.stderr();
    assert_eq!(
        stderr.matches(UPGRADE_LOGGED).count(),
        sockets,
        "every socket ended and was logged, on the same stream an ERROR line would use:\n{stderr}"
    );
    stderr
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" ERROR ")).collect()
}

#[tokio::test]
async fn malformed_frames_log_no_error_under_rust_log_info() {
    let stderr = stderr_after_malformed_frames("info").await;
    assert_eq!(error_lines(&stderr), Vec::<&str>::new(), "{stderr}");
}

#[tokio::test]
async fn malformed_frames_log_no_error_under_rust_log_debug() {
    let stderr = stderr_after_malformed_frames("debug").await;
    assert!(
        stderr.contains(" DEBUG "),
        "the debug filter took effect:\n{stderr}"
    );
    assert_eq!(error_lines(&stderr), Vec::<&str>::new(), "{stderr}");
}

/// The control for the two tests above: the same frames do make the codec log at ERROR, and
/// the ERROR line is seen, when the operator asks for that target by name.
#[tokio::test]
async fn naming_the_codec_target_in_rust_log_brings_its_error_back() {
    let stderr = stderr_after_malformed_frames("info,actix_http::ws::codec=error").await;
    assert!(stderr.contains(CODEC_ERROR), "{stderr}");
    assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
}
