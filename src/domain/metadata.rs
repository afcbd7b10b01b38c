//! Identity and metadata of a registration.

use std::collections::BTreeMap;

use super::{DnsLabel, Errors, Invalid, LabelValue, Pointer, QualifiedName, ServiceName};

/// Where a registration lives: its namespace and name, both validated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: DnsLabel,
    pub name: ServiceName,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Kubernetes' limit on the total size of an object's annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Records an error for every label whose key or value Kubernetes would refuse.
pub fn check_labels(labels: &BTreeMap<String, String>, at: &Pointer, errors: &mut Errors) {
    for (key, value) in labels {
        let at = at.field(key);
        if let Err(error) = QualifiedName::parse(key) {
            errors.add(&at, error);
        } else {
            errors.check(&at, LabelValue::parse(value));
        }
    }
}

/// Records an error for every annotation key Kubernetes would refuse, and for
/// annotations larger than it accepts.
pub fn check_annotations(
    annotations: &BTreeMap<String, String>,
    at: &Pointer,
    errors: &mut Errors,
) {
    for key in annotations.keys() {
        errors.check(&at.field(key), QualifiedName::parse(key));
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX_BYTES {
        errors.add(at, Invalid::Rule("must be at most 256 KiB in total"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_label_keys_and_values_are_reported_at_their_key() {
        let labels = BTreeMap::from([
            ("good".to_owned(), "v".to_owned()),
            ("bad key".to_owned(), "v".to_owned()),
            ("team".to_owned(), "-bad".to_owned()),
        ]);
        let mut errors = Errors::default();
        check_labels(&labels, &Pointer::root().field("labels"), &mut errors);
        let list = errors.finish(Some(())).unwrap_err().0;
        let pointers: Vec<_> = list.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/labels/bad key", "/labels/team"]);
    }

    #[test]
    fn annotations_over_256_kib_are_refused() {
        let annotations = BTreeMap::from([("big".to_owned(), "x".repeat(256 * 1024))]);
        let mut errors = Errors::default();
        check_annotations(
            &annotations,
            &Pointer::root().field("annotations"),
            &mut errors,
        );
        assert!(!errors.is_empty());
    }
}
