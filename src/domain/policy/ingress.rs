//! What a registration's Ingress may ask of an ingress controller that other teams share:
//! a class the platform allows, no annotation that injects proxy configuration or reaches
//! into other namespaces, and a host on every rule (a rule without one catches every
//! host, other teams' included) unless the platform allows catch-all rules.

use crate::resource;

use super::super::{FieldError, Pointer};

/// Annotation keys refused unless configured otherwise (`*` matches any run of
/// characters at either end). ingress-nginx's snippets are raw NGINX configuration; its
/// auth, mirror, TLS-secret and default-backend annotations point the controller at
/// URLs, Secrets or Services of the tenant's choosing; Traefik's middlewares may name
/// another namespace's.
const DENIED_ANNOTATIONS: &[&str] = &[
    "*-snippet",
    "*/auth-url",
    "*/auth-signin",
    "*/auth-proxy-set-headers",
    "*/auth-tls-secret",
    "*/proxy-ssl-secret",
    "*/mirror-target",
    "*/mirror-host",
    "*/default-backend",
    "traefik.ingress.kubernetes.io/router.middlewares",
];

/// The rules an Ingress must keep.
#[derive(Debug, Clone)]
pub struct IngressPolicy {
    /// `className`s allowed besides none (the cluster's default class).
    classes: Vec<String>,
    denied_annotations: Vec<String>,
    catch_all: bool,
}

impl Default for IngressPolicy {
    /// The default class only, the built-in annotation list, no catch-all rules.
    fn default() -> Self {
        Self {
            classes: Vec::new(),
            denied_annotations: DENIED_ANNOTATIONS.iter().map(|p| (*p).to_owned()).collect(),
            catch_all: false,
        }
    }
}

impl IngressPolicy {
    /// From comma-separated lists: the classes allowed, and the annotation patterns
    /// denied (replacing the built-in list; `none` denies none).
    pub fn new(classes: Option<&str>, denied_annotations: Option<&str>, catch_all: bool) -> Self {
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let defaults = Self::default();
        Self {
            classes: classes.map(list).unwrap_or_default(),
            denied_annotations: match denied_annotations.map(str::trim) {
                Some("none") => Vec::new(),
                Some(patterns) => list(patterns),
                None => defaults.denied_annotations,
            },
            catch_all,
        }
    }

    /// Every way `ingress` breaks the policy, under its field.
    pub fn check(&self, ingress: &resource::Ingress) -> Vec<FieldError> {
        let at = Pointer::root().field("spec").field("ingress");
        let mut refused = Vec::new();
        if let Some(class) = &ingress.class_name
            && !self.classes.contains(class)
        {
            let allowed = if self.classes.is_empty() {
                "none but the cluster's default (leave it out)".to_owned()
            } else {
                self.classes.join(", ")
            };
            refused.push(FieldError {
                pointer: at.field("className").as_str().to_owned(),
                detail: format!("ingress class {class} is not allowed here; allowed: {allowed}"),
            });
        }
        for key in ingress.annotations.keys() {
            if let Some(pattern) = self.denied_annotations.iter().find(|p| matches(p, key)) {
                refused.push(FieldError {
                    pointer: at.field("annotations").field(key).as_str().to_owned(),
                    detail: format!(
                        "annotations matching {pattern} are not allowed: they let one team configure the ingress controller for all"
                    ),
                });
            }
        }
        if !self.catch_all {
            for (i, rule) in ingress.rules.iter().enumerate() {
                if rule.host.is_none() {
                    refused.push(FieldError {
                        pointer: at.field("rules").index(i).field("host").as_str().to_owned(),
                        detail: "is required: a rule without a host catches every host, other teams' too".to_owned(),
                    });
                }
            }
        }
        refused
    }
}

/// Whether `key` matches `pattern`, whose `*` at either end matches any run.
fn matches(pattern: &str, key: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(suffix), _) if suffix.ends_with('*') => key.contains(suffix.trim_end_matches('*')),
        (Some(suffix), _) => key.ends_with(suffix),
        (None, Some(prefix)) => key.starts_with(prefix),
        (None, None) => key == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(value: serde_json::Value) -> resource::Ingress {
        serde_json::from_value(value).unwrap()
    }

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn snippets_auth_urls_classes_and_catch_all_rules_are_refused_by_default() {
        let refused = IngressPolicy::default().check(&ingress(json!({
            "className": "public",
            "annotations": {
                "nginx.ingress.kubernetes.io/configuration-snippet": "return 200;",
                "nginx.ingress.kubernetes.io/auth-url": "http://169.254.169.254/",
                "nginx.ingress.kubernetes.io/rewrite-target": "/",
                "example.com/team": "payments"
            },
            "rules": [
                {"host": "pay.example.com", "paths": [{"port": "https"}]},
                {"paths": [{"port": "https"}]}
            ]
        })));
        assert_eq!(
            pointers(&refused),
            [
                "/spec/ingress/className",
                "/spec/ingress/annotations/nginx.ingress.kubernetes.io~1auth-url",
                "/spec/ingress/annotations/nginx.ingress.kubernetes.io~1configuration-snippet",
                "/spec/ingress/rules/1/host",
            ]
        );
    }

    #[test]
    fn the_platform_can_allow_classes_annotations_and_catch_all_rules() {
        let policy = IngressPolicy::new(Some("public, internal"), Some("none"), true);
        let refused = policy.check(&ingress(json!({
            "className": "internal",
            "annotations": {"nginx.ingress.kubernetes.io/server-snippet": "x"},
            "rules": [{"paths": [{"port": "https"}]}]
        })));
        assert!(refused.is_empty(), "{refused:?}");
        let policy = IngressPolicy::new(None, Some("example.com/*, *secret*"), false);
        let refused = policy.check(&ingress(json!({
            "annotations": {"example.com/x": "1", "a/my-secret-ref": "2", "nginx.ingress.kubernetes.io/server-snippet": "3"},
            "rules": [{"host": "a.example.com", "paths": [{"port": "https"}]}]
        })));
        assert_eq!(
            pointers(&refused),
            [
                "/spec/ingress/annotations/a~1my-secret-ref",
                "/spec/ingress/annotations/example.com~1x"
            ]
        );
    }
}
