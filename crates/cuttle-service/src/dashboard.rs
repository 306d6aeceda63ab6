//! What the portal's pages read: the dashboard (the newest deployment of
//! every project to every environment), a page of tasks, and a task with its
//! whole log as of one moment. Each is a fixed, small number of queries
//! however many projects, environments or deployments there are.

use crate::actor::Actor;
use crate::{Instance, Result};
use cuttle_model::task::{Activity, LogLine};
use cuttle_model::{
    Deployment, Environment, Permission, Project, ProjectGroup, Release, Scope, ServerTask,
    TaskState, Timestamp,
};
use cuttle_store::{DocumentQuery, TaskQuery};
use std::collections::HashMap;

/// How a deployment looks on the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentState {
    Success,
    SuccessWithWarnings,
    Failed,
    Canceled,
    Queued,
    Running,
    /// Running, but paused until a person answers an interruption.
    Waiting,
}

impl DeploymentState {
    pub fn of(task: &ServerTask) -> Self {
        Self::of_parts(
            task.state,
            task.has_pending_interruptions,
            task.has_warnings_or_errors,
        )
    }

    /// From the task's state and its two flags.
    pub fn of_parts(state: TaskState, pending_interruptions: bool, warnings: bool) -> Self {
        // A finished task's flag is stale, never "waiting".
        if pending_interruptions && !state.is_completed() {
            return DeploymentState::Waiting;
        }
        match state {
            TaskState::Success if warnings => DeploymentState::SuccessWithWarnings,
            TaskState::Success => DeploymentState::Success,
            TaskState::Failed | TaskState::TimedOut => DeploymentState::Failed,
            TaskState::Canceled => DeploymentState::Canceled,
            TaskState::Queued => DeploymentState::Queued,
            TaskState::Executing | TaskState::Cancelling => DeploymentState::Running,
        }
    }

    /// Whether it may still change by itself (a page showing it refreshes).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            DeploymentState::Queued | DeploymentState::Running | DeploymentState::Waiting
        )
    }
}

/// The newest deployment of one project to one environment.
#[derive(Clone, Debug)]
pub struct Cell {
    pub deployment_id: String,
    pub release_version: String,
    pub task_id: String,
    pub state: DeploymentState,
    /// When its task ended, or else started, or else was queued.
    pub at: Timestamp,
}

impl Cell {
    fn of(deployment_id: &str, release_version: &str, task: &ServerTask) -> Cell {
        Cell {
            deployment_id: deployment_id.to_owned(),
            release_version: release_version.to_owned(),
            task_id: task.id.clone(),
            state: DeploymentState::of(task),
            at: task
                .completed_time
                .or(task.start_time)
                .unwrap_or(task.queue_time),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProjectRow {
    pub project: Project,
    /// One per environment of [`Dashboard::environments`], in that order.
    pub cells: Vec<Option<Cell>>,
}

#[derive(Clone, Debug)]
pub struct GroupRows {
    pub group: ProjectGroup,
    pub projects: Vec<ProjectRow>,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub environments: Vec<Environment>,
    /// Groups that have projects, in the groups' order.
    pub groups: Vec<GroupRows>,
    /// Whether any cell is still queued, running or waiting.
    pub live: bool,
}

/// The dashboard of a space as `caller` may see it: the projects they may
/// view by group, against the environments they may view, each cell the
/// newest deployment there.
pub async fn dashboard(inst: &Instance, caller: &Actor, space_id: &str) -> Result<Dashboard> {
    let store = &inst.store;
    let groups = store
        .list::<ProjectGroup>(&DocumentQuery::in_space(space_id))
        .await?;
    let mut projects = store
        .list::<Project>(&DocumentQuery::in_space(space_id))
        .await?;
    let mut environments = store
        .list::<Environment>(&DocumentQuery::in_space(space_id))
        .await?;
    let in_space = Scope::space(space_id);
    projects.items.retain(|p| {
        caller.may(
            Permission::ProjectView,
            &in_space
                .clone()
                .project(&p.id)
                .project_group(&p.project_group_id),
        )
    });
    environments.items.retain(|e| {
        caller.may(
            Permission::EnvironmentView,
            &in_space.clone().environment(&e.id),
        )
    });
    // The newest deployment of each project to each environment, with how
    // its task stands: read from the table that keeps them, not from the
    // history, and without their documents.
    let deployments = store.latest_deployment_cells(space_id).await?;
    let mut release_ids: Vec<String> = deployments.iter().map(|d| d.release_id.clone()).collect();
    release_ids.sort();
    release_ids.dedup();
    let releases: HashMap<String, Release> = if release_ids.is_empty() {
        HashMap::new()
    } else {
        let q = DocumentQuery {
            ids: release_ids,
            ..DocumentQuery::in_space(space_id)
        };
        let page = store.list::<Release>(&q).await?;
        page.items.into_iter().map(|r| (r.id.clone(), r)).collect()
    };

    let env_index: HashMap<&str, usize> = environments
        .items
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let mut cells: HashMap<&str, Vec<Option<Cell>>> = HashMap::new();
    let mut live = false;
    for d in &deployments {
        let Some(&column) = env_index.get(d.environment_id.as_str()) else {
            continue;
        };
        let scope = in_space
            .clone()
            .project(&d.project_id)
            .environment(&d.environment_id);
        if !caller.may(Permission::DeploymentView, &scope) {
            continue;
        }
        let state = DeploymentState::of_parts(
            d.state,
            d.has_pending_interruptions,
            d.has_warnings_or_errors,
        );
        live |= state.is_live();
        let row = cells
            .entry(d.project_id.as_str())
            .or_insert_with(|| vec![None; environments.items.len()]);
        row[column] = Some(Cell {
            deployment_id: d.deployment_id.clone(),
            release_version: releases
                .get(&d.release_id)
                .map(|r| r.version.clone())
                .unwrap_or_else(|| d.release_id.clone()),
            task_id: d.task_id.clone(),
            state,
            at: d.completed_time.or(d.start_time).unwrap_or(d.queue_time),
        });
    }

    let mut by_group: HashMap<&str, Vec<ProjectRow>> = HashMap::new();
    for p in &projects.items {
        let row = ProjectRow {
            project: p.clone(),
            cells: cells
                .remove(p.id.as_str())
                .unwrap_or_else(|| vec![None; environments.items.len()]),
        };
        by_group
            .entry(p.project_group_id.as_str())
            .or_default()
            .push(row);
    }
    let mut rows = vec![];
    for g in &groups.items {
        if let Some(mut projects) = by_group.remove(g.id.as_str()) {
            projects.sort_by_key(|r| r.project.name.to_lowercase());
            rows.push(GroupRows {
                group: g.clone(),
                projects,
            });
        }
    }
    // A project whose group is gone still shows, under a group of its own.
    let mut orphans: Vec<ProjectRow> = by_group.into_values().flatten().collect();
    if !orphans.is_empty() {
        orphans.sort_by_key(|r| r.project.name.to_lowercase());
        rows.push(GroupRows {
            group: ProjectGroup {
                name: "Other projects".into(),
                space_id: space_id.to_owned(),
                ..Default::default()
            },
            projects: orphans,
        });
    }
    Ok(Dashboard {
        environments: environments.items,
        groups: rows,
        live,
    })
}

/// One release of a project with, per environment of
/// [`ProjectOverview::environments`], its newest deployment there.
#[derive(Clone, Debug)]
pub struct ReleaseRow {
    pub release: Release,
    pub cells: Vec<Option<Cell>>,
}

/// A project's newest releases against the environments of its lifecycle.
#[derive(Clone, Debug)]
pub struct ProjectOverview {
    pub project: Project,
    /// The lifecycle's environments, phase by phase.
    pub environments: Vec<Environment>,
    /// Newest first.
    pub releases: Vec<ReleaseRow>,
    pub live: bool,
}

/// The overview of a project: its `take` newest releases, each with the
/// newest deployment to each environment its lifecycle names.
pub async fn project_overview(
    inst: &Instance,
    space_id: &str,
    project_id: &str,
    take: i64,
) -> Result<ProjectOverview> {
    let store = &inst.store;
    let project = crate::projects::find_project(store, space_id, project_id).await?;
    let lifecycle: cuttle_model::Lifecycle =
        crate::resources::get_in_space(store, space_id, &project.lifecycle_id).await?;
    let all_environments = store
        .list::<Environment>(&DocumentQuery::in_space(space_id))
        .await?
        .items;
    let mut environment_ids: Vec<String> = vec![];
    for phase in cuttle_model::progression::effective_phases(&lifecycle, &all_environments) {
        for e in phase.environments() {
            if !environment_ids.contains(e) {
                environment_ids.push(e.clone());
            }
        }
    }
    let environments: Vec<Environment> = environment_ids
        .iter()
        .filter_map(|id| all_environments.iter().find(|e| &e.id == id).cloned())
        .collect();
    let owned = DocumentQuery {
        parent_ids: vec![project.id.clone()],
        descending: true,
        ..DocumentQuery::in_space(space_id)
    };
    let releases = store
        .list::<Release>(&DocumentQuery {
            take: Some(take.max(1)),
            ..owned
        })
        .await?
        .items;
    // The newest deployment of each of these releases to each environment,
    // with its task: the index entries of a few releases, not the
    // project's history.
    let release_ids: Vec<String> = releases.iter().map(|r| r.id.clone()).collect();
    let deployments = store
        .newest_release_deployments(space_id, &release_ids)
        .await?;
    let mut live = false;
    let rows = releases
        .into_iter()
        .map(|release| {
            let cells = environments
                .iter()
                .map(|env| {
                    let (d, task) = deployments
                        .iter()
                        .find(|(d, _)| d.release_id == release.id && d.environment_id == env.id)?;
                    let cell = Cell::of(&d.id, &release.version, task);
                    live |= cell.state.is_live();
                    Some(cell)
                })
                .collect();
            ReleaseRow { release, cells }
        })
        .collect();
    Ok(ProjectOverview {
        project,
        environments,
        releases: rows,
        live,
    })
}

/// Which tasks a list wants.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub states: Vec<TaskState>,
    pub project_id: Option<String>,
    pub skip: i64,
    pub take: i64,
}

/// A page of a space's tasks, newest first, with the names of the projects
/// and environments they concern.
#[derive(Clone, Debug)]
pub struct TaskList {
    pub tasks: Vec<ServerTask>,
    pub total: i64,
    /// Every project of the space (for naming tasks and filtering by them).
    pub projects: Vec<Project>,
    pub environment_names: HashMap<String, String>,
}

/// Only the tasks and projects `caller` may see are listed: where a grant
/// narrows `TaskView`, the matches are read and filtered before paging.
pub async fn task_list(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    filter: &TaskFilter,
) -> Result<TaskList> {
    let store = &inst.store;
    let skip = filter.skip.max(0);
    let take = filter.take.clamp(1, 500);
    let mut q = TaskQuery {
        space_id: Some(space_id.to_owned()),
        states: filter.states.clone(),
        project_id: filter.project_id.clone().filter(|p| !p.is_empty()),
        skip,
        take: Some(take),
        ..Default::default()
    };
    let narrowed = caller
        .permissions
        .as_deref()
        .filter(|p| !p.whole_in_space(Permission::TaskView, space_id));
    let (tasks, total) = match narrowed {
        None => store.list_tasks(&q).await?,
        Some(perms) => {
            q.skip = 0;
            q.take = None;
            let (all, _) = store.list_tasks(&q).await?;
            let mine: Vec<ServerTask> = all
                .into_iter()
                .filter(|t| perms.allows_on_task(Permission::TaskView, t))
                .collect();
            let total = mine.len() as i64;
            let page = mine
                .into_iter()
                .skip(skip as usize)
                .take(take as usize)
                .collect();
            (page, total)
        }
    };
    let mut projects = store
        .list::<Project>(&DocumentQuery::in_space(space_id))
        .await?
        .items;
    let in_space = Scope::space(space_id);
    projects.retain(|p| caller.may(Permission::ProjectView, &in_space.clone().project(&p.id)));
    projects.sort_by_key(|p| p.name.to_lowercase());
    let environment_names = store
        .list::<Environment>(&DocumentQuery::in_space(space_id))
        .await?
        .items
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    Ok(TaskList {
        tasks,
        total,
        projects,
        environment_names,
    })
}

/// A task and what it concerns (for deployments: the project, environment,
/// release and deployment).
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub task: ServerTask,
    pub project: Option<Project>,
    pub environment: Option<Environment>,
    pub release: Option<Release>,
    pub deployment: Option<Deployment>,
}

/// A task `caller` may see, with what it concerns.
pub async fn task_context(inst: &Instance, caller: &Actor, id: &str) -> Result<TaskContext> {
    let store = &inst.store;
    let task = crate::tasks::visible_task(inst, caller, None, id).await?;
    let deployment = match &task.deployment_id {
        Some(d) => store.get::<Deployment>(d).await?,
        None => None,
    };
    let project = match &task.project_id {
        Some(p) => store.get::<Project>(p).await?,
        None => None,
    };
    let environment = match &task.environment_id {
        Some(e) => store.get::<Environment>(e).await?,
        None => None,
    };
    let release = match &deployment {
        Some(d) => store.get::<Release>(&d.release_id).await?,
        None => None,
    };
    Ok(TaskContext {
        task,
        project,
        environment,
        release,
        deployment,
    })
}

/// Lines of one activity the task page shows at most: an activity with
/// more shows its last ones, and says how many earlier ones the raw log has.
pub const PAGE_LINES_PER_ACTIVITY: i64 = 1_000;

/// A task and its log as of one moment (each activity's last
/// [`PAGE_LINES_PER_ACTIVITY`] lines), and the position of its last line: a
/// live follower resumes after `position` and misses nothing.
#[derive(Clone, Debug)]
pub struct TaskSnapshot {
    pub context: TaskContext,
    /// The activity tree's nodes, flat, in creation order.
    pub activities: Vec<Activity>,
    pub lines: Vec<LogLine>,
    /// Per activity, how many of its earlier lines are left out of `lines`.
    pub omitted: HashMap<String, i64>,
    pub position: i64,
}

pub async fn task_snapshot(inst: &Instance, caller: &Actor, id: &str) -> Result<TaskSnapshot> {
    // The task first, then the last line's position, then activities, then
    // lines up to that position, as the live stream reads them: a task is
    // marked complete only after its last line is stored, and an activity
    // before any line under it, so a completed task shows its whole log and
    // every line read has its activity.
    let context = task_context(inst, caller, id).await?;
    let position = inst.store.last_log_seq(id).await?;
    let activities = inst.store.task_activities(id).await?;
    let counts = inst
        .store
        .activity_line_counts(id, true, Some(position))
        .await?;
    let mut lines = vec![];
    let mut omitted = HashMap::new();
    for (activity, count) in counts {
        let tail = inst
            .store
            .activity_log_tail(id, &activity, true, PAGE_LINES_PER_ACTIVITY, Some(position))
            .await?;
        if count > tail.len() as i64 {
            omitted.insert(activity, count - tail.len() as i64);
        }
        lines.extend(tail);
    }
    // In the order they were written, as the tree expects.
    lines.sort_by_key(|l| l.seq);
    Ok(TaskSnapshot {
        context,
        activities,
        lines,
        omitted,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::Timestamp;

    fn task(state: TaskState, pending: bool, warnings: bool) -> ServerTask {
        let mut t = ServerTask {
            id: "ServerTasks-1".into(),
            space_id: None,
            name: "Deploy".into(),
            description: String::new(),
            arguments: serde_json::Value::Null,
            state,
            is_completed: false,
            finished_successfully: false,
            has_pending_interruptions: pending,
            has_warnings_or_errors: warnings,
            error_message: None,
            queue_time: Timestamp::now(),
            queue_time_expiry: None,
            start_time: None,
            completed_time: None,
            last_updated_time: Timestamp::now(),
            duration: String::new(),
            server_node: None,
            can_rerun: false,
            has_been_picked_up_by_processor: false,
            project_id: None,
            environment_id: None,
            deployment_id: None,
        };
        t.derive_fields(Timestamp::now());
        t
    }

    #[test]
    fn deployment_states() {
        use DeploymentState::*;
        let cases = [
            (TaskState::Success, false, false, Success),
            (TaskState::Success, false, true, SuccessWithWarnings),
            (TaskState::Failed, false, false, Failed),
            (TaskState::TimedOut, false, false, Failed),
            (TaskState::Canceled, false, false, Canceled),
            (TaskState::Queued, false, false, Queued),
            (TaskState::Executing, false, false, Running),
            (TaskState::Executing, true, false, Waiting),
            (TaskState::Cancelling, false, false, Running),
            // A finished task's flag is stale, never "waiting".
            (TaskState::Failed, true, false, Failed),
        ];
        for (state, pending, warnings, want) in cases {
            assert_eq!(
                DeploymentState::of(&task(state, pending, warnings)),
                want,
                "{state:?} pending={pending} warnings={warnings}"
            );
        }
        assert!(Waiting.is_live() && Running.is_live() && Queued.is_live());
        assert!(!Success.is_live() && !Failed.is_live());
    }
}
