//! `tandem healthcheck` (docs/reference.md §2): asks the local server's `/healthz`, without curl, for Docker's
//! HEALTHCHECK; over HTTPS when `tls.mode` is not `off`.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(3);

/// The address to probe: the configured one, with a wildcard host replaced by loopback.
pub fn probe_address(settings: &Settings) -> SocketAddr {
    let ip = match settings.server.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, settings.server.port)
}

/// `Ok(())` when `/healthz` answered 200, else a sentence saying what happened. With `https`,
/// the request goes over TLS (the server speaks nothing else then).
pub fn check(addr: SocketAddr, https: bool) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|err| format!("cannot set timeouts on {addr}: {err}"))?;
    let scheme = if https { "https" } else { "http" };
    let status = if https {
        let connection = rustls::ClientConnection::new(
            Arc::new(loopback_tls_client()?),
            ServerName::IpAddress(addr.ip().into()),
        )
        .map_err(|err| format!("cannot start TLS with {addr}: {err}"))?;
        status_of(rustls::StreamOwned::new(connection, stream), addr)
    } else {
        status_of(stream, addr)
    };
    match status?.as_deref() {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{scheme}://{addr}/healthz answered {code}")),
        None => Err(format!(
            "{scheme}://{addr}/healthz sent no HTTP status line"
        )),
    }
}

/// Sends `GET /healthz` and returns the status code of the answer, if it has one.
fn status_of(mut stream: impl Read + Write, addr: SocketAddr) -> Result<Option<String>, String> {
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tandem-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .and_then(|()| stream.flush())
    .map_err(|err| format!("cannot send to {addr}: {err}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) => return Err(format!("no answer from {addr}: {err}")),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    Ok(status_line.split_whitespace().nth(1).map(str::to_string))
}

/// A TLS client that accepts whatever certificate the server shows. The healthcheck talks to
/// its own server on loopback (the address above), so there is nobody in between to verify
/// against, and the certificate may name only the public domain, be self-signed, or be the
/// placeholder served while ACME obtains the first one: verifying it would make the container
/// unhealthy for reasons that say nothing about whether tandem answers.
fn loopback_tls_client() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("cannot configure TLS: {err}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts any certificate, but still checks the handshake's signatures (they prove the peer
/// holds the key of the certificate it sent, which costs nothing to keep). Public for the HTTPS
/// tests, which look at which certificate was sent rather than trust it.
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
