//! Server-side apply of children, skipped when the live object already says the same:
//! an unchanged world causes zero writes.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::k8s::CONTROLLER_MANAGER;

/// Annotation holding the digest of what we last applied. A changed spec changes the
/// digest, which also covers fields we stopped setting (server-side apply removes them).
pub const APPLIED_ANNOTATION: &str = "extsvc.dev/applied";

/// FNV-1a: a stable digest (unlike `std`'s hasher, it never changes between releases).
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Puts the digest of `object`'s content into its annotations.
pub fn stamp<K: Resource + Serialize>(mut object: K) -> Result<K, serde_json::Error> {
    let digest = format!("{:016x}", digest(&serde_json::to_vec(&object)?));
    object
        .annotations_mut()
        .insert(APPLIED_ANNOTATION.to_owned(), digest);
    Ok(object)
}

/// A child kind, and the parts of it that are the controller's alone.
pub trait Child: Resource + Serialize {
    /// Whether `self` holds something there that no desired object ever does.
    fn has_foreign(&self) -> bool;
    /// Copies the controller's parts from `desired`, dropping whatever else is in them.
    fn take_owned(&mut self, desired: &Self);
}

impl Child for Service {
    fn has_foreign(&self) -> bool {
        // A selector makes the cluster's endpoint controllers write Endpoints too.
        self.spec
            .as_ref()
            .and_then(|spec| spec.selector.as_ref())
            .is_some_and(|selector| !selector.is_empty())
    }
    fn take_owned(&mut self, desired: &Self) {
        let want = desired.spec.clone().unwrap_or_default();
        let spec = self.spec.get_or_insert_default();
        spec.selector = want.selector;
        spec.ports = want.ports;
        spec.publish_not_ready_addresses = want.publish_not_ready_addresses;
    }
}

impl Child for EndpointSlice {
    fn has_foreign(&self) -> bool {
        false
    }
    fn take_owned(&mut self, desired: &Self) {
        self.endpoints = desired.endpoints.clone();
        self.ports = desired.ports.clone();
    }
}

impl Child for Endpoints {
    fn has_foreign(&self) -> bool {
        false
    }
    fn take_owned(&mut self, desired: &Self) {
        self.subsets = desired.subsets.clone();
    }
}

impl Child for Ingress {
    fn has_foreign(&self) -> bool {
        false
    }
    fn take_owned(&mut self, desired: &Self) {
        self.spec = desired.spec.clone();
    }
}

/// Whether `live` holds every field of the stamped `desired` with the same value. A
/// field someone changed or removed by hand makes it stale; fields others added do not,
/// except where [`Child::has_foreign`] says so.
pub fn is_current<K: Child>(desired: &K, live: &K) -> bool {
    if live.has_foreign() {
        return false;
    }
    if desired.annotations().get(APPLIED_ANNOTATION) != live.annotations().get(APPLIED_ANNOTATION) {
        return false;
    }
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(desired), Ok(live)) => contains(&live, &desired),
        _ => false,
    }
}

fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired.iter().all(|(key, want)| {
            want.is_null() || live.get(key).is_some_and(|have| contains(have, want))
        }),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len()
                && live
                    .iter()
                    .zip(desired)
                    .all(|(have, want)| contains(have, want))
        }
        (have, want) => have == want,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("could not encode {kind} {name}")]
    Encode {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not apply {kind} {name}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {name} exists and was not made by extsvc for this ExternalService; it is left alone (delete it, or register under another name)"
    )]
    Taken { kind: String, name: String },
    #[error("could not look up {kind} {name}")]
    Find {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not delete {kind} {name}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The kind of `K`, for errors: `Service`, `EndpointSlice`, ...
fn kind_of<K: Resource>() -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

/// Whether `object` is a child of the resource with uid `owner`: only those are ever
/// changed or deleted.
pub fn owned_by<K: Resource>(object: &K, owner: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|reference| reference.controller == Some(true) && reference.uid == owner)
}

/// Applies `desired`, a child of the resource with uid `owner`, when `cached` (the
/// watch's copy of that name) or, failing that, the object the API server has under its
/// name is ours or absent. Anything else there (made by hand, by another controller, or
/// left by a deleted resource of the same name) is never taken over.
pub async fn apply_owned<K>(
    api: &Api<K>,
    desired: K,
    cached: Option<&K>,
    owner: &str,
) -> Result<u32, ApplyError>
where
    K: Child + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let taken = || ApplyError::Taken {
        kind: kind_of::<K>(),
        name: name.clone(),
    };
    if let Some(cached) = cached {
        return if owned_by(cached, owner) {
            apply(api, desired, Some(cached)).await
        } else {
            Err(taken())
        };
    }
    // Not in the cache: new, or ours and not seen yet, or someone else's (the cache holds
    // only objects labelled as ours). A list by name is a consistent read, and RBAC
    // grants it where it grants no get.
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    let found = api
        .list(&by_name)
        .await
        .map_err(|source| ApplyError::Find {
            kind: kind_of::<K>(),
            name: name.clone(),
            source,
        })?;
    match found.items.first() {
        Some(live) if !owned_by(live, owner) => Err(taken()),
        live => apply(api, desired, live).await,
    }
}

/// Applies `desired` unless `live` is current. Returns how many writes it took: none,
/// one, or two when another field manager's additions survive server-side apply (which
/// never removes fields others own) and the object is replaced with ours put back.
pub async fn apply<K>(api: &Api<K>, desired: K, live: Option<&K>) -> Result<u32, ApplyError>
where
    K: Child + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let desired = stamp(desired).map_err(|source| ApplyError::Encode {
        kind: kind_of::<K>(),
        name: name.clone(),
        source,
    })?;
    if live.is_some_and(|live| is_current(&desired, live)) {
        return Ok(0);
    }
    // Force: the controller is the only writer of these fields, and takes them back from
    // anyone who edited them by hand.
    let params = PatchParams::apply(CONTROLLER_MANAGER).force();
    let mut applied = api
        .patch(&name, &params, &Patch::Apply(&desired))
        .await
        .map_err(|source| ApplyError::Apply {
            kind: kind_of::<K>(),
            name: name.clone(),
            source,
        })?;
    if is_current(&desired, &applied) {
        return Ok(1);
    }
    // The resourceVersion of the applied object makes this a compare-and-swap: a
    // concurrent change fails it, and the next reconcile starts over.
    applied.take_owned(&desired);
    applied.meta_mut().managed_fields = None;
    api.replace(&name, &PostParams::default(), &applied)
        .await
        .map_err(|source| ApplyError::Apply {
            kind: kind_of::<K>(),
            name,
            source,
        })?;
    Ok(2)
}

/// Deletes `name`; already gone is fine.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), ApplyError>
where
    K: Child + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Delete {
            kind: kind_of::<K>(),
            name: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_live_object_with_extra_fields_is_current() {
        let live = json!({"spec": {"ports": [{"port": 80, "targetPort": 80}], "clusterIP": "None", "ipFamilies": ["IPv4"]}});
        let desired = json!({"spec": {"ports": [{"port": 80}], "clusterIP": "None"}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn a_changed_or_missing_field_or_list_item_is_stale() {
        let desired = json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 80}]}}),
            &desired
        ));
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 80}, {"port": 82}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {}}), &desired));
    }

    #[test]
    fn a_service_with_a_selector_is_stale_and_taking_ours_back_keeps_server_fields() {
        let desired: Service = serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }))
        .unwrap();
        let mut live: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "resourceVersion": "7"},
            "spec": {"clusterIP": "None", "ipFamilies": ["IPv4"], "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432}, {"name": "extra", "port": 8080}]}
        }))
        .unwrap();
        assert!(!is_current(&desired, &live));

        live.take_owned(&desired);

        assert!(!live.has_foreign());
        assert!(is_current(&desired, &live));
        let spec = live.spec.unwrap();
        assert_eq!(spec.ports.unwrap().len(), 1);
        assert_eq!(spec.ip_families.unwrap(), ["IPv4"]);
        assert_eq!(live.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn the_digest_is_stable() {
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
