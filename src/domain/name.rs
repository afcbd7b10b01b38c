//! Names with Kubernetes' syntax rules. Each type can only hold a valid value.

use std::fmt;

use super::Invalid;

macro_rules! string_newtype {
    ($name:ident) => {
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label rules without the length check: lowercase letters, digits and `-`,
/// starting and ending with a letter or digit.
fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

fn check_length(s: &str, max: usize) -> Result<(), Invalid> {
    if s.is_empty() {
        Err(Invalid::Empty)
    } else if s.len() > max {
        Err(Invalid::TooLong { max })
    } else {
        Ok(())
    }
}

/// A DNS-1123 label, e.g. a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsLabel(String);
string_newtype!(DnsLabel);

impl DnsLabel {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_length(s, 63)?;
        if !is_rfc1123_label(s) {
            return Err(Invalid::Format(
                "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// The name of a registration. It also names the Service, EndpointSlices, Endpoints and
/// Ingress made for it, and a Service name must be a DNS-1035 label: a DNS-1123 label
/// that starts with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);
string_newtype!(ServiceName);

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_length(s, 63)?;
        if !is_rfc1123_label(s) || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Invalid::Format(
                "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsSubdomain(String);
string_newtype!(DnsSubdomain);

impl DnsSubdomain {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_length(s, 253)?;
        if !s
            .split('.')
            .all(|label| label.len() <= 63 && is_rfc1123_label(label))
        {
            return Err(Invalid::Format(
                "a DNS-1123 subdomain: dot-separated labels of lowercase letters, digits and '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An IANA service name, as Kubernetes requires for port names: at most 15 lowercase
/// letters, digits and `-`, with at least one letter, no `-` at either end, no `--`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName(String);
string_newtype!(PortName);

impl PortName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_length(s, 15)?;
        let valid =
            is_rfc1123_label(s) && !s.contains("--") && s.chars().any(|c| c.is_ascii_lowercase());
        if !valid {
            return Err(Invalid::Format(
                "an IANA service name: lowercase letters, digits and '-', with a letter, no '-' at either end and no '--'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name at
/// most 63 letters, digits, `-`, `_` and `.`, starting and ending alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName(String);
string_newtype!(QualifiedName);

impl QualifiedName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        const FORMAT: Invalid = Invalid::Format(
            "a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
        let name = match s.split_once('/') {
            Some((prefix, name)) => {
                DnsSubdomain::parse(prefix).map_err(|_| FORMAT)?;
                name
            }
            None => s,
        };
        if !is_qualified_name_part(name) {
            return Err(FORMAT);
        }
        Ok(Self(s.to_owned()))
    }
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and
/// ending alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelValue(String);
string_newtype!(LabelValue);

impl LabelValue {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if !s.is_empty() && !is_qualified_name_part(s) {
            return Err(Invalid::Format(
                "a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label_refuses_bad_labels() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "Upper",
            "-lead",
            "trail-",
            "dot.ted",
            "under_score",
            long.as_str(),
        ] {
            assert!(DnsLabel::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "0ab", "a-b-c", &"a".repeat(63)] {
            assert!(DnsLabel::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn service_name_must_start_with_a_letter() {
        assert_eq!(
            ServiceName::parse("1db").map_err(|e| matches!(e, Invalid::Format(_))),
            Err(true)
        );
        assert!(ServiceName::parse("db-1").is_ok());
    }

    #[test]
    fn dns_subdomain_checks_every_label() {
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = ["a"; 128].join(".");
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "A.com",
            "a_b.com",
            &long_label,
            &too_long,
        ] {
            assert!(DnsSubdomain::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "db.example.com", "1.2.3.example"] {
            assert!(DnsSubdomain::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn port_name_follows_iana_service_names() {
        for bad in [
            "",
            "HTTP",
            "http--alt",
            "-http",
            "http-",
            "8080",
            "a-very-long-name",
        ] {
            assert!(PortName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["http", "h2c", "grpc-web", "x1", "a-very-long-nam"] {
            assert!(PortName::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn qualified_name_accepts_prefixes_and_refuses_bad_parts() {
        for good in ["app", "app.kubernetes.io/name", "Team_1", "a.b-c"] {
            assert!(QualifiedName::parse(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "/name",
            "Bad_/name",
            "-x",
            "x-",
            "a/b/c",
            "sp ace",
            long.as_str(),
        ] {
            assert!(QualifiedName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_value_may_be_empty_but_not_malformed() {
        assert!(LabelValue::parse("").is_ok());
        assert!(LabelValue::parse("v1.2_3-x").is_ok());
        for bad in ["-x", "x ", "a/b", &"v".repeat(64)] {
            assert!(LabelValue::parse(bad).is_err(), "{bad:?}");
        }
    }
}
