//! What the platform allows a registration, beyond what makes it valid: where its
//! backends may be ([`AddressPolicy`]) and what its Ingress may ask of a shared ingress
//! controller ([`IngressPolicy`]). The API refuses a document that breaks them; the
//! controller treats a resource made with kubectl that breaks them as invalid, so that
//! nobody can use the controller's rights to do what the policy forbids.

mod address;
mod hosts;
mod ingress;

use std::net::IpAddr;

use ipnet::IpNet;

pub use address::{AddressPolicy, cidrs};
pub use hosts::{MAX_HOST_PATTERNS, check_host_pattern, check_ingress_hosts};
pub use ingress::IngressPolicy;

use crate::resource::ExternalServiceSpec;

use super::{FieldError, ValidationErrors};

/// The platform's policies, as configured.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub addresses: AddressPolicy,
    pub ingress: IngressPolicy,
}

impl Policies {
    /// Every way `spec` breaks a policy, each under its field, with the exceptions made
    /// for its team. (DNS names are judged by what they resolve to, when they are
    /// resolved.)
    pub fn check(
        &self,
        spec: &ExternalServiceSpec,
        exceptions: &[IpNet],
    ) -> Result<(), ValidationErrors> {
        let addresses = spec
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, endpoint)| {
                let ip = endpoint.address.parse::<IpAddr>().ok()?;
                let detail = self.addresses.check_with(ip, exceptions).err()?;
                Some(FieldError {
                    pointer: format!("/spec/endpoints/{i}/address"),
                    detail,
                })
            });
        let mut refused: Vec<FieldError> = addresses.collect();
        if let Some(ingress) = &spec.ingress {
            refused.extend(self.ingress.check(ingress));
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(refused))
        }
    }
}
