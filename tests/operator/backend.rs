//! A backend for health checks: answers every request with the status it is set to,
//! on a fresh connection each time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::TestHosts;

pub struct Backend {
    pub address: SocketAddr,
    status: Arc<AtomicU16>,
    server: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Listens on `ip` inside the test namespace (`port` 0: any).
    pub fn start(hosts: &TestHosts, ip: IpAddr, port: u16, status: u16) -> Self {
        Self::try_start(hosts, ip, port, status).expect("the backend listens")
    }

    pub fn try_start(
        hosts: &TestHosts,
        ip: IpAddr,
        port: u16,
        status: u16,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::from_std(hosts.listen(ip, port)?)?;
        let address = listener.local_addr().expect("an address");
        let status = Arc::new(AtomicU16::new(status));
        let answer = status.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let code = answer.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            address,
            status,
            server,
        })
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Stops listening: probes get `connection refused`.
    pub fn stop(self) -> SocketAddr {
        self.server.abort();
        self.address
    }
}
