//! Settings from flags and environment variables; secrets never reach the logs.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{AddressPolicy, IngressPolicy, Policies};

/// What `extsvc serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address of the HTTP server; port 0 picks a free port.
    #[arg(long, env = "EXTSVC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PostgreSQL URL; migrations are applied at start. Without `sslmode` in the URL,
    /// `sslmode=require` (a TLS connection, or none).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,
    /// Database connections for the API, shared among its workers (default: two per
    /// worker; more only adds queueing inside PostgreSQL on a small machine). `/readyz`
    /// has one more per worker of its own, the background tasks one, and the leader's
    /// roles four.
    #[arg(long, env = "EXTSVC_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// The most registrations one namespace may hold; creating one more is refused
    /// with 403. Registrations made in the cluster (copied, read-only) count too.
    #[arg(
        long,
        env = "EXTSVC_MAX_SERVICES_PER_NAMESPACE",
        default_value_t = 5000
    )]
    pub max_services_per_namespace: u32,
    /// The platform admin's token, 32 characters at least: manages teams, and writes in
    /// any namespace. Without one (and no --admin-token-file) nobody manages teams.
    #[arg(long, env = "EXTSVC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// A file holding the platform admin's token (a mounted Secret).
    #[arg(long, env = "EXTSVC_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// A token that reads /metrics and nothing else (for Prometheus).
    #[arg(long, env = "EXTSVC_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Serve /metrics without a token.
    #[arg(long, env = "EXTSVC_OPEN_METRICS")]
    pub open_metrics: bool,
    /// YAML file of trusted OIDC issuers and service accounts, with the rules that map
    /// their identities to teams and roles (see the README).
    #[arg(long, env = "EXTSVC_AUTH_CONFIG")]
    pub auth_config: Option<PathBuf>,
    /// The most registrations a team holds in all its namespaces, unless its own
    /// `maxServices` says otherwise.
    #[arg(long, env = "EXTSVC_MAX_SERVICES_PER_TEAM", default_value_t = 1000)]
    pub max_services_per_team: u32,
    /// Requests a second one caller may make on average (bursts of twice that), per
    /// replica; more are answered 429.
    #[arg(long, env = "EXTSVC_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// Days the audit log keeps an entry.
    #[arg(long, env = "EXTSVC_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u32,
    /// How long events stay in the database: how far back a stream that reconnects with
    /// `Last-Event-ID` can catch up.
    #[arg(long, env = "EXTSVC_EVENT_RETENTION_MINUTES", default_value_t = 60)]
    pub event_retention_minutes: u32,
    /// Event streams and waits (`waitFor`) one replica holds open at once, at most.
    #[arg(long, env = "EXTSVC_MAX_WATCHES", default_value_t = 10_000)]
    pub max_watches: usize,
    /// Backend addresses denied besides the built-in ranges (loopback, link-local with the
    /// cloud metadata services, unspecified, multicast, broadcast): comma-separated CIDR
    /// ranges, or `none` to deny nothing at all (tests only).
    #[arg(long, env = "EXTSVC_DENIED_CIDRS")]
    pub denied_cidrs: Option<String>,
    /// Exceptions to every denied range, the built-in ones included.
    #[arg(long, env = "EXTSVC_ALLOWED_CIDRS")]
    pub allowed_cidrs: Option<String>,
    /// The cluster's own pod and Service ranges, denied so that no registration reaches
    /// into the cluster.
    #[arg(long, env = "EXTSVC_CLUSTER_CIDRS")]
    pub cluster_cidrs: Option<String>,
    /// Ingress classes a registration may name (comma-separated); an Ingress that names
    /// none gets the cluster's default class and is always allowed.
    #[arg(long, env = "EXTSVC_INGRESS_CLASSES")]
    pub ingress_classes: Option<String>,
    /// Ingress annotation keys refused (comma-separated, `*` at either end matches any
    /// run), replacing the built-in list (ingress-nginx's snippets, auth URLs and the
    /// like); `none` refuses none.
    #[arg(long, env = "EXTSVC_DENIED_INGRESS_ANNOTATIONS")]
    pub denied_ingress_annotations: Option<String>,
    /// Allow Ingress rules without a host, which catch every host on the controller.
    #[arg(long, env = "EXTSVC_ALLOW_CATCH_ALL_INGRESS")]
    pub allow_catch_all_ingress: bool,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "EXTSVC_WORKERS")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub kubernetes: KubernetesSettings,
}

/// How `serve` reaches Kubernetes. Without a cluster the API runs alone.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubernetesSettings {
    /// Serve the API only: no mirror, no controller.
    #[arg(long, env = "EXTSVC_NO_KUBERNETES")]
    pub no_kubernetes: bool,
    /// Kubeconfig to use; otherwise the usual places, or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Install or update the ExternalService CRD at start (needs the right to).
    #[arg(long, env = "EXTSVC_INSTALL_CRD")]
    pub install_crd: bool,
    /// Mirror and reconcile this namespace only (default: every namespace).
    #[arg(long, env = "EXTSVC_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Do not publish legacy v1 Endpoints beside the EndpointSlices.
    #[arg(long, env = "EXTSVC_NO_LEGACY_ENDPOINTS")]
    pub no_legacy_endpoints: bool,
    /// Namespace of the Lease that elects the one replica running the mirror and controller.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's name in the election (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// The shortest platform admin or metrics token accepted.
const MIN_TOKEN_CHARS: usize = 32;

impl Settings {
    /// The platform admin's token, from the flag, the environment or the file.
    pub fn admin_token(&self) -> Result<Option<SecretString>, String> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(token), _) => Some(token.expose_secret().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("could not read {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        token
            .map(|token| strong(token, "the admin token"))
            .transpose()
    }

    /// The metrics token, if one is set.
    pub fn metrics_token(&self) -> Result<Option<SecretString>, String> {
        self.metrics_token
            .as_ref()
            .map(|token| strong(token.expose_secret().to_owned(), "the metrics token"))
            .transpose()
    }

    /// The policies the flags describe.
    pub fn policies(&self) -> Result<Policies, String> {
        let mut addresses =
            AddressPolicy::parse(self.denied_cidrs.as_deref(), self.allowed_cidrs.as_deref())?;
        if let Some(cluster) = &self.cluster_cidrs {
            addresses.deny(cluster, "the cluster's own range")?;
        }
        let ingress = IngressPolicy::new(
            self.ingress_classes.as_deref(),
            self.denied_ingress_annotations.as_deref(),
            self.allow_catch_all_ingress,
        );
        Ok(Policies { addresses, ingress })
    }
}

fn strong(token: String, what: &str) -> Result<SecretString, String> {
    if token.chars().count() < MIN_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{what} must be at least {MIN_TOKEN_CHARS} visible ASCII characters (try: head -c 32 /dev/urandom | base64)"
        ));
    }
    Ok(SecretString::from(token))
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let command = Settings::augment_args(Command::new("serve"));
        for secret in ["database_url", "admin_token", "metrics_token"] {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == secret)
                .expect("the argument");
            assert!(arg.is_hide_env_values_set(), "{secret}");
        }
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(strong("short".to_owned(), "t").is_err());
        assert!(strong(format!("{} x", "a".repeat(40)), "t").is_err());
        assert!(strong("a".repeat(32), "t").is_ok());
    }
}
