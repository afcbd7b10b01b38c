//! The hostnames a team may claim on a shared ingress controller, so that one team
//! cannot route another team's hostname to its own backends.

use crate::domain::{DnsSubdomain, FieldError, Pointer, ValidationErrors};
use crate::resource::ExternalServiceSpec;

/// The most host patterns one team has.
pub const MAX_HOST_PATTERNS: usize = 50;

/// A pattern is a host name, or `*.` and a host name (any one label in its place).
pub fn check_host_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    DnsSubdomain::parse(name)
        .map(drop)
        .map_err(|e| format!("must be a host name, or *. and a host name: {e}"))
}

/// Whether `host` (itself perhaps `*.` and a name) is one a pattern allows.
pub fn host_allowed(patterns: &[String], host: &str) -> bool {
    patterns.iter().any(|pattern| {
        pattern == host
            || pattern.strip_prefix('*').is_some_and(|suffix| {
                host.strip_suffix(suffix)
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
    })
}

/// Every Ingress host (of rules and of TLS) that `team`'s patterns do not allow.
pub fn check_ingress_hosts(
    spec: &ExternalServiceSpec,
    patterns: &[String],
    team: &str,
) -> Result<(), ValidationErrors> {
    let Some(ingress) = &spec.ingress else {
        return Ok(());
    };
    let at = Pointer::root().field("spec").field("ingress");
    let rules = ingress.rules.iter().enumerate().filter_map(|(i, rule)| {
        let host = rule.host.as_deref()?;
        Some((at.field("rules").index(i).field("host"), host))
    });
    let tls = ingress.tls.iter().enumerate().flat_map(|(i, tls)| {
        let at = at.field("tls").index(i).field("hosts");
        tls.hosts
            .iter()
            .enumerate()
            .map(move |(j, host)| (at.index(j), host.as_str()))
    });
    let allowed = if patterns.is_empty() {
        "none".to_owned()
    } else {
        patterns.join(", ")
    };
    let refused: Vec<FieldError> = rules
        .chain(tls)
        .filter(|(_, host)| !host_allowed(patterns, host))
        .map(|(pointer, host)| FieldError {
            pointer: pointer.as_str().to_owned(),
            detail: format!(
                "host {host} is not one team {team} may claim; its host patterns: {allowed}"
            ),
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_pattern_allows_one_label_in_its_place() {
        let patterns = vec![
            "*.payments.example.com".to_owned(),
            "pay.example.com".to_owned(),
        ];
        assert!(host_allowed(&patterns, "api.payments.example.com"));
        assert!(host_allowed(&patterns, "*.payments.example.com"));
        assert!(host_allowed(&patterns, "pay.example.com"));
        assert!(!host_allowed(&patterns, "payments.example.com"));
        assert!(!host_allowed(&patterns, "a.b.payments.example.com"));
        assert!(!host_allowed(&patterns, "evilpayments.example.com"));
        assert!(!host_allowed(&patterns, "login.example.com"));
        assert!(!host_allowed(&[], "pay.example.com"));
    }

    #[test]
    fn patterns_are_host_names_with_an_optional_leading_wildcard() {
        assert!(check_host_pattern("*.payments.example.com").is_ok());
        assert!(check_host_pattern("pay.example.com").is_ok());
        assert!(check_host_pattern("*").is_err());
        assert!(check_host_pattern("a.*.example.com").is_err());
        assert!(check_host_pattern("Pay.example.com").is_err());
    }
}
