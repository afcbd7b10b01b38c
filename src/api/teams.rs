//! `/api/v1/teams`: teams and the namespaces they own (the platform admin's), and each
//! team's API tokens (its admins').

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, Role, token};
use crate::domain::{
    DnsLabel, FieldError, MAX_HOST_PATTERNS, ValidationErrors, check_host_pattern, cidrs,
};
use crate::store::{NewToken, Store, StoreError, StoredTeam, StoredToken, TeamSpec};

use super::body::read_body;
use super::caller::Authenticated;
use super::{ApiError, Problem};

/// The most namespaces one team owns.
const MAX_NAMESPACES: usize = 50;
/// The most exceptions to the address policy one team has.
const MAX_ALLOWED_CIDRS: usize = 50;
const MAX_SERVICES: i32 = 1_000_000;
/// Tokens live 90 days unless asked otherwise, and a year at most.
const DEFAULT_TOKEN_SECONDS: i64 = 90 * 24 * 3600;
const MAX_TOKEN_SECONDS: i64 = 365 * 24 * 3600;
const MIN_TOKEN_SECONDS: i64 = 60;

/// Namespaces no team may own, so that only the platform admin writes there: `kube-*`
/// and the operator's own.
pub struct Reserved {
    pub operator_namespace: String,
}

impl Reserved {
    fn reason(&self, namespace: &str) -> Option<String> {
        if namespace.starts_with("kube-") {
            Some(
                "kube-* namespaces are the cluster's; only the platform admin writes there"
                    .to_owned(),
            )
        } else if namespace == self.operator_namespace {
            Some("the operator's own namespace; only the platform admin writes there".to_owned())
        } else {
            None
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/teams")
            .route(web::get().to(list_teams))
            .route(web::post().to(create_team))
            .default_service(super::method_not_allowed("GET, POST")),
    )
    .service(
        web::resource("/api/v1/teams/{team}")
            .route(web::get().to(get_team))
            .route(web::put().to(put_team))
            .route(web::delete().to(delete_team))
            .default_service(super::method_not_allowed("GET, PUT, DELETE")),
    )
    .service(
        web::resource("/api/v1/teams/{team}/tokens")
            .route(web::get().to(list_tokens))
            .route(web::post().to(create_token))
            .default_service(super::method_not_allowed("GET, POST")),
    )
    .service(
        web::resource("/api/v1/teams/{team}/tokens/{id}")
            .route(web::delete().to(revoke_token))
            .default_service(super::method_not_allowed("DELETE")),
    );
}

/// A team: the namespaces it owns, its cap on registrations, the Ingress hosts it may
/// claim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamDocument {
    /// A DNS label; on `PUT` it may be left out, and must otherwise equal the path's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 63,
        example = "payments"
    )]
    pub name: Option<String>,
    /// Namespaces the team owns (50 at most); each belongs to one team at most, and no
    /// team owns `kube-*` or the operator's own.
    #[schema(max_items = 50, example = json!(["payments", "payments-staging"]))]
    pub namespaces: Vec<String>,
    /// The most registrations the team may hold in all its namespaces (default: the
    /// server's `--max-services-per-team`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_services: Option<i32>,
    /// Host patterns its Ingress rules may claim: a host name, or `*.` and a host name
    /// (one label in its place). None: no Ingress with a host.
    #[serde(default)]
    #[schema(max_items = 50, example = json!(["*.payments.example.com"]))]
    pub ingress_hosts: Vec<String>,
    /// Exceptions to the address policy for this team's namespaces: CIDR ranges its
    /// backends may use although the installation denies them (50 at most).
    #[serde(default)]
    #[schema(max_items = 50, example = json!(["10.20.0.0/16"]))]
    pub allowed_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub resource_version: Option<String>,
}

impl From<StoredTeam> for TeamDocument {
    fn from(team: StoredTeam) -> Self {
        Self {
            name: Some(team.name),
            namespaces: team.namespaces,
            max_services: team.max_services,
            ingress_hosts: team.ingress_hosts,
            allowed_cidrs: team.allowed_cidrs,
            created_at: Some(team.created_at),
            resource_version: Some(team.resource_version.to_string()),
        }
    }
}

/// The teams the caller may see.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamList {
    pub items: Vec<TeamDocument>,
}

impl TeamDocument {
    /// Every field that is not valid, or names a namespace no team may own.
    fn check(&self, reserved: &Reserved) -> Result<String, ApiError> {
        let mut errors = Vec::new();
        let mut refuse =
            |pointer: String, detail: String| errors.push(FieldError { pointer, detail });
        let name = self.name.clone().unwrap_or_default();
        if let Err(e) = DnsLabel::parse(&name) {
            refuse("/name".to_owned(), e.to_string());
        }
        if self.namespaces.len() > MAX_NAMESPACES {
            refuse(
                "/namespaces".to_owned(),
                format!("at most {MAX_NAMESPACES}"),
            );
        }
        for (i, namespace) in self.namespaces.iter().enumerate() {
            let problem = DnsLabel::parse(namespace)
                .err()
                .map(|e| e.to_string())
                .or_else(|| reserved.reason(namespace));
            if let Some(detail) = problem {
                refuse(format!("/namespaces/{i}"), detail);
            }
        }
        if self
            .max_services
            .is_some_and(|m| !(0..=MAX_SERVICES).contains(&m))
        {
            refuse(
                "/maxServices".to_owned(),
                format!("must be between 0 and {MAX_SERVICES}"),
            );
        }
        if self.ingress_hosts.len() > MAX_HOST_PATTERNS {
            refuse(
                "/ingressHosts".to_owned(),
                format!("at most {MAX_HOST_PATTERNS}"),
            );
        }
        for (i, pattern) in self.ingress_hosts.iter().enumerate() {
            if let Err(detail) = check_host_pattern(pattern) {
                refuse(format!("/ingressHosts/{i}"), detail);
            }
        }
        if self.allowed_cidrs.len() > MAX_ALLOWED_CIDRS {
            refuse(
                "/allowedCidrs".to_owned(),
                format!("at most {MAX_ALLOWED_CIDRS}"),
            );
        }
        for (i, range) in self.allowed_cidrs.iter().enumerate() {
            if range.contains(',') || cidrs(range).map_or(true, |ranges| ranges.len() != 1) {
                refuse(
                    format!("/allowedCidrs/{i}"),
                    "must be one CIDR range, like 10.20.0.0/16".to_owned(),
                );
            }
        }
        if errors.is_empty() {
            Ok(name)
        } else {
            Err(ApiError::Invalid(ValidationErrors(errors)))
        }
    }

    fn spec<'a>(&'a self, name: &'a str) -> TeamSpec<'a> {
        TeamSpec {
            name,
            namespaces: &self.namespaces,
            max_services: self.max_services,
            ingress_hosts: &self.ingress_hosts,
            allowed_cidrs: &self.allowed_cidrs,
        }
    }
}

/// `{team}` of the path, with the caller; a name no team can have is not found.
pub struct TeamPath {
    caller: Caller,
    team: String,
}

impl FromRequest for TeamPath {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Authenticated::from_request(request, payload);
        let team = request
            .match_info()
            .get("team")
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let caller = caller.await?.0;
            if DnsLabel::parse(&team).is_err() {
                return Err(no_team(&team));
            }
            Ok(Self { caller, team })
        })
    }
}

fn no_team(team: &str) -> ApiError {
    ApiError::NoSuch(format!("team {team}"))
}

fn team_error(error: StoreError, team: &str) -> ApiError {
    match error {
        StoreError::NotFound => no_team(team),
        StoreError::AlreadyExists => ApiError::Conflict(format!("team {team} already exists")),
        StoreError::NamespaceTaken { namespace, team } => {
            ApiError::Conflict(format!("namespace {namespace} belongs to team {team}"))
        }
        error @ (StoreError::TooManyTeams { .. } | StoreError::TooManyTokens { .. }) => {
            ApiError::QuotaExceeded(error.to_string())
        }
        other => ApiError::Store(other),
    }
}

fn forbidden(refusal: crate::auth::Refusal, team: &str) -> ApiError {
    match refusal {
        crate::auth::Refusal::Hidden => no_team(team),
        crate::auth::Refusal::Forbidden(reason) => ApiError::Forbidden(reason),
    }
}

/// Create a team (platform admin)
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    request_body(content = TeamDocument, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = TeamDocument, headers(("Location" = String))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name, or a namespace, is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid team", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_team(
    request: HttpRequest,
    caller: Authenticated,
    payload: web::Payload,
    store: web::Data<Store>,
    reserved: web::Data<Reserved>,
) -> Result<HttpResponse, ApiError> {
    caller.0.may_manage_teams().map_err(|r| forbidden(r, ""))?;
    let team: TeamDocument = read_body(&request, payload).await?;
    let name = team.check(&reserved)?;
    let created = store
        .create_team(&team.spec(&name))
        .await
        .map_err(|e| team_error(e, &name))?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/teams/{name}")))
        .json(TeamDocument::from(created)))
}

/// List teams
///
/// The platform admin sees every team; a member sees its own.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    responses((status = 200, description = "Teams in name order", body = TeamList))
)]
pub async fn list_teams(
    caller: Authenticated,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let teams = store.list_teams().await.map_err(ApiError::Store)?;
    let items = teams
        .into_iter()
        .filter(|team| caller.0.may_see_team(&team.name))
        .map(TeamDocument::from)
        .collect();
    Ok(HttpResponse::Ok().json(TeamList { items }))
}

/// Read a team
#[utoipa::path(
    get,
    path = "/api/v1/teams/{team}",
    tag = "teams",
    params(("team" = String, Path, description = "Name of the team")),
    responses(
        (status = 200, description = "The team", body = TeamDocument),
        (status = 404, description = "No such team, or not the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_team(path: TeamPath, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    if !path.caller.may_see_team(&path.team) {
        return Err(no_team(&path.team));
    }
    let team = store
        .get_team(&path.team)
        .await
        .map_err(|e| team_error(e, &path.team))?;
    Ok(HttpResponse::Ok().json(TeamDocument::from(team)))
}

/// Create or replace a team (platform admin)
///
/// Namespaces left out are given up (they then belong to no team); tokens stay.
#[utoipa::path(
    put,
    path = "/api/v1/teams/{team}",
    tag = "teams",
    params(("team" = String, Path, description = "Name of the team")),
    request_body(content = TeamDocument, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = TeamDocument),
        (status = 201, description = "Created", body = TeamDocument, headers(("Location" = String))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A namespace belongs to another team", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid team", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_team(
    request: HttpRequest,
    path: TeamPath,
    payload: web::Payload,
    store: web::Data<Store>,
    reserved: web::Data<Reserved>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_manage_teams()
        .map_err(|r| forbidden(r, &path.team))?;
    let mut team: TeamDocument = read_body(&request, payload).await?;
    if team.name.as_ref().is_some_and(|name| *name != path.team) {
        return Err(ApiError::Invalid(ValidationErrors(vec![FieldError {
            pointer: "/name".to_owned(),
            detail: format!("must be {}, the name in the path", path.team),
        }])));
    }
    team.name = Some(path.team.clone());
    let name = team.check(&reserved)?;
    let (stored, created) = store
        .put_team(&team.spec(&name))
        .await
        .map_err(|e| team_error(e, &name))?;
    let mut response = if created {
        let mut response = HttpResponse::Created();
        response.insert_header((header::LOCATION, format!("/api/v1/teams/{name}")));
        response
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(TeamDocument::from(stored)))
}

/// Delete a team (platform admin)
///
/// Its tokens go with it; its namespaces then belong to no team, and their
/// registrations stay.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}",
    tag = "teams",
    params(("team" = String, Path, description = "Name of the team")),
    responses(
        (status = 200, description = "Deleted; the team as it was", body = TeamDocument),
        (status = 404, description = "No such team", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_team(
    path: TeamPath,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_manage_teams()
        .map_err(|r| forbidden(r, &path.team))?;
    let team = store
        .delete_team(&path.team)
        .await
        .map_err(|e| team_error(e, &path.team))?;
    Ok(HttpResponse::Ok().json(TeamDocument::from(team)))
}

/// What a new token is for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for (`ci`, a person's name), 1-63 characters.
    #[schema(min_length = 1, max_length = 63, example = "ci")]
    pub name: String,
    /// `read` (viewer), `write` (editor), `admin` (the team's tokens too); the highest
    /// one counts.
    #[schema(min_items = 1, example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    /// Lifetime, 60 s to a year (default 90 days).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 31536000, example = 86400)]
    pub expires_in_seconds: Option<i64>,
}

/// A token, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenDocument {
    pub id: Uuid,
    pub team: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: in the answer to the request that made the token, and never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<StoredToken> for TokenDocument {
    fn from(token: StoredToken) -> Self {
        let role = Role::parse(&token.role).unwrap_or(Role::Viewer);
        Self {
            id: token.id,
            team: token.team,
            name: token.name,
            role,
            scopes: role.scopes().iter().map(|s| (*s).to_owned()).collect(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
            token: None,
        }
    }
}

/// A team's tokens, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenDocument>,
}

impl TokenRequest {
    fn check(&self) -> Result<(Role, i64), ApiError> {
        let mut errors = Vec::new();
        let printable = self.name.chars().all(|c| !c.is_control());
        if !(1..=63).contains(&self.name.chars().count()) || !printable {
            errors.push(FieldError {
                pointer: "/name".to_owned(),
                detail: "must be 1-63 printable characters".to_owned(),
            });
        }
        let mut role = None;
        for (i, scope) in self.scopes.iter().enumerate() {
            match Role::from_scope(scope) {
                Some(given) => role = role.max(Some(given)),
                None => errors.push(FieldError {
                    pointer: format!("/scopes/{i}"),
                    detail: "must be read, write or admin".to_owned(),
                }),
            }
        }
        if self.scopes.is_empty() {
            errors.push(FieldError {
                pointer: "/scopes".to_owned(),
                detail: "must name at least one of read, write, admin".to_owned(),
            });
        }
        let seconds = self.expires_in_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        if !(MIN_TOKEN_SECONDS..=MAX_TOKEN_SECONDS).contains(&seconds) {
            errors.push(FieldError {
                pointer: "/expiresInSeconds".to_owned(),
                detail: format!("must be between {MIN_TOKEN_SECONDS} and {MAX_TOKEN_SECONDS}"),
            });
        }
        match role {
            Some(role) if errors.is_empty() => Ok((role, seconds)),
            _ => Err(ApiError::Invalid(ValidationErrors(errors))),
        }
    }
}

/// Make a token for a team (its admins)
///
/// The answer holds the token's secret, shown this once; only a hash of it is kept.
#[utoipa::path(
    post,
    path = "/api/v1/teams/{team}/tokens",
    tag = "teams",
    params(("team" = String, Path, description = "Name of the team")),
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Made; `token` holds the secret", body = TokenDocument),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such team, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    request: HttpRequest,
    path: TeamPath,
    payload: web::Payload,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_manage_tokens(&path.team)
        .map_err(|r| forbidden(r, &path.team))?;
    let wanted: TokenRequest = read_body(&request, payload).await?;
    let (role, seconds) = wanted.check()?;
    let secret = token::generate()
        .map_err(|_| ApiError::Unavailable("no randomness for a token; try again".to_owned()))?;
    let stored = store
        .create_token(&NewToken {
            team: &path.team,
            name: &wanted.name,
            role: role.as_str(),
            secret_hash: &token::hash(&secret),
            expires_at: Some(Utc::now() + chrono::Duration::seconds(seconds)),
        })
        .await
        .map_err(|e| team_error(e, &path.team))?;
    let mut document = TokenDocument::from(stored);
    document.token = Some(secret);
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(document))
}

/// List a team's tokens (its admins)
#[utoipa::path(
    get,
    path = "/api/v1/teams/{team}/tokens",
    tag = "teams",
    params(("team" = String, Path, description = "Name of the team")),
    responses(
        (status = 200, description = "The tokens, without secrets, newest first", body = TokenList),
        (status = 404, description = "No such team, or not the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tokens(
    path: TeamPath,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_manage_tokens(&path.team)
        .map_err(|r| forbidden(r, &path.team))?;
    store
        .get_team(&path.team)
        .await
        .map_err(|e| team_error(e, &path.team))?;
    let tokens = store
        .list_tokens(&path.team)
        .await
        .map_err(ApiError::Store)?;
    Ok(HttpResponse::Ok().json(TokenList {
        items: tokens.into_iter().map(TokenDocument::from).collect(),
    }))
}

/// Revoke a token (its team's admins)
///
/// Every replica refuses it within a second.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}/tokens/{id}",
    tag = "teams",
    params(
        ("team" = String, Path, description = "Name of the team"),
        ("id" = Uuid, Path, description = "The token's id"),
    ),
    responses(
        (status = 200, description = "Revoked; the token as it now is", body = TokenDocument),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_token(
    path: TeamPath,
    store: web::Data<Store>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_manage_tokens(&path.team)
        .map_err(|r| forbidden(r, &path.team))?;
    let id = request.match_info().get("id").unwrap_or_default();
    let no_token = || ApiError::NoSuch(format!("token {id} of team {}", path.team));
    let id = Uuid::parse_str(id).map_err(|_| no_token())?;
    let revoked = store
        .revoke_token(&path.team, id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => no_token(),
            other => ApiError::Store(other),
        })?;
    Ok(HttpResponse::Ok().json(TokenDocument::from(revoked)))
}
