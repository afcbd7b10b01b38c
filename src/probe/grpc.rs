//! gRPC probes: `grpc.health.v1.Health/Check` over HTTP/2 (prior knowledge, no TLS),
//! passing when the answer is SERVING. The request and answer are one small protobuf
//! field each, so they are encoded here rather than through generated code.

use std::net::SocketAddr;

use bytes::{Buf, Bytes};

use super::check::{ProbeError, authority, connect, excerpt};

const PATH: &str = "/grpc.health.v1.Health/Check";
/// The most read of an answer's body: a `HealthCheckResponse` is a few bytes.
const MAX_BODY: usize = 1024;
/// The most accepted of an answer's headers or trailers (h2's default is 16 MiB).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// The peer may send no more than this before we read it (also the most buffered).
const WINDOW: u32 = 16 * 1024;

pub async fn probe(address: SocketAddr, service: Option<&str>) -> Result<(), ProbeError> {
    let stream = connect(address).await?;
    // HTTP/2 writes several small frames; Nagle would hold them back. (HTTP/1.1 probes
    // write their request in one go and need no such option.)
    let _ = stream.set_nodelay(true);
    let (client, connection) = h2::client::Builder::new()
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .enable_push(false)
        .handshake(stream)
        .await
        .map_err(h2_error)?;
    // The connection future drives the socket; the call runs beside it and the
    // connection is dropped (closed) as soon as the call has its answer.
    let call = call(client, address, service);
    tokio::pin!(connection);
    tokio::select! {
        result = call => result,
        closed = &mut connection => Err(closed.err().map_or_else(
            || ProbeError::Malformed("connection closed before an answer".to_owned()),
            h2_error,
        )),
    }
}

async fn call(
    client: h2::client::SendRequest<Bytes>,
    address: SocketAddr,
    service: Option<&str>,
) -> Result<(), ProbeError> {
    let mut client = client.ready().await.map_err(h2_error)?;
    let request = http::Request::post(format!(
        "http://{}{PATH}",
        authority(address.ip(), address.port())
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header(
        "user-agent",
        concat!("extsvc-probe/", env!("CARGO_PKG_VERSION")),
    )
    .body(())
    .map_err(|e| ProbeError::Malformed(e.to_string()))?;
    let (response, mut send) = client.send_request(request, false).map_err(h2_error)?;
    send.send_data(frame(&encode_request(service.unwrap_or_default())), true)
        .map_err(h2_error)?;

    let response = response.await.map_err(h2_error)?;
    if response.status() != http::StatusCode::OK {
        return Err(ProbeError::Status(response.status().as_u16()));
    }
    // A failed call may answer with headers only ("trailers-only").
    check_grpc_status(response.headers())?;
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_error)?;
        if message.len() + chunk.len() > MAX_BODY {
            return Err(ProbeError::Malformed(format!(
                "an answer longer than {MAX_BODY} bytes"
            )));
        }
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    if let Some(trailers) = body.trailers().await.map_err(h2_error)? {
        check_grpc_status(&trailers)?;
    }
    match decode_status(unframe(&message)?)? {
        1 => Ok(()),
        2 => Err(ProbeError::Grpc("NOT_SERVING".to_owned())),
        3 => Err(ProbeError::Grpc("SERVICE_UNKNOWN".to_owned())),
        0 => Err(ProbeError::Grpc("UNKNOWN".to_owned())),
        other => Err(ProbeError::Grpc(format!("status {other}"))),
    }
}

fn h2_error(error: h2::Error) -> ProbeError {
    match error.into_io() {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
        Some(io) => ProbeError::Io(io),
        None => ProbeError::Malformed("HTTP/2 protocol error".to_owned()),
    }
}

fn check_grpc_status(headers: &http::HeaderMap) -> Result<(), ProbeError> {
    match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        None | Some("0") => Ok(()),
        Some(code) => {
            // `grpc-message` arrives percent-encoded ("service%20not%20registered").
            let message = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(|v| excerpt(&percent_encoding::percent_decode_str(v).decode_utf8_lossy()))
                .unwrap_or_default();
            Err(ProbeError::Grpc(
                format!("gRPC status {} {message}", excerpt(code))
                    .trim_end()
                    .to_owned(),
            ))
        }
    }
}

/// `HealthCheckRequest { string service = 1; }`
fn encode_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    message
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// gRPC's length-prefixed message frame (uncompressed).
fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

fn unframe(mut body: &[u8]) -> Result<&[u8], ProbeError> {
    if body.len() < 5 {
        return Err(ProbeError::Malformed("no gRPC message".to_owned()));
    }
    let compressed = body.get_u8();
    let length = body.get_u32() as usize;
    if compressed != 0 || body.len() < length {
        return Err(ProbeError::Malformed(
            "unexpected gRPC message frame".to_owned(),
        ));
    }
    Ok(&body[..length])
}

/// `HealthCheckResponse { ServingStatus status = 1; }`; other fields are skipped.
fn decode_status(mut message: &[u8]) -> Result<u64, ProbeError> {
    let bad = || ProbeError::Malformed("undecodable HealthCheckResponse".to_owned());
    let mut status = 0;
    while !message.is_empty() {
        let key = take_varint(&mut message).ok_or_else(bad)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = take_varint(&mut message).ok_or_else(bad)?,
            (_, 0) => {
                take_varint(&mut message).ok_or_else(bad)?;
            }
            (_, 2) => {
                let length = take_varint(&mut message).ok_or_else(bad)? as usize;
                message = message.get(length..).ok_or_else(bad)?;
            }
            (_, 1) => message = message.get(8..).ok_or_else(bad)?,
            (_, 5) => message = message.get(4..).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_the_service_name() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("db"), [0x0a, 2, b'd', b'b']);
        assert_eq!(&frame(&[0x0a, 0])[..], [0, 0, 0, 0, 2, 0x0a, 0]);
    }

    #[test]
    fn grpc_messages_are_percent_decoded_and_quoted_as_a_short_excerpt() {
        let error = |message: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-status", http::HeaderValue::from_static("5"));
            headers.insert("grpc-message", message.parse().unwrap());
            check_grpc_status(&headers).unwrap_err().to_string()
        };
        assert_eq!(
            error("service%20not%20registered"),
            "gRPC status 5 service not registered"
        );
        assert_eq!(error("caf%C3%A9 100%"), "gRPC status 5 café 100%");
        let long = error(&format!("%1B[31m{}", "x".repeat(100_000)));
        assert!(long.chars().count() < 200, "{long}");
        assert!(long.starts_with("gRPC status 5 \\u{1b}[31mxxx"), "{long}");
    }

    #[test]
    fn answers_decode_their_status_and_skip_other_fields() {
        assert_eq!(decode_status(&[0x08, 1]).ok(), Some(1));
        assert_eq!(decode_status(&[0x08, 2]).ok(), Some(2));
        assert_eq!(
            decode_status(&[]).ok(),
            Some(0),
            "proto3 omits the default UNKNOWN"
        );
        assert_eq!(decode_status(&[0x12, 2, b'x', b'y', 0x08, 1]).ok(), Some(1));
        assert!(decode_status(&[0x08]).is_err());
        assert_eq!(
            unframe(&[0, 0, 0, 0, 2, 0x08, 1]).ok(),
            Some(&[0x08, 1][..])
        );
        assert!(unframe(&[1, 0, 0, 0, 2, 0x08, 1]).is_err());
    }
}
