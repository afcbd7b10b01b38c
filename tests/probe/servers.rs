//! Real backends on loopback ports for the engine to probe: a raw HTTP/1.1 server (plain
//! or TLS) whose answers the test steers, one that accepts and never answers, and a gRPC
//! health server. Each lives as long as the test's runtime.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The longest request head the server reads.
const MAX_HEAD: usize = 16 * 1024;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request line and header lines, without the blank line.
    pub head: String,
    pub received: Instant,
    pub received_at: SystemTime,
    /// The TLS server name the client sent, if any.
    pub sni: Option<String>,
}

impl Request {
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The request target (`/path?query`).
    pub fn target(&self) -> &str {
        self.line().split(' ').nth(1).unwrap_or_default()
    }

    /// The value of the first header called `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

#[derive(Default)]
struct State {
    status: AtomicU16,
    /// Statuses answered in order before falling back to `status`.
    script: Mutex<VecDeque<u16>>,
    delay_ms: AtomicU64,
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    requests: Mutex<Vec<Request>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An HTTP/1.1 server answering every request with an empty body and the current status.
/// It keeps connections alive unless the client asks to close, so a client that reused
/// connections would show fewer connections than requests.
pub struct HttpServer {
    pub port: u16,
    state: Arc<State>,
}

impl HttpServer {
    pub async fn start(status: u16) -> Self {
        Self::spawn(LOOPBACK, status, None).await
    }

    pub async fn start_at(ip: IpAddr, status: u16) -> std::io::Result<Self> {
        Self::try_spawn(ip, status, None).await
    }

    pub async fn start_tls(status: u16, config: Arc<rustls::ServerConfig>) -> Self {
        Self::spawn(LOOPBACK, status, Some(TlsAcceptor::from(config))).await
    }

    async fn spawn(ip: IpAddr, status: u16, tls: Option<TlsAcceptor>) -> Self {
        Self::try_spawn(ip, status, tls)
            .await
            .expect("bind a loopback port")
    }

    async fn try_spawn(ip: IpAddr, status: u16, tls: Option<TlsAcceptor>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        state.status.store(status, Ordering::SeqCst);
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move { accept(stream, tls, state).await });
            }
        });
        Ok(Self { port, state })
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Answers the next requests with `statuses`, in order.
    pub fn script(&self, statuses: &[u16]) {
        lock(&self.state.script).extend(statuses);
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(millis, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The most connections that were being served at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn accept(stream: TcpStream, tls: Option<TlsAcceptor>, state: Arc<State>) {
    state.accepted.fetch_add(1, Ordering::SeqCst);
    let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_open.fetch_max(open, Ordering::SeqCst);
    // Counted down before the last answer is written: once the client has it, the
    // connection no longer counts, whatever order the two sides then close in.
    let mut counted = true;
    match tls {
        None => serve(stream, None, &state, &mut counted).await,
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                serve(stream, sni, &state, &mut counted).await;
            }
        }
    }
    if counted {
        state.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    sni: Option<String>,
    state: &State,
    counted: &mut bool,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        let request = Request {
            head,
            received: Instant::now(),
            received_at: SystemTime::now(),
            sni: sni.clone(),
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        lock(&state.requests).push(request);

        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let status = lock(&state.script)
            .pop_front()
            .unwrap_or_else(|| state.status.load(Ordering::SeqCst));
        if close {
            state.open.fetch_sub(1, Ordering::SeqCst);
            *counted = false;
        }
        let answer = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(answer.as_bytes()).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads one request head (up to the blank line) from `stream`, keeping what follows it
/// in `buffer`.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            return Some(head);
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// A server that accepts connections and never answers; it holds each connection until
/// the client goes away.
pub struct HangingServer {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
}

impl HangingServer {
    pub async fn start() -> Self {
        let (listener, port) = bind_loopback().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (counter, open_now, most) = (accepted.clone(), open.clone(), max_open.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let now = open_now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let open_now = open_now.clone();
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    open_now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            accepted,
            max_open,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections held open at once, at most so far.
    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::SeqCst)
    }
}

/// A hostile HTTP/2 server on the gRPC health path: it answers every call with the
/// headers of a successful gRPC response and then one of its [`Hostility`]s.
pub struct HostileGrpcServer {
    pub port: u16,
}

#[derive(Clone, Copy)]
pub enum Hostility {
    /// Data frames without end, as fast as flow control lets them go.
    EndlessBody,
    /// A failed status whose `grpc-message` is `len` bytes long (trailers-only).
    LongMessage { len: usize },
}

impl HostileGrpcServer {
    pub async fn start(hostility: Hostility) -> Self {
        let (listener, port) = bind_loopback().await;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_hostile(stream, hostility));
            }
        });
        Self { port }
    }
}

async fn serve_hostile(stream: TcpStream, hostility: Hostility) {
    let Ok(mut connection) = h2::server::Builder::new()
        .max_send_buffer_size(1024 * 1024)
        .handshake::<_, bytes::Bytes>(stream)
        .await
    else {
        return;
    };
    while let Some(Ok((_request, mut respond))) = connection.accept().await {
        let response = http::Response::builder().header("content-type", "application/grpc");
        tokio::spawn(async move {
            match hostility {
                Hostility::EndlessBody => {
                    let Ok(mut send) =
                        respond.send_response(response.body(()).expect("a response"), false)
                    else {
                        return;
                    };
                    let chunk = bytes::Bytes::from(vec![0u8; 16 * 1024]);
                    while send.send_data(chunk.clone(), false).is_ok() {
                        send.reserve_capacity(chunk.len());
                        if std::future::poll_fn(|cx| send.poll_capacity(cx))
                            .await
                            .is_none()
                        {
                            return;
                        }
                    }
                }
                Hostility::LongMessage { len } => {
                    let response = response
                        .header("grpc-status", "14")
                        .header("grpc-message", "m".repeat(len))
                        .body(())
                        .expect("a response");
                    let _ = respond.send_response(response, true);
                }
            }
        });
    }
}

/// A listener on a free loopback port, and that port.
async fn bind_loopback() -> (TcpListener, u16) {
    let listener = TcpListener::bind(SocketAddr::new(LOOPBACK, 0))
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// A loopback port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    bind_loopback().await.1
}

/// A gRPC server with the standard health service (`grpc.health.v1.Health`).
pub struct GrpcHealthServer {
    pub port: u16,
    pub reporter: HealthReporter,
}

impl GrpcHealthServer {
    pub async fn start() -> Self {
        let (listener, port) = bind_loopback().await;
        let (reporter, service) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self { port, reporter }
    }

    pub async fn set(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }
}

/// A certificate and its key, as a TLS server uses them.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    /// A self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names).expect("self-signed cert");
        Self {
            cert: certified.cert.der().clone(),
            key: certified.signing_key.serialize_der(),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("server certificate");
        Arc::new(config)
    }
}

/// A certificate authority that issues server certificates.
pub struct Authority {
    pub cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Authority {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "extsvc probe test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, signed by this authority.
    pub fn issue(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).expect("server params");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        Identity {
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).expect("CA certificate");
        roots
    }
}
