//! Health checks: what to probe on every address, and how often.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::resource;

use super::port::resolve_check_port;
use super::{CheckPort, DnsLabel, DnsSubdomain, Errors, Invalid, Pointer, ServicePort};

const MAX_HEADERS: usize = 32;
const MAX_HEADER_NAME_LEN: usize = 128;
const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Headers a check may not set: the probe frames its own request (one GET, no body, a
/// fresh connection it closes), so these would contradict it or smuggle a second one.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];
const MAX_PATH_LEN: usize = 2048;
/// A probe that hangs holds one of its service's turns this long at most (kubelet has no
/// limit; a minute is far above any health endpoint worth the name).
const MAX_TIMEOUT_SECONDS: i32 = 60;

/// One check, run against every address that serves its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: DnsLabel,
    pub probe: Probe,
    pub timing: Timing,
}

/// What a single probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http(HttpProbe),
    Tcp {
        port: CheckPort,
    },
    Grpc {
        port: CheckPort,
        service: Option<String>,
    },
}

impl Probe {
    pub fn port(&self) -> &CheckPort {
        match self {
            Self::Http(http) => &http.port,
            Self::Tcp { port } | Self::Grpc { port, .. } => port,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub port: CheckPort,
    pub path: String,
    pub tls: Option<TlsOptions>,
    /// `Host` header, and the TLS server name.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expected_statuses: StatusRanges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsOptions {
    pub insecure_skip_verify: bool,
}

/// Status codes that count as success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(Vec<RangeInclusive<u16>>);

impl StatusRanges {
    pub fn parse(ranges: &[String]) -> Result<Self, Invalid> {
        const FORMAT: Invalid = Invalid::Format(
            "a list of status codes or ranges between 100 and 599, like \"200\" or \"200-399\"",
        );
        if ranges.is_empty() {
            return Err(Invalid::Empty);
        }
        let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        ranges
            .iter()
            .map(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                match (code(low.trim()), code(high.trim())) {
                    (Some(low), Some(high)) if low <= high => Ok(low..=high),
                    _ => Err(FORMAT),
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }
}

/// Kubelet's probe timing, checked to be consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    period: Duration,
    timeout: Duration,
    initial_delay: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Timing {
    pub fn period(&self) -> Duration {
        self.period
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
}

fn in_range(value: i32, min: i32, max: i32) -> Result<u32, Invalid> {
    u32::try_from(value)
        .ok()
        .filter(|_| (min..=max).contains(&value))
        .ok_or(Invalid::OutOfRange {
            min: min.into(),
            max: max.into(),
        })
}

fn seconds(value: u32) -> Duration {
    Duration::from_secs(value.into())
}

impl HealthCheck {
    pub(super) fn parse(
        check: &resource::HealthCheck,
        ports: &[ServicePort],
        at: &Pointer,
        errors: &mut Errors,
    ) -> Option<Self> {
        let name = errors.check(&at.field("name"), DnsLabel::parse(&check.name));
        let probe = parse_probe(check, ports, at, errors);

        let period = errors.check(
            &at.field("periodSeconds"),
            in_range(check.period_seconds, 1, 3600),
        );
        let timeout = errors.check(
            &at.field("timeoutSeconds"),
            in_range(check.timeout_seconds, 1, MAX_TIMEOUT_SECONDS),
        );
        let initial_delay = errors.check(
            &at.field("initialDelaySeconds"),
            in_range(check.initial_delay_seconds, 0, 3600),
        );
        let success_threshold = errors.check(
            &at.field("successThreshold"),
            in_range(check.success_threshold, 1, 100),
        );
        let failure_threshold = errors.check(
            &at.field("failureThreshold"),
            in_range(check.failure_threshold, 1, 100),
        );
        if let (Some(period), Some(timeout)) = (period, timeout)
            && timeout > period
        {
            errors.add(
                &at.field("timeoutSeconds"),
                Invalid::Rule("must not be above periodSeconds"),
            );
            return None;
        }
        Some(Self {
            name: name?,
            probe: probe?,
            timing: Timing {
                period: seconds(period?),
                timeout: seconds(timeout?),
                initial_delay: seconds(initial_delay?),
                success_threshold: success_threshold?,
                failure_threshold: failure_threshold?,
            },
        })
    }
}

fn parse_probe(
    check: &resource::HealthCheck,
    ports: &[ServicePort],
    at: &Pointer,
    errors: &mut Errors,
) -> Option<Probe> {
    match (&check.http, &check.tcp, &check.grpc) {
        (Some(http), None, None) => {
            parse_http(http, ports, &at.field("http"), errors).map(Probe::Http)
        }
        (None, Some(tcp), None) => {
            let port = errors.check(
                &at.field("tcp").field("port"),
                resolve_check_port(&tcp.port, ports),
            )?;
            Some(Probe::Tcp { port })
        }
        (None, None, Some(grpc)) => {
            let at = at.field("grpc");
            let port = errors.check(&at.field("port"), resolve_check_port(&grpc.port, ports));
            let service = match &grpc.service {
                Some(service) if service.len() > 256 => {
                    errors.add(&at.field("service"), Invalid::TooLong { max: 256 });
                    None
                }
                service => Some(service.clone()),
            };
            Some(Probe::Grpc {
                port: port?,
                service: service?,
            })
        }
        _ => {
            errors.add(
                at,
                Invalid::Rule("must set exactly one of http, tcp and grpc"),
            );
            None
        }
    }
}

fn parse_http(
    http: &resource::HttpCheck,
    ports: &[ServicePort],
    at: &Pointer,
    errors: &mut Errors,
) -> Option<HttpProbe> {
    let port = errors.check(&at.field("port"), resolve_check_port(&http.port, ports));
    let path = errors.check(&at.field("path"), check_request_path(&http.path));
    let host = match &http.host {
        Some(host) => errors.check(&at.field("host"), check_host(host)).map(Some),
        None => Some(None),
    };
    let headers = at.field("headers");
    if http.headers.len() > MAX_HEADERS {
        errors.add(&headers, Invalid::TooMany { max: MAX_HEADERS });
    }
    for (i, header) in http.headers.iter().enumerate() {
        let at = headers.index(i);
        errors.check(&at.field("name"), check_header_name(&header.name));
        errors.check(&at.field("value"), check_header_value(&header.value));
    }
    let expected_statuses = errors.check(
        &at.field("expectedStatuses"),
        StatusRanges::parse(&http.expected_statuses),
    );
    let tls = match http.scheme {
        resource::HttpScheme::Https => Some(TlsOptions {
            insecure_skip_verify: http.insecure_skip_verify,
        }),
        resource::HttpScheme::Http if http.insecure_skip_verify => {
            errors.add(
                &at.field("insecureSkipVerify"),
                Invalid::Rule("applies only to scheme HTTPS"),
            );
            return None;
        }
        resource::HttpScheme::Http => None,
    };
    Some(HttpProbe {
        port: port?,
        path: path?,
        tls,
        host: host?,
        headers: http
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        expected_statuses: expected_statuses?,
    })
}

/// An absolute request path (with an optional query) without spaces or control characters.
fn check_request_path(path: &str) -> Result<String, Invalid> {
    if path.len() > MAX_PATH_LEN {
        return Err(Invalid::TooLong { max: MAX_PATH_LEN });
    }
    if !path.starts_with('/') || !path.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Invalid::Format(
            "an absolute path starting with '/', without spaces",
        ));
    }
    Ok(path.to_owned())
}

fn check_host(host: &str) -> Result<String, Invalid> {
    if host.parse::<IpAddr>().is_ok() || DnsSubdomain::parse(host).is_ok() {
        Ok(host.to_owned())
    } else {
        Err(Invalid::Format("a DNS name or an IP address"))
    }
}

/// An HTTP field name: RFC 9110 token characters.
fn check_header_name(name: &str) -> Result<(), Invalid> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(Invalid::Format(
            "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
        ));
    }
    if name.len() > MAX_HEADER_NAME_LEN {
        return Err(Invalid::TooLong {
            max: MAX_HEADER_NAME_LEN,
        });
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(Invalid::Rule("set the Host header with the host field"));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
    {
        return Err(Invalid::Rule(
            "is a framing or hop-by-hop header, which the probe sets itself",
        ));
    }
    Ok(())
}

fn check_header_value(value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(Invalid::TooLong {
            max: MAX_HEADER_VALUE_LEN,
        });
    }
    if value
        .chars()
        .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        Ok(())
    } else {
        Err(Invalid::Format("printable ASCII without line breaks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_codes_and_ranges() {
        let ranges = StatusRanges::parse(&["200".into(), "300-399".into()]).unwrap();
        assert!(ranges.contains(200) && ranges.contains(301) && ranges.contains(399));
        assert!(!ranges.contains(201) && !ranges.contains(426));
    }

    #[test]
    fn malformed_status_ranges_are_refused() {
        assert_eq!(StatusRanges::parse(&[]), Err(Invalid::Empty));
        for bad in [
            "",
            "2xx",
            "99",
            "600",
            "400-300",
            "200-",
            "-200",
            "200-300-400",
        ] {
            assert!(StatusRanges::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_paths_must_be_absolute_and_printable() {
        assert!(check_request_path("/healthz?full=1").is_ok());
        for bad in ["", "healthz", "/a b", "/\n"] {
            assert!(check_request_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_names_and_values_are_checked() {
        assert!(check_header_name("X-Forwarded-Proto").is_ok());
        for bad in ["", "Bad Header", "a:b", "Host"] {
            assert!(check_header_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_header_value("Bearer abc").is_ok());
        assert!(check_header_value("a\r\nInjected: 1").is_err());
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_refused() {
        for reserved in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "Upgrade",
            "Expect",
        ] {
            assert!(
                matches!(check_header_name(reserved), Err(Invalid::Rule(_))),
                "{reserved}"
            );
        }
        assert!(check_header_name("Authorization").is_ok());
    }

    #[test]
    fn header_names_and_values_have_a_length_cap() {
        let name = "x".repeat(MAX_HEADER_NAME_LEN);
        assert!(check_header_name(&name).is_ok());
        assert!(matches!(
            check_header_name(&format!("{name}x")),
            Err(Invalid::TooLong { .. })
        ));
        let value = "v".repeat(MAX_HEADER_VALUE_LEN);
        assert!(check_header_value(&value).is_ok());
        assert!(matches!(
            check_header_value(&format!("{value}v")),
            Err(Invalid::TooLong { .. })
        ));
    }
}
