//! HTTP(S) probes: a GET on a fresh connection, passing on an expected status. Written
//! directly on the socket: a probe needs only the status line, and a pooled client would
//! keep connections alive, which hides a dead backend.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::domain::HttpProbe;

use super::check::{ProbeError, Tls, authority, connect, excerpt};

/// The most read while looking for the status line.
const MAX_STATUS_LINE: usize = 4 * 1024;

pub async fn probe(address: SocketAddr, check: &HttpProbe, tls: &Tls) -> Result<(), ProbeError> {
    let request = request(address, check);
    let stream = connect(address).await?;
    let status = match &check.tls {
        None => exchange(stream, &request).await?,
        Some(options) => {
            let config = if options.insecure_skip_verify {
                &tls.unverified
            } else {
                &tls.verified
            };
            // SNI and verification use `host` when given, else the IP itself.
            let name = match &check.host {
                Some(host) => ServerName::try_from(host.clone()),
                None => Ok(ServerName::IpAddress(address.ip().into())),
            }
            .map_err(|e| ProbeError::Tls(e.to_string()))?;
            let stream = TlsConnector::from(config.clone())
                .connect(name, stream)
                .await
                .map_err(|e| ProbeError::Tls(tls_reason(&e)))?;
            exchange(stream, &request).await?
        }
    };
    if check.expected_statuses.contains(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

fn request(address: SocketAddr, check: &HttpProbe) -> Vec<u8> {
    let host = match &check.host {
        // An IPv6 literal goes in brackets, as in a URL (RFC 9110, section 7.2).
        Some(host) if host.contains(':') => format!("[{host}]"),
        Some(host) => host.clone(),
        None => authority(address.ip(), address.port()),
    };
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: extsvc-probe/{}\r\nAccept: */*\r\nConnection: close\r\n",
        check.path,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in &check.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Sends the request and reads the status line; returns the status.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<u16, ProbeError> {
    stream.write_all(request).await.map_err(ProbeError::Io)?;
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !buffer.contains(&b'\n') {
        if buffer.len() >= MAX_STATUS_LINE {
            return Err(ProbeError::Malformed(
                "no status line in the first 4 KiB".to_owned(),
            ));
        }
        let read = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
        if read == 0 {
            return Err(ProbeError::Malformed(
                "connection closed before a status line".to_owned(),
            ));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    status(&buffer)
}

/// The status of `HTTP/1.x NNN reason`.
fn status(response: &[u8]) -> Result<u16, ProbeError> {
    let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => {
            code.parse().map_err(|_| malformed_status_line(&line))
        }
        _ => Err(malformed_status_line(&line)),
    }
}

fn malformed_status_line(line: &str) -> ProbeError {
    ProbeError::Malformed(format!("status line \"{}\"", excerpt(line)))
}

/// rustls' error text, without the I/O wrapper it arrives in.
fn tls_reason(error: &std::io::Error) -> String {
    match error.get_ref() {
        Some(inner) => inner.to_string(),
        None => error.to_string(),
    }
}

/// `insecureSkipVerify`: any certificate is accepted, but signatures are still checked
/// so the handshake itself stays sound.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_sent_in_brackets() {
        use crate::domain::{CheckPort, PortNumber, StatusRanges};
        let check = |host: &str| HttpProbe {
            port: CheckPort::Number(PortNumber::parse(8443).unwrap()),
            path: "/".to_owned(),
            tls: None,
            host: Some(host.to_owned()),
            headers: Vec::new(),
            expected_statuses: StatusRanges::parse(&["200".to_owned()]).unwrap(),
        };
        let address: SocketAddr = "[2001:db8::1]:8443".parse().unwrap();
        let sent = |host| String::from_utf8(request(address, &check(host))).unwrap();
        assert!(sent("2001:db8::2").contains("\r\nHost: [2001:db8::2]\r\n"));
        assert!(sent("db.example.com").contains("\r\nHost: db.example.com\r\n"));
    }

    #[test]
    fn a_status_line_is_quoted_as_a_short_escaped_excerpt() {
        let line = format!("HTTP/1.1 2x0 {}\x1b[31m\r\n", "A".repeat(4000));
        let Err(ProbeError::Malformed(message)) = status(line.as_bytes()) else {
            panic!("a malformed status line");
        };
        assert!(message.len() < 200, "{message}");
        assert!(!message.contains('\x1b'), "{message}");
    }

    #[test]
    fn status_lines_parse_and_anything_else_is_malformed() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n").ok(), Some(200));
        assert_eq!(status(b"HTTP/1.0 503\r\n").ok(), Some(503));
        assert_eq!(
            status(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: h2c\r\n").ok(),
            Some(426)
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"HTTP/1.1 2000 x\n",
            b"HTTP/2 200\n",
            b"\n",
        ] {
            assert!(
                matches!(status(bad), Err(ProbeError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
