//! Teams, the namespaces they own, and their API tokens.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// The most teams one installation holds.
pub const MAX_TEAMS: i64 = 1000;
/// The most tokens one team holds that are neither revoked nor expired.
pub const MAX_ACTIVE_TOKENS: i64 = 100;

/// A team as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTeam {
    pub name: String,
    pub namespaces: Vec<String>,
    pub max_services: Option<i32>,
    pub ingress_hosts: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub resource_version: i64,
}

/// What a create or replace of a team says.
#[derive(Debug, Clone)]
pub struct TeamSpec<'a> {
    pub name: &'a str,
    pub namespaces: &'a [String],
    pub max_services: Option<i32>,
    pub ingress_hosts: &'a [String],
    pub allowed_cidrs: &'a [String],
}

/// An API token as stored, without its secret.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub id: Uuid,
    pub team: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new token: the hash of its secret and what it grants.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub team: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub secret_hash: &'a [u8],
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a valid token grants, as of now.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub id: Uuid,
    pub team: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub namespaces: Vec<String>,
}

/// A team's namespaces and its cap on registrations, for the services' store.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    pub team: String,
    pub max_services: Option<i32>,
}

impl Store {
    /// Creates a team; fails when the name or one of the namespaces is taken.
    pub async fn create_team(&self, team: &TeamSpec<'_>) -> Result<StoredTeam, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::WriteTeam)?;
        let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM teams"#)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::WriteTeam)?;
        if count >= MAX_TEAMS {
            return Err(StoreError::TooManyTeams { limit: MAX_TEAMS });
        }
        let inserted = sqlx::query_scalar!(
            "INSERT INTO teams (name, max_services, ingress_hosts, allowed_cidrs)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING name",
            team.name,
            team.max_services,
            team.ingress_hosts,
            team.allowed_cidrs
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?;
        if inserted.is_none() {
            return Err(StoreError::AlreadyExists);
        }
        claim_namespaces(&mut tx, team.name, team.namespaces).await?;
        tx.commit().await.map_err(StoreError::WriteTeam)?;
        self.get_team(team.name).await
    }

    /// Creates or replaces a team; `true` when it was created.
    pub async fn put_team(&self, team: &TeamSpec<'_>) -> Result<(StoredTeam, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::WriteTeam)?;
        let updated = sqlx::query_scalar!(
            "UPDATE teams SET max_services = $2, ingress_hosts = $3, allowed_cidrs = $4,
                              resource_version = resource_version + 1
             WHERE name = $1 RETURNING name",
            team.name,
            team.max_services,
            team.ingress_hosts,
            team.allowed_cidrs
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?;
        if updated.is_none() {
            drop(tx);
            return self.create_team(team).await.map(|created| (created, true));
        }
        sqlx::query!(
            "DELETE FROM team_namespaces WHERE team = $1 AND NOT (namespace = ANY($2))",
            team.name,
            team.namespaces
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?;
        claim_namespaces(&mut tx, team.name, team.namespaces).await?;
        tx.commit().await.map_err(StoreError::WriteTeam)?;
        Ok((self.get_team(team.name).await?, false))
    }

    pub async fn get_team(&self, name: &str) -> Result<StoredTeam, StoreError> {
        sqlx::query_as!(
            StoredTeam,
            r#"SELECT t.name, t.max_services, t.ingress_hosts, t.allowed_cidrs, t.created_at,
                      t.resource_version,
                      ARRAY(SELECT n.namespace FROM team_namespaces n
                            WHERE n.team = t.name ORDER BY n.namespace) AS "namespaces!"
               FROM teams t WHERE t.name = $1"#,
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)?
        .ok_or(StoreError::NotFound)
    }

    /// Every namespace whose team has exceptions to the address policy, with them.
    pub async fn team_exceptions(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows = sqlx::query!(
            "SELECT n.namespace, t.allowed_cidrs FROM team_namespaces n
             JOIN teams t ON t.name = n.team WHERE cardinality(t.allowed_cidrs) > 0"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.namespace, row.allowed_cidrs))
            .collect())
    }

    /// The team that owns `namespace`, if one does.
    pub async fn team_of_namespace(
        &self,
        namespace: &str,
    ) -> Result<Option<StoredTeam>, StoreError> {
        sqlx::query_as!(
            StoredTeam,
            r#"SELECT t.name, t.max_services, t.ingress_hosts, t.allowed_cidrs, t.created_at,
                      t.resource_version,
                      ARRAY(SELECT n.namespace FROM team_namespaces n
                            WHERE n.team = t.name ORDER BY n.namespace) AS "namespaces!"
               FROM team_namespaces owned JOIN teams t ON t.name = owned.team
               WHERE owned.namespace = $1"#,
            namespace
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)
    }

    /// Every team, in name order (there are at most [`MAX_TEAMS`]).
    pub async fn list_teams(&self) -> Result<Vec<StoredTeam>, StoreError> {
        sqlx::query_as!(
            StoredTeam,
            r#"SELECT t.name, t.max_services, t.ingress_hosts, t.allowed_cidrs, t.created_at,
                      t.resource_version,
                      ARRAY(SELECT n.namespace FROM team_namespaces n
                            WHERE n.team = t.name ORDER BY n.namespace) AS "namespaces!"
               FROM teams t ORDER BY t.name"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)
    }

    /// Deletes a team with its tokens; its namespaces then belong to nobody.
    pub async fn delete_team(&self, name: &str) -> Result<StoredTeam, StoreError> {
        let team = self.get_team(name).await?;
        let deleted = sqlx::query!("DELETE FROM teams WHERE name = $1", name)
            .execute(&self.pool)
            .await
            .map_err(StoreError::WriteTeam)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(team)
    }

    /// The team that owns `namespace`, if any.
    pub(super) async fn owner_of(
        conn: &mut sqlx::PgConnection,
        namespace: &str,
    ) -> Result<Option<Owner>, StoreError> {
        sqlx::query_as!(
            Owner,
            "SELECT t.name AS team, t.max_services FROM team_namespaces n
             JOIN teams t ON t.name = n.team WHERE n.namespace = $1",
            namespace
        )
        .fetch_optional(conn)
        .await
        .map_err(StoreError::ReadTeam)
    }

    pub async fn create_token(&self, token: &NewToken<'_>) -> Result<StoredToken, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::WriteTeam)?;
        // Serializes token creation per team, so that the cap holds.
        sqlx::query!(
            "SELECT name FROM teams WHERE name = $1 FOR UPDATE",
            token.team
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?
        .ok_or(StoreError::NotFound)?;
        let active = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM api_tokens WHERE team = $1
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"#,
            token.team
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?;
        if active >= MAX_ACTIVE_TOKENS {
            return Err(StoreError::TooManyTokens {
                limit: MAX_ACTIVE_TOKENS,
            });
        }
        let created = sqlx::query_as!(
            StoredToken,
            "INSERT INTO api_tokens (id, team, name, role, secret_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, team, name, role, created_at, expires_at, last_used_at, revoked_at",
            Uuid::new_v4(),
            token.team,
            token.name,
            token.role,
            token.secret_hash,
            token.expires_at
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::WriteTeam)?;
        tx.commit().await.map_err(StoreError::WriteTeam)?;
        Ok(created)
    }

    /// A team's tokens, newest first, revoked and expired ones included.
    pub async fn list_tokens(&self, team: &str) -> Result<Vec<StoredToken>, StoreError> {
        sqlx::query_as!(
            StoredToken,
            "SELECT id, team, name, role, created_at, expires_at, last_used_at, revoked_at
             FROM api_tokens WHERE team = $1 ORDER BY created_at DESC, id",
            team
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)
    }

    /// Revokes a token of `team`; revoking it again changes nothing.
    pub async fn revoke_token(&self, team: &str, id: Uuid) -> Result<StoredToken, StoreError> {
        sqlx::query_as!(
            StoredToken,
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
             WHERE team = $1 AND id = $2
             RETURNING id, team, name, role, created_at, expires_at, last_used_at, revoked_at",
            team,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::WriteTeam)?
        .ok_or(StoreError::NotFound)
    }

    /// What the token with this hash grants, noting its use; `None` when no such token
    /// is valid now (unknown, revoked or expired).
    pub async fn use_token(&self, secret_hash: &[u8]) -> Result<Option<TokenGrant>, StoreError> {
        sqlx::query_as!(
            TokenGrant,
            r#"UPDATE api_tokens t SET last_used_at = now()
               WHERE secret_hash = $1 AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > now())
               RETURNING id, team, role, expires_at,
                         ARRAY(SELECT n.namespace FROM team_namespaces n
                               WHERE n.team = t.team ORDER BY n.namespace) AS "namespaces!""#,
            secret_hash
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadTeam)
    }
}

/// Gives `namespaces` to `team`, refusing one that another team owns.
async fn claim_namespaces(
    conn: &mut sqlx::PgConnection,
    team: &str,
    namespaces: &[String],
) -> Result<(), StoreError> {
    let taken = sqlx::query!(
        "SELECT namespace, team FROM team_namespaces
         WHERE namespace = ANY($1) AND team <> $2 ORDER BY namespace LIMIT 1",
        namespaces,
        team
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::WriteTeam)?;
    if let Some(taken) = taken {
        return Err(StoreError::NamespaceTaken {
            namespace: taken.namespace,
            team: taken.team,
        });
    }
    // A namespace another team claims meanwhile violates the key: refused the same way.
    sqlx::query!(
        "INSERT INTO team_namespaces (namespace, team)
         SELECT DISTINCT claimed, $2 FROM unnest($1::text[]) AS claimed
         WHERE NOT EXISTS (SELECT FROM team_namespaces WHERE namespace = claimed)",
        namespaces,
        team
    )
    .execute(&mut *conn)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::NamespaceTaken {
            namespace: namespaces.join(", "),
            team: "another team".to_owned(),
        },
        _ => StoreError::WriteTeam(error),
    })?;
    Ok(())
}
