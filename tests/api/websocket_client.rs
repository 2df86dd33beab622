//! A raw WebSocket client for the tests tungstenite cannot write: hand-made frames (fragments,
//! bad UTF-8, unmasked or reserved opcodes) and a client that never answers pings.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame (1005 when it carries none, as RFC 6455 §7.1.5 says).
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() >= 2 {
            u16::from_be_bytes([self.payload[0], self.payload[1]])
        } else {
            1005
        }
    }
}

pub struct RawSocket {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server's `101` response head.
    pub handshake: String,
}

impl RawSocket {
    /// Connects and completes the opening handshake on `/socket`.
    pub async fn connect(addr: SocketAddr) -> RawSocket {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /socket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut socket = RawSocket {
            stream,
            buf: Vec::new(),
            handshake: String::new(),
        };
        let head = socket.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got:\n{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong accept key:\n{head}"
        );
        socket.handshake = head;
        socket
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("handshake answer in time")
                .expect("read");
            assert!(n > 0, "connection closed during the handshake");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&encode(fin, opcode, payload, true)).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The server may already have closed after an earlier violation; that is what the
        // test then checks, so a failed write is not an error here.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes bytes and reports whether the connection took them (an error once it is gone).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame, or `None` once the server closed the TCP connection.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        timeout(wait, self.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no frame from the server within {wait:?}"))
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = decode(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads past data, pings and pongs until the close frame, and returns its code.
    pub async fn expect_close(&mut self, wait: Duration) -> u16 {
        loop {
            match self.next_frame(wait).await {
                Some(frame) if frame.opcode == CLOSE => return frame.close_code(),
                Some(_) => continue,
                None => panic!("the server hung up without a close frame"),
            }
        }
    }

    /// True once the server has closed the TCP connection (after its close frame).
    pub async fn hung_up(&mut self, wait: Duration) -> bool {
        loop {
            match timeout(wait, self.read_frame()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Encodes a client frame (masked unless told otherwise).
pub fn encode(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// Decodes one unmasked server frame from the front of `buf`: the frame and the bytes it used.
fn decode(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        len => (len as usize, 2),
    };
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    if buf.len() < start + len {
        return None;
    }
    Some((
        Frame {
            fin: buf[0] & 0x80 != 0,
            opcode: buf[0] & 0x0f,
            payload: buf[start..start + len].to_vec(),
        },
        start + len,
    ))
}
