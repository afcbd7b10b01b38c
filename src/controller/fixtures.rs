//! Test data for the builders.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::domain::ServiceSpec;
use crate::resource::ExternalServiceSpec;

use super::owner::Owner;

/// A valid spec from its JSON form.
pub fn spec(json: serde_json::Value) -> ServiceSpec {
    let wire: ExternalServiceSpec = serde_json::from_value(json).expect("a well-formed spec");
    ServiceSpec::parse(&wire).expect("a valid spec")
}

pub fn owner() -> Owner {
    Owner {
        namespace: "payments".to_owned(),
        name: "billing-db".to_owned(),
        reference: OwnerReference {
            api_version: "extsvc.dev/v1alpha1".to_owned(),
            kind: "ExternalService".to_owned(),
            name: "billing-db".to_owned(),
            uid: "6f1c2a4e-0000-4000-8000-000000000001".to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}
