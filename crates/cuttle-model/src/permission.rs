//! Who may do what, and where: Octopus's model. Users belong to teams; a
//! team holds user roles (named sets of permissions), each given through a
//! scoped user role that says in which space, and optionally for which
//! projects, project groups, environments and tenants, it applies.
//!
//! Everything here is a pure rule: the service reads the documents and asks
//! [`Permissions`] whether an action is allowed.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Where a permission is granted: installation-wide (users, spaces, roles)
/// or within a space (everything a space holds). Some are both: teams live
/// either in a space or installation-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    System,
    Space,
    Both,
}

macro_rules! permissions {
    ($($name:ident: $level:ident, $description:literal;)*) => {
        /// A permission, by Octopus's name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission {
            $($name,)*
        }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$name,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Permission::$name => stringify!($name),)*
                }
            }

            pub fn description(self) -> &'static str {
                match self {
                    $(Permission::$name => $description,)*
                }
            }

            pub fn level(self) -> Level {
                match self {
                    $(Permission::$name => Level::$level,)*
                }
            }
        }
    };
}

permissions! {
    AdministerSystem: System, "Perform system-level functions like configuring the server and managing every space";
    ConfigureServer: System, "Configure server settings, take backups and read server metrics";
    SpaceCreate: System, "Create spaces";
    SpaceView: System, "View spaces";
    SpaceEdit: System, "Edit spaces";
    SpaceDelete: System, "Delete spaces";
    UserView: System, "View users";
    UserEdit: System, "Create, edit and disable users, and manage their API keys";
    UserRoleView: System, "View user roles";
    UserRoleEdit: System, "Create and edit user roles";
    TeamView: Both, "View teams";
    TeamCreate: Both, "Create teams";
    TeamEdit: Both, "Edit teams and the roles they hold";
    TeamDelete: Both, "Delete teams";
    EventView: Both, "View the audit log";
    TaskView: Both, "View tasks and their logs";
    TaskCreate: Both, "Run system tasks such as health checks";
    TaskCancel: Both, "Cancel running tasks";
    ProjectView: Space, "View projects";
    ProjectCreate: Space, "Create projects";
    ProjectEdit: Space, "Edit projects and their channels";
    ProjectDelete: Space, "Delete projects";
    ProcessView: Space, "View deployment processes";
    ProcessEdit: Space, "Edit deployment processes";
    VariableView: Space, "View variables scoped to the environments the caller may see";
    VariableViewUnscoped: Space, "View variables without an environment scope";
    VariableEdit: Space, "Edit variables scoped to the environments the caller may edit";
    VariableEditUnscoped: Space, "Edit variables without an environment scope";
    LibraryVariableSetView: Space, "View library variable sets";
    LibraryVariableSetCreate: Space, "Create library variable sets";
    LibraryVariableSetEdit: Space, "Edit library variable sets";
    LibraryVariableSetDelete: Space, "Delete library variable sets";
    ProjectGroupView: Space, "View project groups";
    ProjectGroupCreate: Space, "Create project groups";
    ProjectGroupEdit: Space, "Edit project groups";
    ProjectGroupDelete: Space, "Delete project groups";
    LifecycleView: Space, "View lifecycles";
    LifecycleCreate: Space, "Create lifecycles";
    LifecycleEdit: Space, "Edit lifecycles";
    LifecycleDelete: Space, "Delete lifecycles";
    ReleaseView: Space, "View releases";
    ReleaseCreate: Space, "Create releases";
    ReleaseEdit: Space, "Edit releases";
    ReleaseDelete: Space, "Delete releases";
    DeploymentView: Space, "View deployments";
    DeploymentCreate: Space, "Deploy releases to environments";
    DeploymentDelete: Space, "Delete deployments";
    InterruptionView: Space, "View manual interventions and guided failures";
    InterruptionSubmit: Space, "Answer any interruption, responsible or not";
    InterruptionViewSubmitResponsible: Space, "Take responsibility for and answer interruptions";
    EnvironmentView: Space, "View environments";
    EnvironmentCreate: Space, "Create environments";
    EnvironmentEdit: Space, "Edit environments";
    EnvironmentDelete: Space, "Delete environments";
    MachineView: Space, "View deployment targets";
    MachineCreate: Space, "Register deployment targets";
    MachineEdit: Space, "Edit deployment targets";
    MachineDelete: Space, "Delete deployment targets";
    MachinePolicyView: Space, "View machine policies";
    MachinePolicyEdit: Space, "Create and edit machine policies";
    WorkerView: Space, "View workers and worker pools";
    WorkerEdit: Space, "Register and edit workers and worker pools";
    FeedView: Space, "View feeds and the packages in them";
    BuiltInFeedPush: Space, "Push packages to the built-in feed";
    BuiltInFeedDownload: Space, "Download packages from the built-in feed";
    BuiltInFeedAdminister: Space, "Delete packages from the built-in feed";
    BuildInformationPush: Space, "Push build information";
    BuildInformationAdminister: Space, "Delete build information";
    SubscriptionView: Space, "View subscriptions";
    SubscriptionEdit: Space, "Create, edit and delete subscriptions";
    TenantView: Space, "View tenants";
    TenantEdit: Space, "Create and edit tenants";
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Permission {
    type Err = ();
    /// By its exact name, as Octopus spells it.
    fn from_str(s: &str) -> Result<Self, ()> {
        Permission::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or(())
    }
}

impl Permission {
    pub fn is_system(self) -> bool {
        matches!(self.level(), Level::System | Level::Both)
    }
    pub fn is_space(self) -> bool {
        matches!(self.level(), Level::Space | Level::Both)
    }
}

/// A set of permissions under a name. The built-in ones have fixed ids.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct UserRole {
    pub id: String,
    pub name: String,
    pub description: String,
    pub supported_restrictions: Vec<String>,
    pub granted_space_permissions: Vec<String>,
    pub granted_system_permissions: Vec<String>,
    pub can_be_deleted: bool,
}

/// Users who hold roles together. A team with a `SpaceId` gives roles in
/// that space only; one without is installation-wide.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub description: String,
    pub space_id: Option<String>,
    pub member_user_ids: Vec<String>,
    pub external_security_groups: Vec<serde_json::Value>,
    pub can_be_deleted: bool,
    pub can_be_renamed: bool,
    pub can_change_roles: bool,
    pub can_change_members: bool,
    /// Bumped on every change; a write carrying an older one is refused,
    /// so two people editing one team cannot silently undo each other.
    pub version: i64,
}

/// A role given to a team, in a space (or installation-wide, without
/// one), narrowed to the listed projects, project groups, environments and
/// tenants; an empty list does not narrow.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScopedUserRole {
    pub id: String,
    pub team_id: String,
    pub user_role_id: String,
    pub space_id: Option<String>,
    pub project_ids: Vec<String>,
    pub project_group_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    pub tenant_ids: Vec<String>,
}

pub const EVERYONE_TEAM_ID: &str = "teams-everyone";
pub const ADMINISTRATORS_TEAM_ID: &str = "teams-administrators";
pub const SPACE_MANAGERS_TEAM_PREFIX: &str = "teams-spacemanagers-";
pub const SYSTEM_ADMINISTRATOR_ROLE_ID: &str = "userroles-systemadministrator";
pub const SPACE_MANAGER_ROLE_ID: &str = "userroles-spacemanager";

/// The installation-wide teams every installation has.
pub fn builtin_teams() -> Vec<Team> {
    vec![
        Team {
            id: EVERYONE_TEAM_ID.into(),
            name: "Everyone".into(),
            description: "Every user is a member of this team".into(),
            can_change_roles: true,
            ..Default::default()
        },
        Team {
            id: ADMINISTRATORS_TEAM_ID.into(),
            name: "Octopus Administrators".into(),
            description: "Members may do everything, in every space".into(),
            can_change_members: true,
            ..Default::default()
        },
    ]
}

/// The scoped role that makes the administrators team what it is.
pub fn administrators_grant() -> ScopedUserRole {
    ScopedUserRole {
        id: "scopeduserroles-administrators".into(),
        team_id: ADMINISTRATORS_TEAM_ID.into(),
        user_role_id: SYSTEM_ADMINISTRATOR_ROLE_ID.into(),
        ..Default::default()
    }
}

/// The roles every installation has, as Octopus users know them.
pub fn builtin_roles() -> Vec<UserRole> {
    use Permission::*;
    let view = [
        ProjectView,
        ProcessView,
        VariableView,
        VariableViewUnscoped,
        ReleaseView,
        DeploymentView,
        TaskView,
        EnvironmentView,
        LifecycleView,
        ProjectGroupView,
        LibraryVariableSetView,
        InterruptionView,
        FeedView,
        EventView,
        TenantView,
    ];
    let contribute = [ProjectEdit, ProcessEdit, VariableEdit, VariableEditUnscoped];
    let deploy = [
        ReleaseCreate,
        DeploymentCreate,
        TaskCancel,
        InterruptionViewSubmitResponsible,
        BuiltInFeedDownload,
    ];
    let lead = [
        ReleaseEdit,
        ReleaseDelete,
        DeploymentDelete,
        InterruptionSubmit,
    ];
    let system_manager: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| p.is_system() && !matches!(p, AdministerSystem | ConfigureServer))
        .collect();
    let every_space: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| p.is_space())
        .collect();
    let every_system: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| p.is_system())
        .collect();
    let project = [
        "ProjectIds",
        "ProjectGroupIds",
        "EnvironmentIds",
        "TenantIds",
    ];
    let environment = ["EnvironmentIds"];
    let role = |id: &str,
                name: &str,
                description: &str,
                restrictions: &[&str],
                space: &[&[Permission]],
                system: &[Permission]| UserRole {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        supported_restrictions: restrictions.iter().map(|s| (*s).to_owned()).collect(),
        granted_space_permissions: space
            .iter()
            .flat_map(|ps| ps.iter())
            .map(|p| p.name().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        granted_system_permissions: system.iter().map(|p| p.name().to_owned()).collect(),
        can_be_deleted: false,
    };
    vec![
        role(
            SYSTEM_ADMINISTRATOR_ROLE_ID,
            "System Administrator",
            "Everything, everywhere",
            &[],
            &[],
            &every_system,
        ),
        role(
            "userroles-systemmanager",
            "System Manager",
            "Users, teams, roles and spaces, but not the server's configuration",
            &[],
            &[],
            &system_manager,
        ),
        role(
            SPACE_MANAGER_ROLE_ID,
            "Space Manager",
            "Everything within a space",
            &[],
            &[&every_space],
            &[],
        ),
        role(
            "userroles-projectviewer",
            "Project Viewer",
            "Sees projects, their releases and deployments",
            &project,
            &[&view],
            &[],
        ),
        role(
            "userroles-projectcontributor",
            "Project Contributor",
            "Edits projects, their processes and variables, without deploying",
            &project,
            &[&view, &contribute],
            &[],
        ),
        role(
            "userroles-projectdeployer",
            "Project Deployer",
            "Edits projects, creates releases and deploys them",
            &project,
            &[&view, &contribute, &deploy],
            &[],
        ),
        role(
            "userroles-projectlead",
            "Project Lead",
            "Everything a deployer does, and deletes releases and deployments",
            &project,
            &[
                &view,
                &contribute,
                &deploy,
                &lead,
                &[ProjectCreate, ProjectDelete],
            ],
            &[],
        ),
        role(
            "userroles-releasecreator",
            "Release Creator",
            "Sees projects and creates releases",
            &project,
            &[&view, &[ReleaseCreate, BuiltInFeedDownload]],
            &[],
        ),
        role(
            "userroles-deploymentcreator",
            "Deployment Creator",
            "Sees projects and deploys their releases",
            &project,
            &[
                &view,
                &[DeploymentCreate, InterruptionViewSubmitResponsible],
            ],
            &[],
        ),
        role(
            "userroles-environmentviewer",
            "Environment Viewer",
            "Sees environments and the machines in them",
            &environment,
            &[&[EnvironmentView, MachineView, MachinePolicyView, WorkerView]],
            &[],
        ),
        role(
            "userroles-environmentmanager",
            "Environment Manager",
            "Manages environments, machines, workers and machine policies",
            &environment,
            &[&[
                EnvironmentView,
                EnvironmentCreate,
                EnvironmentEdit,
                EnvironmentDelete,
                MachineView,
                MachineCreate,
                MachineEdit,
                MachineDelete,
                MachinePolicyView,
                MachinePolicyEdit,
                WorkerView,
                WorkerEdit,
                TaskView,
                TaskCreate,
            ]],
            &[],
        ),
        role(
            "userroles-packagepublisher",
            "Package Publisher",
            "Pushes packages and build information to the built-in feed",
            &[],
            &[&[FeedView, BuiltInFeedPush, BuildInformationPush]],
            &[],
        ),
        role(
            "userroles-tenantmanager",
            "Tenant Manager",
            "Manages tenants",
            &["TenantIds"],
            &[&[TenantView, TenantEdit]],
            &[],
        ),
    ]
}

/// Why a role's permission names will not do: each unknown name, or one
/// given at a level it does not exist at.
pub fn role_problems(role: &UserRole) -> Vec<String> {
    let mut problems = vec![];
    for (names, system) in [
        (&role.granted_space_permissions, false),
        (&role.granted_system_permissions, true),
    ] {
        for name in names {
            match name.parse::<Permission>() {
                Err(()) => problems.push(format!("'{name}' is not a permission")),
                Ok(p) if system && !p.is_system() => problems.push(format!(
                    "'{name}' is a space permission, not a system permission"
                )),
                Ok(p) if !system && !p.is_space() => problems.push(format!(
                    "'{name}' is a system permission, not a space permission"
                )),
                Ok(_) => {}
            }
        }
    }
    problems
}

/// Where an action happens, as far as the check needs to know: each field
/// left `None` does not narrow the check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    pub space: Option<&'a str>,
    pub project: Option<&'a str>,
    pub project_group: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn system() -> Self {
        Scope::default()
    }
    pub fn space(space: &'a str) -> Self {
        Scope {
            space: Some(space),
            ..Default::default()
        }
    }
    pub fn project(mut self, project: &'a str) -> Self {
        self.project = Some(project);
        self
    }
    pub fn project_group(mut self, group: &'a str) -> Self {
        self.project_group = Some(group);
        self
    }
    pub fn environment(mut self, environment: &'a str) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Where a task happens: its space, project and environment, or the
    /// system for installation-wide work.
    pub fn of_task(task: &'a crate::ServerTask) -> Self {
        let Some(space) = task.space_id.as_deref() else {
            return Scope::system();
        };
        Scope {
            space: Some(space),
            project: task.project_id.as_deref(),
            environment: task.environment_id.as_deref(),
            ..Default::default()
        }
    }
}

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("space", self.space),
            ("project", self.project),
            ("project group", self.project_group),
            ("environment", self.environment),
            ("tenant", self.tenant),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
        .collect();
        if parts.is_empty() {
            f.write_str("the system")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One permission set given in one place (a scoped user role, resolved).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grant {
    pub role_id: String,
    pub team_id: String,
    /// `None`: installation-wide, carrying the role's system permissions.
    pub space_id: Option<String>,
    pub permissions: BTreeSet<Permission>,
    pub project_ids: Vec<String>,
    pub project_group_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    pub tenant_ids: Vec<String>,
}

fn narrows(list: &[String], value: Option<&str>) -> bool {
    match value {
        Some(v) => list.is_empty() || list.iter().any(|x| x == v),
        None => true,
    }
}

impl Grant {
    /// Whether this grant allows `p` at `scope`.
    pub fn allows(&self, p: Permission, scope: &Scope) -> bool {
        if !self.permissions.contains(&p) {
            return false;
        }
        match (&self.space_id, scope.space) {
            (None, None) => true,
            (Some(mine), Some(asked)) => {
                // A project named without its group cannot be shown to be
                // in the groups this grant is narrowed to.
                let group_unknown = scope.project.is_some()
                    && scope.project_group.is_none()
                    && !self.project_group_ids.is_empty();
                mine == asked
                    && !group_unknown
                    && narrows(&self.project_ids, scope.project)
                    && narrows(&self.project_group_ids, scope.project_group)
                    && narrows(&self.environment_ids, scope.environment)
                    && narrows(&self.tenant_ids, scope.tenant)
            }
            _ => false,
        }
    }
}

/// Everything one user may do: the grants of every team they are in.
/// Computed once per request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions {
    pub user_id: String,
    /// Holds `AdministerSystem`: may do everything, in every space.
    pub administrator: bool,
    pub grants: Vec<Grant>,
    /// The teams the user is in (Everyone included), whether or not they
    /// hold roles: an interruption names the teams that answer it.
    pub teams: BTreeSet<String>,
    /// Each project's group, for the spaces where a grant is narrowed to
    /// project groups (see [`Permissions::group_narrowed_spaces`]): a check
    /// that names a project but not its group is decided with it.
    pub project_groups: HashMap<String, String>,
}

impl Permissions {
    /// The user's permissions from the documents that give them. `teams` and
    /// `scoped` may hold others' too; only the user's count. Every user is
    /// in the Everyone team; a disabled user has none.
    pub fn of(
        user_id: &str,
        is_active: bool,
        teams: &[Team],
        scoped: &[ScopedUserRole],
        roles: &[UserRole],
    ) -> Permissions {
        let mut out = Permissions {
            user_id: user_id.to_owned(),
            ..Default::default()
        };
        if !is_active {
            return out;
        }
        let mine: BTreeSet<&str> = teams
            .iter()
            .filter(|t| t.id == EVERYONE_TEAM_ID || t.member_user_ids.iter().any(|m| m == user_id))
            .map(|t| t.id.as_str())
            .collect();
        let team_space: HashMap<&str, Option<&str>> = teams
            .iter()
            .map(|t| (t.id.as_str(), t.space_id.as_deref()))
            .collect();
        out.teams = mine.iter().map(|t| (*t).to_owned()).collect();
        let roles: HashMap<&str, &UserRole> = roles.iter().map(|r| (r.id.as_str(), r)).collect();
        for s in scoped {
            if !mine.contains(s.team_id.as_str()) {
                continue;
            }
            let Some(role) = roles.get(s.user_role_id.as_str()) else {
                continue;
            };
            // A space team's roles apply in its space only, whatever the
            // scoped role says.
            let space_id = match team_space.get(s.team_id.as_str()).copied().flatten() {
                Some(team_space) => Some(team_space.to_owned()),
                None => s.space_id.clone(),
            };
            let names = match space_id {
                Some(_) => &role.granted_space_permissions,
                None => &role.granted_system_permissions,
            };
            let permissions: BTreeSet<Permission> =
                names.iter().filter_map(|n| n.parse().ok()).collect();
            if space_id.is_none() && permissions.contains(&Permission::AdministerSystem) {
                out.administrator = true;
            }
            out.grants.push(Grant {
                role_id: role.id.clone(),
                team_id: s.team_id.clone(),
                space_id,
                permissions,
                project_ids: s.project_ids.clone(),
                project_group_ids: s.project_group_ids.clone(),
                environment_ids: s.environment_ids.clone(),
                tenant_ids: s.tenant_ids.clone(),
            });
        }
        out
    }

    /// Everything allowed: the server's own work.
    pub fn unrestricted() -> Permissions {
        Permissions {
            administrator: true,
            ..Default::default()
        }
    }

    pub fn allows(&self, p: Permission, scope: &Scope) -> bool {
        self.administrator || self.grants_allowing(p, scope).next().is_some()
    }

    /// The grants that allow `p` at `scope`, the project's group filled in
    /// where a grant needs it.
    fn grants_allowing<'s>(
        &'s self,
        p: Permission,
        scope: &Scope<'s>,
    ) -> impl Iterator<Item = &'s Grant> + 's {
        let group = match (scope.project, scope.project_group) {
            (Some(project), None) => self.project_groups.get(project).map(String::as_str),
            _ => scope.project_group,
        };
        let scope = Scope {
            project_group: group,
            ..scope.clone()
        };
        self.grants.iter().filter(move |g| g.allows(p, &scope))
    }

    /// Whether the caller may see (or edit) a variable scoped to
    /// `environments` at `scope` (its project, or a library set's space),
    /// as Octopus decides: a variable scoped to environments with `p` in
    /// one of them; one without an environment scope with `unscoped`, or
    /// with `p` from a grant not narrowed to environments.
    pub fn allows_variable(
        &self,
        p: Permission,
        unscoped: Permission,
        scope: &Scope,
        environments: &[String],
    ) -> bool {
        if self.administrator {
            return true;
        }
        if environments.is_empty() {
            return self.allows(unscoped, scope)
                || self
                    .grants_allowing(p, scope)
                    .any(|g| g.environment_ids.is_empty());
        }
        environments.iter().any(|e| {
            let at = Scope {
                environment: Some(e.as_str()),
                ..scope.clone()
            };
            self.allows(p, &at)
        })
    }

    /// The spaces where some grant is narrowed to project groups: there,
    /// checks need each project's group ([`Permissions::project_groups`]).
    pub fn group_narrowed_spaces(&self) -> BTreeSet<String> {
        self.grants
            .iter()
            .filter(|g| !g.project_group_ids.is_empty())
            .filter_map(|g| g.space_id.clone())
            .collect()
    }

    /// Whether `p` is held anywhere in `space` (any project, environment).
    pub fn allows_in_space(&self, p: Permission, space: &str) -> bool {
        self.allows(p, &Scope::space(space))
    }

    /// Whether `p` is allowed on `task`: in its space, project and
    /// environment; a task of no space (installation-wide work) needs `p`
    /// installation-wide.
    pub fn allows_on_task(&self, p: Permission, task: &crate::ServerTask) -> bool {
        self.allows(p, &Scope::of_task(task))
    }

    /// Whether `p` is allowed on a thing of `space` in `environments` (an
    /// environment itself, a machine in them): in any of them, or in the
    /// space for a thing of no environment.
    pub fn allows_in_environments(
        &self,
        p: Permission,
        space: &str,
        environments: &[&str],
    ) -> bool {
        if environments.is_empty() {
            return self.allows(p, &Scope::space(space));
        }
        environments
            .iter()
            .any(|e| self.allows(p, &Scope::space(space).environment(e)))
    }

    /// Whether `p` holds for everything in `space`: some grant there is
    /// narrowed to no projects, groups, environments or tenants.
    pub fn whole_in_space(&self, p: Permission, space: &str) -> bool {
        self.administrator
            || self.grants.iter().any(|g| {
                g.space_id.as_deref() == Some(space)
                    && g.permissions.contains(&p)
                    && g.project_ids.is_empty()
                    && g.project_group_ids.is_empty()
                    && g.environment_ids.is_empty()
                    && g.tenant_ids.is_empty()
            })
    }

    /// Whether `p` is held in any space at all.
    pub fn allows_somewhere(&self, p: Permission) -> bool {
        self.administrator
            || self
                .grants
                .iter()
                .any(|g| g.space_id.is_some() && g.permissions.contains(&p))
    }

    /// Whether any grant at all reaches into `space`: one without is told
    /// the space does not exist.
    pub fn sees_space(&self, space: &str) -> bool {
        self.administrator
            || self
                .grants
                .iter()
                .any(|g| g.space_id.as_deref() == Some(space))
    }

    /// The spaces the user holds anything in (all, for an administrator:
    /// `None`).
    pub fn spaces(&self) -> Option<BTreeSet<String>> {
        if self.administrator {
            return None;
        }
        Some(
            self.grants
                .iter()
                .filter_map(|g| g.space_id.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployer_fixture() -> (Vec<Team>, Vec<ScopedUserRole>, Vec<UserRole>) {
        let mut teams = builtin_teams();
        teams.push(Team {
            id: "Teams-1".into(),
            name: "developers".into(),
            member_user_ids: vec!["Users-2".into()],
            ..Default::default()
        });
        teams[1].member_user_ids.push("Users-1".into());
        let scoped = vec![
            administrators_grant(),
            ScopedUserRole {
                id: "ScopedUserRoles-1".into(),
                team_id: "Teams-1".into(),
                user_role_id: "userroles-projectdeployer".into(),
                space_id: Some("Spaces-1".into()),
                project_ids: vec!["Projects-1".into()],
                environment_ids: vec!["Environments-1".into()],
                ..Default::default()
            },
        ];
        (teams, scoped, builtin_roles())
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for p in Permission::ALL {
            assert_eq!(p.name().parse::<Permission>(), Ok(*p));
        }
        let role = UserRole {
            granted_space_permissions: vec!["ProjectView".into(), "ProjectLook".into()],
            granted_system_permissions: vec!["ProjectView".into()],
            ..Default::default()
        };
        assert_eq!(
            role_problems(&role),
            [
                "'ProjectLook' is not a permission",
                "'ProjectView' is a space permission, not a system permission"
            ]
        );
        for r in builtin_roles() {
            assert!(role_problems(&r).is_empty(), "{}", r.name);
        }
    }

    #[test]
    fn a_scoped_deployer_deploys_only_where_scoped() {
        let (teams, scoped, roles) = deployer_fixture();
        let p = Permissions::of("Users-2", true, &teams, &scoped, &roles);
        assert!(!p.administrator);
        let dev = Scope::space("Spaces-1")
            .project("Projects-1")
            .environment("Environments-1");
        assert!(p.allows(Permission::DeploymentCreate, &dev));
        let prod = Scope::space("Spaces-1")
            .project("Projects-1")
            .environment("Environments-2");
        assert!(!p.allows(Permission::DeploymentCreate, &prod));
        let other_project = Scope::space("Spaces-1").project("Projects-9");
        assert!(!p.allows(Permission::ProjectView, &other_project));
        assert!(!p.allows(Permission::ProjectView, &Scope::space("Spaces-2")));
        assert!(p.allows_in_space(Permission::ProjectView, "Spaces-1"));
        assert!(!p.allows(Permission::UserEdit, &Scope::system()));
        assert!(p.sees_space("Spaces-1") && !p.sees_space("Spaces-2"));
    }

    #[test]
    fn a_grant_narrowed_to_project_groups_needs_the_group_named() {
        let (teams, mut scoped, roles) = deployer_fixture();
        scoped[1].project_ids.clear();
        scoped[1].environment_ids.clear();
        scoped[1].project_group_ids = vec!["ProjectGroups-1".into()];
        let p = Permissions::of("Users-2", true, &teams, &scoped, &roles);
        let in_group = Scope::space("Spaces-1")
            .project("Projects-5")
            .project_group("ProjectGroups-1");
        assert!(p.allows(Permission::ProjectView, &in_group));
        let other_group = Scope::space("Spaces-1")
            .project("Projects-6")
            .project_group("ProjectGroups-2");
        assert!(!p.allows(Permission::ProjectView, &other_group));
        let group_unknown = Scope::space("Spaces-1").project("Projects-6");
        assert!(!p.allows(Permission::ProjectView, &group_unknown));
    }

    #[test]
    fn administrators_may_do_everything_and_disabled_users_nothing() {
        let (teams, scoped, roles) = deployer_fixture();
        let admin = Permissions::of("Users-1", true, &teams, &scoped, &roles);
        assert!(admin.administrator);
        assert!(admin.allows(Permission::DeploymentCreate, &Scope::space("Spaces-7")));
        let disabled = Permissions::of("Users-1", false, &teams, &scoped, &roles);
        assert!(!disabled.allows(Permission::ProjectView, &Scope::space("Spaces-1")));
        assert!(!disabled.sees_space("Spaces-1"));
    }

    #[test]
    fn a_space_teams_roles_stay_in_its_space() {
        let (mut teams, mut scoped, roles) = deployer_fixture();
        teams[2].space_id = Some("Spaces-2".into());
        // The scoped role claims another space than the team's.
        scoped[1].space_id = Some("Spaces-1".into());
        let p = Permissions::of("Users-2", true, &teams, &scoped, &roles);
        assert!(!p.sees_space("Spaces-1"));
        assert!(p.sees_space("Spaces-2"));
    }

    #[test]
    fn everyone_counts_every_user_and_system_roles_give_system_permissions() {
        let (teams, mut scoped, roles) = deployer_fixture();
        scoped.push(ScopedUserRole {
            id: "ScopedUserRoles-2".into(),
            team_id: EVERYONE_TEAM_ID.into(),
            user_role_id: "userroles-systemmanager".into(),
            ..Default::default()
        });
        let p = Permissions::of("Users-77", true, &teams, &scoped, &roles);
        assert!(p.allows(Permission::UserView, &Scope::system()));
        assert!(!p.allows(Permission::AdministerSystem, &Scope::system()));
        assert!(!p.allows(Permission::UserView, &Scope::space("Spaces-1")));
    }
}
