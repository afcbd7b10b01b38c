//! A document accepted for writing: metadata and spec both valid, and where it lives
//! agreeing with the request.

use std::collections::BTreeMap;

use crate::resource::{API_VERSION, ExternalServiceDocument, ExternalServiceSpec, KIND};

use super::metadata::{check_annotations, check_labels};
use super::{
    DnsLabel, Errors, Invalid, Pointer, ServiceKey, ServiceName, ServiceSpec, ValidationErrors,
};

/// A registration ready to be stored. Only [`Registration::parse`] makes one, so holding
/// one proves the document passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    key: ServiceKey,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: ExternalServiceSpec,
}

impl Registration {
    /// Parses `document` for the namespace of the request path and, for requests that
    /// name one, its name. Names in the document must match the path when present.
    pub fn parse(
        document: ExternalServiceDocument,
        namespace: &str,
        path_name: Option<&str>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Errors::default();
        let metadata_at = Pointer::root().field("metadata");

        if document.api_version != API_VERSION {
            errors.add(
                &Pointer::root().field("apiVersion"),
                Invalid::Format("\"extsvc.dev/v1alpha1\""),
            );
        }
        if document.kind != KIND {
            errors.add(
                &Pointer::root().field("kind"),
                Invalid::Format("\"ExternalService\""),
            );
        }

        let namespace_at = metadata_at.field("namespace");
        let namespace = match document.metadata.namespace.as_deref() {
            Some(given) if given != namespace => {
                errors.add(
                    &namespace_at,
                    Invalid::PathMismatch {
                        expected: namespace.to_owned(),
                    },
                );
                None
            }
            _ => errors.check(&namespace_at, DnsLabel::parse(namespace)),
        };

        let name_at = metadata_at.field("name");
        let name = match (document.metadata.name.as_deref(), path_name) {
            (Some(given), Some(expected)) if given != expected => {
                errors.add(
                    &name_at,
                    Invalid::PathMismatch {
                        expected: expected.to_owned(),
                    },
                );
                None
            }
            (Some(name), _) | (None, Some(name)) => {
                errors.check(&name_at, ServiceName::parse(name))
            }
            (None, None) => {
                errors.add(&name_at, Invalid::Required);
                None
            }
        };

        check_labels(
            &document.metadata.labels,
            &metadata_at.field("labels"),
            &mut errors,
        );
        check_annotations(
            &document.metadata.annotations,
            &metadata_at.field("annotations"),
            &mut errors,
        );
        let spec =
            ServiceSpec::parse_at(&document.spec, &Pointer::root().field("spec"), &mut errors);

        let registration = match (namespace, name, spec) {
            (Some(namespace), Some(name), Some(_)) => Some(Self {
                key: ServiceKey { namespace, name },
                labels: document.metadata.labels,
                annotations: document.metadata.annotations,
                spec: document.spec,
            }),
            _ => None,
        };
        errors.finish(registration)
    }

    pub fn key(&self) -> &ServiceKey {
        &self.key
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The spec as written, defaults filled in.
    pub fn spec(&self) -> &ExternalServiceSpec {
        &self.spec
    }
}
