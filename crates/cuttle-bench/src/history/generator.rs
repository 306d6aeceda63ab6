//! Writes a deployment history straight through the store, with the server
//! stopped: releases, deployments and their finished tasks, shaped exactly as
//! the server writes them (the same documents, task rows, audit events,
//! activities and log lines), in large transactions so that a million
//! deployments take minutes rather than the days the API would.
//!
//! Deployment `k` goes to project `k % 50`; each project deploys its newest
//! release to the 20 environments in turn, then makes a new release. Every
//! 25th deployment fails.

use super::fixture::{Fixture, FIRST_RELEASE};
use super::SPACE;
use anyhow::{Context, Result};
use cuttle_model::ids::{sequence_of, variable_snapshot_id_for, Collection};
use cuttle_model::interruption::resolve_guided_failure;
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{Deployment, Environment, Project, Release, TaskState, Timestamp, VariableSet};
use cuttle_store::{AuditEvent, NewTask, ProcessSnapshot, Store, Tx};
use serde_json::json;

/// Deployments written per transaction.
const DEPLOYMENTS_PER_TX: u64 = 2_000;
/// Lines of a large log per call, and per transaction.
const LINES_PER_CALL: usize = 5_000;
const LINES_PER_TX: usize = 100_000;
/// Every this many deployments, one fails.
const FAIL_EVERY: u64 = 25;
const FAILURE: &str = "The step 'Roll out' failed: the script exited with code 1";
/// The history spans this long before the generator runs, a minute apart.
const SPACING_MS: i64 = 60_000;

pub struct Generator {
    url: String,
    user_id: String,
    username: String,
    projects: Vec<ProjectHistory>,
    environments: Vec<Environment>,
    template: TaskTemplate,
    /// Deployments written so far.
    written: u64,
    /// When the history starts: far enough back that its last deployment
    /// is older than anything the server does afterwards.
    epoch: i64,
}

struct ProjectHistory {
    project: Project,
    first: Release,
    snapshot: ProcessSnapshot,
    variables: VariableSet,
    /// The release now being deployed, and how many were generated.
    current: Option<Release>,
    releases: u64,
}

/// A real trivial deployment's task, copied for every generated one.
struct TaskTemplate {
    task_id: String,
    activities: Vec<Activity>,
    lines: Vec<LogLine>,
    /// Where the script's output went (the activity large logs go to).
    output_activity: String,
}

impl Generator {
    /// Reads what the fixture made, from a store the server no longer holds.
    pub async fn load(url: &str, fixture: &Fixture, deployments: u64) -> Result<Generator> {
        let store = Store::open(url).await?;
        let mut projects = vec![];
        for (id, name) in &fixture.projects {
            let project: Project = store.require(id).await?;
            let first = store
                .find_by_name::<Release>(Some(SPACE), Some(id), FIRST_RELEASE)
                .await?
                .with_context(|| format!("{name} has no release {FIRST_RELEASE}"))?;
            let snapshot: ProcessSnapshot = store
                .require(&first.project_deployment_process_snapshot_id)
                .await?;
            let variables: VariableSet = store
                .require(&first.project_variable_set_snapshot_id)
                .await?;
            projects.push(ProjectHistory {
                project,
                first,
                snapshot,
                variables,
                current: None,
                releases: 0,
            });
        }
        let mut environments = vec![];
        for (id, _) in &fixture.environments {
            environments.push(store.require::<Environment>(id).await?);
        }
        let task_id = fixture.template_task.clone();
        let activities = store.task_activities(&task_id).await?;
        let lines = store.log_lines_after(&task_id, 0, 10_000).await?;
        let output_activity = lines
            .iter()
            .find(|l| l.message.contains("rolled out"))
            .or(lines.last())
            .map(|l| l.activity_id.clone())
            .context("the template deployment wrote no log")?;
        store.close().await;
        let epoch = Timestamp::now().millis() - (deployments as i64 + 1) * SPACING_MS;
        Ok(Generator {
            url: url.to_owned(),
            user_id: fixture.user_id.clone(),
            username: fixture.username.clone(),
            projects,
            environments,
            template: TaskTemplate {
                task_id,
                activities,
                lines,
                output_activity,
            },
            written: 0,
            epoch,
        })
    }

    /// The newest generated release of a project (its first one before any).
    pub fn newest_release(&self, project: usize) -> &Release {
        let p = &self.projects[project];
        p.current.as_ref().unwrap_or(&p.first)
    }

    /// Writes deployments until there are `target` in all.
    pub async fn grow_to(&mut self, target: u64) -> Result<()> {
        let store = Store::open(&self.url).await?;
        while self.written < target {
            let end = target.min(self.written + DEPLOYMENTS_PER_TX);
            let mut tx = store.begin().await?;
            while self.written < end {
                self.write_deployment(&mut tx, self.written).await?;
                self.written += 1;
            }
            tx.commit().await?;
        }
        store.close().await;
        Ok(())
    }

    /// Who and from where, as a CI tool with an API key calls the server.
    fn api_origin(&self) -> AuditEvent {
        AuditEvent {
            identity_established_with: Some("API key".into()),
            ip_address: Some("127.0.0.1".into()),
            user_agent: Some("cuttle-bench".into()),
            ..Default::default()
        }
    }

    async fn write_deployment(&mut self, tx: &mut Tx, k: u64) -> Result<()> {
        let projects = self.projects.len() as u64;
        let environments = self.environments.len() as u64;
        let p = (k % projects) as usize;
        let nth = k / projects;
        let e = (nth % environments) as usize;
        if e == 0 {
            self.write_release(tx, p, k).await?;
        }
        let at = Timestamp::from_millis(self.epoch + k as i64 * SPACING_MS);
        let release = self.newest_release(p).clone();
        let state = if k % FAIL_EVERY == FAIL_EVERY - 1 {
            TaskState::Failed
        } else {
            TaskState::Success
        };
        self.write_deployment_of(tx, p, e, &release, at, state, true)
            .await
            .map(|_| ())
    }

    /// Writes the deployment of a release with its task, finished in
    /// `state`, as `cuttle_service::deployments::write` and the runner
    /// would; returns the task's id. The task's activities are the
    /// template's, and so are its lines if `template_lines`.
    #[allow(clippy::too_many_arguments)]
    async fn write_deployment_of(
        &self,
        tx: &mut Tx,
        p: usize,
        e: usize,
        release: &Release,
        at: Timestamp,
        state: TaskState,
        template_lines: bool,
    ) -> Result<String> {
        let project = &self.projects[p].project;
        let environment = &self.environments[e];
        let id = tx.next_id(Collection::Deployments).await?;
        let description = format!(
            "Deploy {} release {} to {}",
            project.name, release.version, environment.name
        );
        let task = tx
            .insert_task(NewTask {
                space_id: Some(SPACE.into()),
                name: "Deploy".into(),
                description: description.clone(),
                arguments: json!({"DeploymentId": id}),
                queue_time: Some(at),
                queue_time_expiry: None,
                project_id: Some(project.id.clone()),
                environment_id: Some(environment.id.clone()),
                deployment_id: Some(id.clone()),
            })
            .await?;
        let deployment = Deployment {
            id,
            space_id: SPACE.into(),
            name: format!("Deploy to {}", environment.name),
            release_id: release.id.clone(),
            environment_id: environment.id.clone(),
            project_id: project.id.clone(),
            channel_id: release.channel_id.clone(),
            tenant_id: None,
            task_id: task.id.clone(),
            deployment_process_id: release.project_deployment_process_snapshot_id.clone(),
            use_guided_failure: resolve_guided_failure(
                None,
                &project.default_guided_failure_mode,
                environment.use_guided_failure,
            ),
            created: Some(at),
            deployed_by: self.username.clone(),
            deployed_by_id: self.user_id.clone(),
            ..Default::default()
        };
        tx.insert(&deployment).await?;
        tx.record_event(AuditEvent {
            space_id: Some(SPACE.into()),
            user_id: Some(self.user_id.clone()),
            username: Some(self.username.clone()),
            category: "DeploymentQueued".into(),
            message: description,
            related_document_ids: vec![
                deployment.id.clone(),
                release.id.clone(),
                project.id.clone(),
                environment.id.clone(),
                task.id.clone(),
            ],
            ..self.api_origin()
        })
        .await?;
        self.write_log(tx, &task.id, state, template_lines).await?;
        let error = (state == TaskState::Failed).then_some(FAILURE);
        tx.complete_task(&task.id, state, error).await?;
        // The outcome's event, as the task runner writes it when it finishes.
        let outcome = match state {
            TaskState::Success => Some("DeploymentSucceeded"),
            TaskState::Failed => Some("DeploymentFailed"),
            _ => None,
        };
        if let Some(category) = outcome {
            tx.record_event(AuditEvent {
                space_id: Some(SPACE.into()),
                category: category.into(),
                message: format!(
                    "{} of release {} to {}",
                    category, release.version, environment.name
                ),
                related_document_ids: vec![
                    deployment.id.clone(),
                    release.id.clone(),
                    project.id.clone(),
                    environment.id.clone(),
                    task.id.clone(),
                ],
                details: error.map(str::to_owned),
                ..Default::default()
            })
            .await?;
        }
        Ok(task.id)
    }

    /// The template's activities (and lines) under a new task's id; a
    /// failed task's activities failed too.
    async fn write_log(
        &self,
        tx: &mut Tx,
        task_id: &str,
        state: TaskState,
        template_lines: bool,
    ) -> Result<()> {
        let t = &self.template;
        let rename = |activity: &str| match activity.strip_prefix(t.task_id.as_str()) {
            Some(rest) => format!("{task_id}{rest}"),
            None => activity.to_owned(),
        };
        for (i, a) in t.activities.iter().enumerate() {
            let mut a = a.clone();
            // The engine numbers activities in its ids, and orders them so.
            let position =
                a.id.rsplit('_')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(i as i64 + 1);
            a.id = rename(&a.id);
            a.parent_id = a.parent_id.as_deref().map(rename);
            if state == TaskState::Failed {
                a.status = ActivityStatus::Failed;
            }
            tx.put_activity(task_id, &a, position).await?;
        }
        if template_lines {
            let lines: Vec<LogLine> = t
                .lines
                .iter()
                .map(|l| LogLine {
                    activity_id: rename(&l.activity_id),
                    ..l.clone()
                })
                .collect();
            tx.append_log_lines(task_id, &lines).await?;
        }
        Ok(())
    }

    /// A new release of project `p`, as `cuttle_service::releases::create_release`
    /// makes one: its own frozen process and variables, and an audit event.
    async fn write_release(&mut self, tx: &mut Tx, p: usize, k: u64) -> Result<()> {
        let ph = &self.projects[p];
        let id = tx.next_id(Collection::Releases).await?;
        let snapshot = ProcessSnapshot(cuttle_model::DeploymentProcess {
            id: format!(
                "{}-s-{}",
                ph.project.deployment_process_id,
                sequence_of(&id)
            ),
            ..ph.snapshot.0.clone()
        });
        tx.insert(&snapshot).await?;
        let variables = VariableSet {
            id: variable_snapshot_id_for(&ph.project.id, &id),
            ..ph.variables.clone()
        };
        tx.insert(&variables).await?;
        let release = Release {
            id,
            version: format!("1.0.{}", ph.releases + 1),
            assembled: Some(Timestamp::from_millis(
                self.epoch + k as i64 * SPACING_MS - 1,
            )),
            project_deployment_process_snapshot_id: snapshot.0.id.clone(),
            project_variable_set_snapshot_id: variables.id.clone(),
            ..ph.first.clone()
        };
        tx.insert(&release).await?;
        tx.record_event(AuditEvent {
            space_id: Some(SPACE.into()),
            user_id: Some(self.user_id.clone()),
            username: Some(self.username.clone()),
            category: "Created".into(),
            message: format!(
                "release {} of {} was created",
                release.version, ph.project.name
            ),
            related_document_ids: vec![release.id.clone(), ph.project.id.clone()],
            ..self.api_origin()
        })
        .await?;
        let ph = &mut self.projects[p];
        ph.current = Some(release);
        ph.releases += 1;
        Ok(())
    }

    /// Deployments of the first project's first release to the last
    /// environment whose script printed `lines` lines each; returns their
    /// tasks' ids. They do not count as history.
    pub async fn write_large_logs(&mut self, count: u32, lines: u32) -> Result<Vec<String>> {
        let store = Store::open(&self.url).await?;
        let mut ids = vec![];
        let release = self.projects[0].first.clone();
        let last = self.environments.len() - 1;
        for _ in 0..count {
            // One transaction per log would hold a million rows in the
            // journal; these are written in slices instead.
            let mut tx = store.begin().await?;
            let id = self
                .write_deployment_of(
                    &mut tx,
                    0,
                    last,
                    &release,
                    Timestamp::from_millis(self.epoch),
                    TaskState::Success,
                    false,
                )
                .await?;
            tx.commit().await?;
            let activity = format!(
                "{id}{}",
                self.template
                    .output_activity
                    .strip_prefix(self.template.task_id.as_str())
                    .unwrap_or_default()
            );
            let mut seq = 0i64;
            while seq < i64::from(lines) {
                let mut tx = store.begin().await?;
                let end = (seq + LINES_PER_TX as i64).min(i64::from(lines));
                let now = Timestamp::now();
                while seq < end {
                    let upto = (seq + LINES_PER_CALL as i64).min(end);
                    let batch: Vec<LogLine> = (seq + 1..=upto)
                        .map(|n| LogLine {
                            seq: n,
                            activity_id: activity.clone(),
                            category: LogCategory::Info,
                            occurred_at: now,
                            message: format!("line {n} of a long log"),
                            detail: None,
                        })
                        .collect();
                    tx.append_log_lines(&id, &batch).await?;
                    seq = upto;
                }
                tx.commit().await?;
            }
            ids.push(id);
        }
        store.close().await;
        Ok(ids)
    }
}
