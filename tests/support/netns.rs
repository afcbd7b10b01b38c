//! Test hosts with routable addresses, for end-to-end health checks: Kubernetes refuses
//! loopback endpoint addresses, so backends listen inside a network namespace of our
//! own, joined to this host by a veth pair on a TEST-NET-3 (203.0.113.0/24) subnet.
//! Traffic to these addresses never leaves the machine: setup checks that the route goes
//! through our veth before any test uses them. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

pub struct TestHosts {
    namespace: String,
    /// Addresses inside the namespace, usable as endpoint addresses.
    pub ips: Vec<IpAddr>,
}

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` (iproute2) runs");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes namespaces left by test processes that died without cleaning up.
fn remove_stale() {
    for line in ip(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = name.strip_prefix("extsvc-test-")
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl TestHosts {
    /// A namespace with `count` addresses (at most 13), one per test process.
    pub fn create(count: usize) -> Self {
        assert!(count <= 13, "a /28 holds 13 test hosts");
        remove_stale();
        let pid = std::process::id();
        let namespace = format!("extsvc-test-{pid}");
        let (outside, inside) = (format!("xo{pid}"), format!("xi{pid}"));
        // A /28 of 203.0.113.0/24 per process, so that parallel test binaries do not collide.
        let base = 16 * (pid % 16) as u8;
        let host = |n: u8| Ipv4Addr::new(203, 0, 113, base + n);
        ip(&["netns", "add", &namespace]);
        let hosts = Self {
            namespace: namespace.clone(),
            ips: (0..count as u8).map(|n| IpAddr::V4(host(2 + n))).collect(),
        };
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &namespace]);
        ip(&["addr", "add", &format!("{}/28", host(1)), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        for address in &hosts.ips {
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{address}/28"),
                "dev",
                &inside,
            ]);
        }
        ip(&["-n", &namespace, "link", "set", &inside, "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        for address in &hosts.ips {
            let route = ip(&["route", "get", &address.to_string()]);
            assert!(
                route.contains(&format!("dev {outside}")),
                "{address} is not routed to the test namespace: {route}"
            );
        }
        hosts
    }

    /// A listener on `ip` and `port` (0: chosen by the kernel) inside the namespace. A
    /// socket stays in the namespace it was made in, so a thread enters it just to make
    /// the socket.
    pub fn listen(&self, ip: IpAddr, port: u16) -> std::io::Result<std::net::TcpListener> {
        let path = format!("/var/run/netns/{}", self.namespace);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace file opens");
            // SAFETY: setns only changes this short-lived thread's network namespace.
            let entered =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            let listener = std::net::TcpListener::bind((ip, port))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .join()
        .expect("the namespace thread")
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}
