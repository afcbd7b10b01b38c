//! Settings from flags and environment variables; secrets never reach the logs.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

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
    /// has one more per worker of its own, and the leader's roles four.
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

impl Settings {
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

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    #[test]
    fn help_never_prints_the_database_url_from_the_environment() {
        let command = Settings::augment_args(Command::new("serve"));
        let url = command
            .get_arguments()
            .find(|arg| arg.get_id() == "database_url")
            .expect("a database_url argument");
        assert!(url.is_hide_env_values_set());
    }
}
