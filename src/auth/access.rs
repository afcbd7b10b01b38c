//! Who a caller is and what it may do: a pure function of the caller and the target.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a member of a team may do there.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the team's services and their health.
    Viewer,
    /// Also registers, changes and deletes them.
    Editor,
    /// Also manages the team's tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The role a token's scopes give: `read` a viewer, `write` an editor, `admin` an
    /// admin; the highest wins.
    pub fn from_scope(scope: &str) -> Option<Self> {
        match scope {
            "read" => Some(Self::Viewer),
            "write" => Some(Self::Editor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The scopes that give this role, for showing a token.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::Viewer => &["read"],
            Self::Editor => &["read", "write"],
            Self::Admin => &["read", "write", "admin"],
        }
    }
}

/// Who made a request, as the audit log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    PlatformAdmin,
    Token(Uuid),
    Oidc { issuer: String, subject: String },
    ServiceAccount { namespace: String, name: String },
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlatformAdmin => f.write_str("platform-admin"),
            Self::Token(id) => write!(f, "token:{id}"),
            Self::Oidc { issuer, subject } => write!(f, "oidc:{issuer}#{subject}"),
            Self::ServiceAccount { namespace, name } => {
                write!(f, "system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

/// What a caller may act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Everything, teams included.
    Platform,
    /// One team's namespaces, as of when the caller was authenticated.
    Team {
        team: String,
        role: Role,
        namespaces: Arc<[String]>,
    },
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub grant: Grant,
}

/// Why a caller may not do something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Answered as if the thing did not exist: saying "forbidden" would tell that it does.
    Hidden,
    /// Answered 403, with the reason.
    Forbidden(String),
}

impl Caller {
    pub fn team(&self) -> Option<&str> {
        match &self.grant {
            Grant::Platform => None,
            Grant::Team { team, .. } => Some(team),
        }
    }

    pub fn is_platform_admin(&self) -> bool {
        self.grant == Grant::Platform
    }

    /// The namespaces the caller may read, or `None` for every namespace.
    pub fn namespaces(&self) -> Option<&[String]> {
        match &self.grant {
            Grant::Platform => None,
            Grant::Team { namespaces, .. } => Some(namespaces),
        }
    }

    pub fn may_read(&self, namespace: &str) -> bool {
        self.namespaces()
            .is_none_or(|own| own.iter().any(|n| n == namespace))
    }

    /// Listing a namespace: refused outright (a list says nothing about one service).
    pub fn may_list(&self, namespace: &str) -> Result<(), Refusal> {
        if self.may_read(namespace) {
            return Ok(());
        }
        Err(self.outside(namespace))
    }

    /// Reading one named thing in a namespace: hidden when the namespace is not the
    /// caller's.
    pub fn may_read_item(&self, namespace: &str) -> Result<(), Refusal> {
        if self.may_read(namespace) {
            Ok(())
        } else {
            Err(Refusal::Hidden)
        }
    }

    /// Registering, changing or deleting a service in a namespace.
    pub fn may_write(&self, namespace: &str) -> Result<(), Refusal> {
        match &self.grant {
            Grant::Platform => Ok(()),
            Grant::Team { .. } if !self.may_read(namespace) => Err(self.outside(namespace)),
            Grant::Team { role, .. } if *role < Role::Editor => Err(Refusal::Forbidden(format!(
                "a {} may read services but not change them",
                role.as_str()
            ))),
            Grant::Team { .. } => Ok(()),
        }
    }

    /// Seeing a team (its record).
    pub fn may_see_team(&self, team: &str) -> bool {
        self.team().is_none_or(|own| own == team)
    }

    /// Listing, making and revoking a team's tokens.
    pub fn may_manage_tokens(&self, team: &str) -> Result<(), Refusal> {
        match &self.grant {
            Grant::Platform => Ok(()),
            Grant::Team { team: own, .. } if own != team => Err(Refusal::Hidden),
            Grant::Team {
                role: Role::Admin, ..
            } => Ok(()),
            Grant::Team { role, .. } => Err(Refusal::Forbidden(format!(
                "a {} may not manage the team's tokens; an admin may",
                role.as_str()
            ))),
        }
    }

    /// Making, changing and deleting teams.
    pub fn may_manage_teams(&self) -> Result<(), Refusal> {
        if self.is_platform_admin() {
            return Ok(());
        }
        Err(Refusal::Forbidden(
            "only the platform admin manages teams".to_owned(),
        ))
    }

    /// Reading the audit log of a team, or of everyone (`None`).
    pub fn may_read_audit(&self, team: Option<&str>) -> Result<(), Refusal> {
        match (&self.grant, team) {
            (Grant::Platform, _) => Ok(()),
            (
                Grant::Team {
                    team: own,
                    role: Role::Admin,
                    ..
                },
                Some(team),
            ) if own == team => Ok(()),
            _ => Err(Refusal::Forbidden(
                "the audit log is for the platform admin, and for a team's admins about their team"
                    .to_owned(),
            )),
        }
    }

    fn outside(&self, namespace: &str) -> Refusal {
        Refusal::Forbidden(match self.team() {
            Some(team) => format!("namespace {namespace} does not belong to team {team}"),
            None => format!("namespace {namespace} is not the caller's"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role) -> Caller {
        Caller {
            actor: Actor::Token(Uuid::nil()),
            grant: Grant::Team {
                team: "payments".to_owned(),
                role,
                namespaces: vec!["payments".to_owned(), "payments-staging".to_owned()].into(),
            },
        }
    }

    fn admin() -> Caller {
        Caller {
            actor: Actor::PlatformAdmin,
            grant: Grant::Platform,
        }
    }

    #[test]
    fn members_read_their_namespaces_and_write_only_as_editors() {
        let viewer = member(Role::Viewer);
        assert!(viewer.may_read("payments-staging"));
        assert!(matches!(
            viewer.may_write("payments"),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(member(Role::Editor).may_write("payments"), Ok(()));
        assert_eq!(member(Role::Admin).may_write("payments"), Ok(()));
    }

    #[test]
    fn another_teams_namespace_is_hidden_for_items_and_forbidden_for_lists_and_writes() {
        let editor = member(Role::Admin);
        assert_eq!(editor.may_read_item("billing"), Err(Refusal::Hidden));
        assert!(matches!(
            editor.may_list("billing"),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            editor.may_write("kube-system"),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn the_platform_admin_may_do_everything() {
        let admin = admin();
        assert_eq!(admin.may_write("kube-system"), Ok(()));
        assert_eq!(admin.may_manage_teams(), Ok(()));
        assert_eq!(admin.may_manage_tokens("payments"), Ok(()));
        assert_eq!(admin.may_read_audit(None), Ok(()));
        assert_eq!(admin.namespaces(), None);
    }

    #[test]
    fn only_a_teams_admin_manages_its_tokens_and_reads_its_audit() {
        assert_eq!(member(Role::Admin).may_manage_tokens("payments"), Ok(()));
        assert!(matches!(
            member(Role::Editor).may_manage_tokens("payments"),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(
            member(Role::Admin).may_manage_tokens("billing"),
            Err(Refusal::Hidden)
        );
        assert_eq!(member(Role::Admin).may_read_audit(Some("payments")), Ok(()));
        assert!(member(Role::Admin).may_read_audit(None).is_err());
        assert!(
            member(Role::Editor)
                .may_read_audit(Some("payments"))
                .is_err()
        );
        assert!(member(Role::Admin).may_manage_teams().is_err());
    }

    #[test]
    fn scopes_map_to_the_highest_role() {
        let role = |scopes: &[&str]| scopes.iter().filter_map(|s| Role::from_scope(s)).max();
        assert_eq!(role(&["read"]), Some(Role::Viewer));
        assert_eq!(role(&["read", "write"]), Some(Role::Editor));
        assert_eq!(role(&["admin", "read"]), Some(Role::Admin));
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(role(r.scopes()), Some(r));
        }
    }
}
