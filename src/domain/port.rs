//! Ports a backend serves, and references to them from checks and Ingress paths.

use crate::resource;

use super::{Invalid, PortName};

/// A port number, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortNumber(u16);

impl PortNumber {
    pub fn parse(number: i64) -> Result<Self, Invalid> {
        u16::try_from(number)
            .ok()
            .filter(|n| *n != 0)
            .map(Self)
            .ok_or(Invalid::OutOfRange { min: 1, max: 65535 })
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for PortNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One declared port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: PortName,
    pub number: PortNumber,
    pub protocol: resource::Protocol,
    pub app_protocol: Option<String>,
}

/// The port a health check connects to: a declared port, or a number that need not be
/// declared (a backend often serves health on a port of its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckPort {
    Declared(PortName, PortNumber),
    Number(PortNumber),
}

impl CheckPort {
    pub fn number(&self) -> PortNumber {
        match self {
            Self::Declared(_, number) | Self::Number(number) => *number,
        }
    }
}

/// Resolves a reference from a check against the declared ports.
pub(super) fn resolve_check_port(
    reference: &resource::PortRef,
    ports: &[ServicePort],
) -> Result<CheckPort, Invalid> {
    match reference {
        resource::PortRef::Number(number) => PortNumber::parse(*number).map(CheckPort::Number),
        resource::PortRef::Name(name) => {
            let port = find_declared(name, ports)?;
            if port.protocol != resource::Protocol::Tcp {
                return Err(Invalid::Rule(
                    "must name a TCP port: checks connect over TCP",
                ));
            }
            Ok(CheckPort::Declared(port.name.clone(), port.number))
        }
    }
}

/// Resolves a reference from an Ingress path: a declared TCP port, by name or number.
pub(super) fn resolve_declared_port<'a>(
    reference: &resource::PortRef,
    ports: &'a [ServicePort],
) -> Result<&'a ServicePort, Invalid> {
    let port = match reference {
        resource::PortRef::Name(name) => find_declared(name, ports)?,
        resource::PortRef::Number(number) => {
            let number = PortNumber::parse(*number)?;
            ports
                .iter()
                .find(|p| p.number == number && p.protocol == resource::Protocol::Tcp)
                .ok_or_else(|| Invalid::UnknownPort(number.to_string()))?
        }
    };
    if port.protocol != resource::Protocol::Tcp {
        return Err(Invalid::Rule(
            "must name a TCP port: an Ingress carries HTTP",
        ));
    }
    Ok(port)
}

fn find_declared<'a>(name: &str, ports: &'a [ServicePort]) -> Result<&'a ServicePort, Invalid> {
    ports
        .iter()
        .find(|p| p.name.as_ref() == name)
        .ok_or_else(|| Invalid::UnknownPort(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_numbers_outside_1_to_65535_are_refused() {
        for bad in [0, -1, 65536, i64::MAX] {
            assert_eq!(
                PortNumber::parse(bad),
                Err(Invalid::OutOfRange { min: 1, max: 65535 })
            );
        }
        assert_eq!(PortNumber::parse(65535).map(PortNumber::get), Ok(65535));
    }
}
