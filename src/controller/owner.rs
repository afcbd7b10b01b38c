//! The `ExternalService` a child belongs to, and the metadata every child carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::k8s::{MANAGED_BY, MANAGED_BY_LABEL};

/// What children need to know of their `ExternalService`.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub reference: OwnerReference,
}

impl Owner {
    /// Metadata of a child called `name`: in the owner's namespace, labelled as ours and
    /// owned by the `ExternalService` as its controller.
    pub fn child_meta(&self, name: &str, extra_labels: &[(&str, &str)]) -> ObjectMeta {
        let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())]);
        labels.extend(
            extra_labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}
