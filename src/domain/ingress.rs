//! The optional Ingress in front of a backend.

use std::collections::BTreeMap;

use crate::resource;

use super::metadata::check_annotations;
use super::port::resolve_declared_port;
use super::{DnsSubdomain, Errors, Invalid, Pointer, PortName, ServicePort};

const MAX_RULES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    pub class_name: Option<DnsSubdomain>,
    pub annotations: BTreeMap<String, String>,
    pub rules: Vec<IngressRule>,
    pub tls: Vec<IngressTls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    /// A host name, possibly with a leading `*.` wildcard; every host when absent.
    pub host: Option<String>,
    pub paths: Vec<IngressPath>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressPath {
    pub path: String,
    pub path_type: resource::PathType,
    /// Always a declared port, referenced by name in the Ingress backend.
    pub port: PortName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressTls {
    pub hosts: Vec<String>,
    pub secret_name: Option<DnsSubdomain>,
}

impl Ingress {
    pub(super) fn parse(
        ingress: &resource::Ingress,
        ports: &[ServicePort],
        at: &Pointer,
        errors: &mut Errors,
    ) -> Option<Self> {
        let class_name = match &ingress.class_name {
            Some(class) => errors
                .check(&at.field("className"), DnsSubdomain::parse(class))
                .map(Some),
            None => Some(None),
        };
        check_annotations(&ingress.annotations, &at.field("annotations"), errors);

        let rules_at = at.field("rules");
        if ingress.rules.is_empty() {
            errors.add(&rules_at, Invalid::Empty);
        } else if ingress.rules.len() > MAX_RULES {
            errors.add(&rules_at, Invalid::TooMany { max: MAX_RULES });
        }
        let rules: Vec<_> = ingress
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(rule, ports, &rules_at.index(i), errors))
            .collect();

        let tls_at = at.field("tls");
        let tls: Vec<_> = ingress
            .tls
            .iter()
            .enumerate()
            .map(|(i, tls)| {
                let at = tls_at.index(i);
                let hosts: Option<Vec<_>> = tls
                    .hosts
                    .iter()
                    .enumerate()
                    .map(|(j, host)| {
                        errors.check(&at.field("hosts").index(j), check_ingress_host(host))
                    })
                    .collect();
                let secret_name = match &tls.secret_name {
                    Some(name) => errors
                        .check(&at.field("secretName"), DnsSubdomain::parse(name))
                        .map(Some),
                    None => Some(None),
                };
                Some(IngressTls {
                    hosts: hosts?,
                    secret_name: secret_name?,
                })
            })
            .collect();

        Some(Self {
            class_name: class_name?,
            annotations: ingress.annotations.clone(),
            rules: rules.into_iter().collect::<Option<_>>()?,
            tls: tls.into_iter().collect::<Option<_>>()?,
        })
    }
}

fn parse_rule(
    rule: &resource::IngressRule,
    ports: &[ServicePort],
    at: &Pointer,
    errors: &mut Errors,
) -> Option<IngressRule> {
    let host = match &rule.host {
        Some(host) => errors
            .check(&at.field("host"), check_ingress_host(host))
            .map(Some),
        None => Some(None),
    };
    let paths_at = at.field("paths");
    if rule.paths.is_empty() {
        errors.add(&paths_at, Invalid::Empty);
    }
    let paths: Vec<_> = rule
        .paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let at = paths_at.index(i);
            let port = errors.check(&at.field("port"), resolve_declared_port(&path.port, ports));
            let valid_path = errors.check(&at.field("path"), check_ingress_path(&path.path));
            Some(IngressPath {
                path: valid_path?,
                path_type: path.path_type,
                port: port?.name.clone(),
            })
        })
        .collect();
    Some(IngressRule {
        host: host?,
        paths: paths.into_iter().collect::<Option<_>>()?,
    })
}

/// A DNS name with an optional leading `*.` wildcard label; IP addresses are not hosts.
fn check_ingress_host(host: &str) -> Result<String, Invalid> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if numeric_tld || DnsSubdomain::parse(name).is_err() {
        return Err(Invalid::Format(
            "a DNS name, optionally starting with '*.'; not an IP address",
        ));
    }
    Ok(host.to_owned())
}

fn check_ingress_path(path: &str) -> Result<String, Invalid> {
    if !path.starts_with('/') || !path.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Invalid::Format(
            "an absolute path starting with '/', without spaces",
        ));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_hosts_allow_one_leading_wildcard() {
        assert!(check_ingress_host("*.example.com").is_ok());
        assert!(check_ingress_host("example.com").is_ok());
        for bad in [
            "",
            "*",
            "a.*.com",
            "10.0.0.1",
            "Example.com",
            "*.*.example.com",
        ] {
            assert!(check_ingress_host(bad).is_err(), "{bad:?}");
        }
    }
}
