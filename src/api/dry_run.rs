//! Dry runs: `?dryRun=true` on a create, replace or delete does everything the write does
//! (validation, authorization, caps, preconditions, the new generation) in a transaction
//! that is rolled back; `probe=true` also probes the document's addresses once.

use std::time::Duration;

use actix_web::HttpResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{Registration, ServiceSpec};
use crate::probe::{Dialer, probe_once};
use crate::resource::{ExternalServiceDocument, ServiceHealth};
use crate::store::{Commit, StoredService};

use super::ApiError;
use super::audit::Generations;
use super::services::respond;

/// How long the probes of a dry run may take together.
const PROBE_BUDGET: Duration = Duration::from_secs(15);
/// Dry runs probing at once, per replica, and how long one waits for its turn.
const PROBING_AT_ONCE: usize = 4;
const TURN_WAIT: Duration = Duration::from_secs(10);

/// How dry runs probe: the way to backends, and a few turns to share.
pub struct Probing {
    dialer: Dialer,
    turns: tokio::sync::Semaphore,
}

impl Probing {
    pub fn new(dialer: Dialer) -> Self {
        Self {
            dialer,
            turns: tokio::sync::Semaphore::new(PROBING_AT_ONCE),
        }
    }
}

/// `?dryRun=true` (and `probe=true` with it): do everything a write does but keep it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// `true`: validate, authorize and answer with the document as it would be stored
    /// (defaults filled in, the generation it would have, no `resourceVersion`), writing
    /// nothing. The audit log records the attempt as `dry-run`.
    #[serde(rename = "dryRun")]
    #[param(rename = "dryRun", value_type = Option<bool>)]
    dry_run: Option<String>,
    /// With `dryRun=true` on a create or replace: also run every check once on every
    /// address (the address policy applies; 15 s at most) and answer with the results.
    #[param(value_type = Option<bool>)]
    probe: Option<String>,
}

/// What a write was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    DryRun,
    DryRunAndProbe,
}

/// Marks a dry run's response, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct DryRun;

impl WriteParams {
    pub fn mode(&self, probes: bool) -> Result<Mode, ApiError> {
        // `All` is kubectl's spelling of true.
        let dry_run = match self.dry_run.as_deref() {
            Some("All") => true,
            other => super::flag("dryRun", other, false)?,
        };
        let probe = super::flag("probe", self.probe.as_deref(), false)?;
        match (dry_run, probe) {
            (false, false) => Ok(Mode::Write),
            (true, false) => Ok(Mode::DryRun),
            (true, true) if probes => Ok(Mode::DryRunAndProbe),
            (_, true) => Err(ApiError::BadParameter {
                parameter: "probe",
                detail: if probes {
                    "probe=true needs dryRun=true: a real write is probed by the probe engine"
                        .to_owned()
                } else {
                    "a delete has nothing to probe".to_owned()
                },
            }),
        }
    }

    pub fn commit(mode: Mode) -> Commit {
        match mode {
            Mode::Write => Commit::Yes,
            Mode::DryRun | Mode::DryRunAndProbe => Commit::DryRun,
        }
    }
}

/// The document of a dry run and what probing its addresses found.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DryRunResult {
    pub document: ExternalServiceDocument,
    /// One probe of every check on every address.
    pub probe: ServiceHealth,
}

/// The answer to a write, or to its dry run: no `resourceVersion` or ETag (none was
/// made), and with `probe`, the results of probing the document's addresses once.
pub async fn answer(
    response: actix_web::HttpResponseBuilder,
    service: StoredService,
    generations: Generations,
    (mode, registration): (Mode, &Registration),
    probing: &Probing,
) -> Result<HttpResponse, ApiError> {
    if mode == Mode::Write {
        return Ok(respond(response, service, generations));
    }
    let mut response = response;
    let mut document = service.into_document();
    document.metadata.resource_version = None;
    let mut answer = match mode {
        Mode::DryRunAndProbe => {
            let spec = ServiceSpec::parse(registration.spec()).map_err(ApiError::Invalid)?;
            let busy = || {
                ApiError::Unavailable(
                    "every turn to probe a dry run is taken; try again shortly".to_owned(),
                )
            };
            let _turn = tokio::time::timeout(TURN_WAIT, probing.turns.acquire())
                .await
                .map_err(|_| busy())?
                .map_err(|_| busy())?;
            let probe = probe_once(registration.key(), &spec, &probing.dialer, PROBE_BUDGET).await;
            response.json(DryRunResult { document, probe })
        }
        Mode::Write | Mode::DryRun => response.json(document),
    };
    answer.extensions_mut().insert(generations);
    answer.extensions_mut().insert(DryRun);
    Ok(answer)
}
