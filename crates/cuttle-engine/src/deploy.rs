//! Carrying out a deployment task: load what the release froze, plan, then
//! run each step's actions on the built-in worker, writing the activity log.

use crate::helpers::{
    parse_service_message, variables_file, ServiceMessage, BASH_BOOTSTRAP, PYTHON_BOOTSTRAP,
    VARIABLES_FILE,
};
use crate::intervention::{record_manual_outputs, Answer, Asking, Interventions};
use crate::log::{ActivityLog, TaskLog};
use crate::plan::{
    condition_allows, groups, plan, Placement as Where, PlanInput, PlanTarget, PlannedStep,
    SkipReason,
};
use crate::remote::{run_on_agent, AgentTarget, ConnectionLimits};
use crate::script::{
    run_script_paced, OutputLine, OutputStream, ScriptOutcome, ScriptSpec, Syntax,
};
use crate::variables::{DeploymentVariables, SharedVariables, Sources, BUILT_IN_WORKER};
use crate::worker_choice::WorkerChoice;
use cuttle_model::interruption::{Decision, MANUAL_ACTION_TYPE, PROP_MANUAL_INSTRUCTIONS};
use cuttle_model::machine::HealthStatus;
use cuttle_model::process::PACKAGE_ACTION_TYPE;
use cuttle_model::process::PROP_CONDITION_EXPRESSION;
use cuttle_model::process::{
    PROP_SCRIPT_BODY, PROP_SCRIPT_SOURCE, PROP_SCRIPT_SYNTAX, PROP_TIMEOUT_MINUTES,
    PROP_TIMEOUT_SECONDS, SCRIPT_ACTION_TYPE,
};
use cuttle_model::{
    Action, ActivityStatus, Deployment, Environment, LogCategory, Machine, Project, Release,
    ServerTask, TaskState, Worker,
};
use cuttle_model::{Channel, Space, Step};
use cuttle_protocol::messages::{ScriptFile, ScriptSyntax, StartScript};
use cuttle_store::{MasterKey, ProcessSnapshot, Store};
use cuttle_vars::mask::PieceMasker;
use futures::StreamExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct DeployContext {
    pub store: Store,
    pub master_key: MasterKey,
    pub work_root: PathBuf,
    pub default_timeout: Duration,
    /// Wakes this task when someone answers its interruption.
    pub interventions: Arc<Interventions>,
    /// The built-in worker's isolation.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
    /// Lends a worker for steps that would run on the built-in worker when
    /// there is none (an instance on `cuttle host`).
    pub hosted_workers: Option<Arc<dyn crate::hosted_workers::WorkerLender>>,
    /// Connections to agents; `None` when the server has no TLS identity.
    pub agents: Option<Arc<cuttle_protocol::Agents>>,
    /// Where the built-in feed keeps package files, by SHA-256.
    pub packages: cuttle_store::blobs::Blobs,
    /// This server node's name, for the log.
    pub node_name: String,
    /// Set when this node took the task over from one that died.
    pub resume: Option<Resume>,
}

/// A deployment taken over from a node whose lease lapsed: what that node
/// recorded is read back, and the deployment carries on from there.
pub struct Resume {
    pub previous_node: Option<String>,
}

/// What earlier holders of a task recorded: its activities and the steps
/// that finished. Empty for a task run from its start.
#[derive(Default)]
struct Prior {
    activities: Vec<cuttle_model::task::Activity>,
    results: Vec<cuttle_store::StepResult>,
    /// Scripts started on agents: `(command id, run activity id, lines logged)`.
    commands: Vec<(String, String, i64)>,
}

impl Prior {
    async fn load(store: &Store, task_id: &str) -> Result<Prior, String> {
        let err =
            |e: cuttle_store::StoreError| format!("The task's progress could not be read: {e}");
        Ok(Prior {
            activities: store.task_activities(task_id).await.map_err(err)?,
            results: store.step_results(task_id).await.map_err(err)?,
            commands: store.agent_commands(task_id).await.map_err(err)?,
        })
    }

    /// The scripts started on agents, by command id: their run's activity
    /// and how many of their lines the log holds.
    fn attached(&self) -> Attached {
        self.commands
            .iter()
            .filter_map(|(command, activity, next)| {
                let a = self.activities.iter().find(|a| &a.id == activity)?;
                Some((
                    command.clone(),
                    (a.clone(), u64::try_from(*next).unwrap_or(0)),
                ))
            })
            .collect()
    }

    fn root(&self) -> Option<cuttle_model::task::Activity> {
        self.activities
            .iter()
            .find(|a| a.parent_id.is_none())
            .cloned()
    }

    fn result(&self, step: usize) -> Option<&cuttle_store::StepResult> {
        self.results.iter().find(|r| r.step_number == step as i64)
    }

    fn child(&self, parent: &str, name: &str) -> Option<cuttle_model::task::Activity> {
        self.activities
            .iter()
            .find(|a| a.parent_id.as_deref() == Some(parent) && a.name == name)
            .cloned()
    }

    fn children(&self, parent: &str) -> Vec<cuttle_model::task::Activity> {
        self.activities
            .iter()
            .filter(|a| a.parent_id.as_deref() == Some(parent))
            .cloned()
            .collect()
    }
}

/// Scripts an earlier holder of the task started on agents, by command id:
/// the run's activity and how many of the script's lines the log holds.
type Attached = std::collections::HashMap<String, (cuttle_model::task::Activity, u64)>;

/// The deployment's state after a step, as recorded with the step: the
/// output variables so far, sealed with the master key (some are sensitive).
#[derive(serde::Serialize, serde::Deserialize)]
struct Progress {
    outputs: Vec<(String, String)>,
    sensitive: Vec<String>,
}

/// How a task ended.
pub struct Outcome {
    pub state: TaskState,
    pub error: Option<String>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome {
            state: TaskState::Failed,
            error: Some(error.into()),
        }
    }
}

/// Why an action did not succeed.
enum ActionError {
    Failed(String),
    Canceled,
}

struct Loaded {
    deployment: Deployment,
    release: Release,
    project: Project,
    environment: Environment,
    process: ProcessSnapshot,
    space: Option<Space>,
    channel: Option<Channel>,
    /// The enabled deployment targets in the environment.
    targets: Vec<Machine>,
}

async fn load(store: &Store, task: &ServerTask) -> Result<Loaded, String> {
    let deployment_id = task
        .deployment_id
        .clone()
        .or_else(|| {
            task.arguments
                .get("DeploymentId")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .ok_or("The task does not name a deployment")?;
    let err = |e: cuttle_store::StoreError| e.to_string();
    let deployment: Deployment = store.require(&deployment_id).await.map_err(err)?;
    let release: Release = store.require(&deployment.release_id).await.map_err(err)?;
    let project: Project = store.require(&deployment.project_id).await.map_err(err)?;
    let environment: Environment = store
        .require(&deployment.environment_id)
        .await
        .map_err(err)?;
    let process: ProcessSnapshot = store
        .require(&deployment.deployment_process_id)
        .await
        .map_err(err)?;
    let space = store
        .get::<Space>(&deployment.space_id)
        .await
        .map_err(err)?;
    let channel = store
        .get::<Channel>(&release.channel_id)
        .await
        .map_err(err)?;
    // Only the machines the deployment was asked for, less those excluded.
    let targets = store
        .deployment_targets(&deployment.space_id, &environment.id)
        .await
        .map_err(err)?
        .into_iter()
        .filter(|m| {
            deployment.specific_machine_ids.is_empty()
                || deployment.specific_machine_ids.contains(&m.id)
        })
        .filter(|m| !deployment.excluded_machine_ids.contains(&m.id))
        .collect();
    Ok(Loaded {
        targets,
        deployment,
        release,
        project,
        environment,
        process,
        space,
        channel,
    })
}

pub async fn run(
    ctx: &DeployContext,
    task: &ServerTask,
    log: &TaskLog,
    cancel: CancellationToken,
) -> Outcome {
    let prior = match &ctx.resume {
        Some(_) => Prior::load(&ctx.store, &task.id).await,
        None => Ok(Prior::default()),
    };
    let (root, prior) = match prior {
        Ok(prior) => match prior.root() {
            Some(a) => (log.reopen(a), prior),
            None => {
                let root = log.activity(None, &task.description).await;
                root.start().await;
                (root, prior)
            }
        },
        Err(e) => {
            let root = log.activity(None, &task.description).await;
            root.log(LogCategory::Fatal, &e);
            root.finish(ActivityStatus::Failed).await;
            return Outcome::failed(e);
        }
    };
    if let Some(resume) = &ctx.resume {
        root.log(
            LogCategory::Highlight,
            format!(
                "The server node {} took this deployment over from {}, which stopped renewing \
                 its lease; steps that finished there are not run again",
                ctx.node_name,
                resume.previous_node.as_deref().unwrap_or("another node")
            ),
        );
    }
    let loaded = match load(&ctx.store, task).await {
        Ok(l) => l,
        Err(e) => {
            root.log(LogCategory::Fatal, &e);
            root.finish(ActivityStatus::Failed).await;
            return Outcome::failed(e);
        }
    };
    if prior.activities.is_empty() {
        root.info(format!(
            "Deploying {} release {} to {}",
            loaded.project.name, loaded.release.version, loaded.environment.name
        ));
    }
    let sources = Sources {
        space: loaded.space.as_ref(),
        project: &loaded.project,
        release: &loaded.release,
        deployment: &loaded.deployment,
        environment: &loaded.environment,
        channel: loaded.channel.as_ref(),
        task_id: &task.id,
    };
    let vars = match DeploymentVariables::load(&ctx.store, &ctx.master_key, &sources).await {
        Ok(v) => {
            log.add_secrets(v.sensitive_values().iter().cloned());
            v
        }
        Err(e) => {
            root.log(LogCategory::Fatal, &e);
            root.finish(ActivityStatus::Failed).await;
            return Outcome::failed(e);
        }
    };

    let work_dir = ctx.work_root.join(&task.id);
    let plan_targets: Vec<PlanTarget> = loaded
        .targets
        .iter()
        .map(|m| PlanTarget {
            id: m.id.clone(),
            name: m.name.clone(),
            roles: m.roles.clone(),
        })
        .collect();
    let steps = plan(&PlanInput {
        process: &loaded.process.0,
        environment_id: &loaded.environment.id,
        channel_id: &loaded.release.channel_id,
        skip_actions: &loaded.deployment.skip_actions,
        targets: &plan_targets,
    });
    let mut failures: Vec<String> = vec![];
    let mut canceled = false;
    let vars = SharedVariables::new(vars);
    for result in &prior.results {
        match ctx
            .master_key
            .open(&result.state)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Progress>(&text).map_err(|e| e.to_string()))
        {
            Ok(p) => {
                log.add_secrets(p.sensitive.iter().cloned());
                vars.restore(p.outputs, p.sensitive);
            }
            Err(e) => {
                let why = format!(
                    "The output variables of step {} could not be read back: {e}",
                    result.step_number
                );
                root.log(LogCategory::Fatal, &why);
                root.finish(ActivityStatus::Failed).await;
                return Outcome::failed(why);
            }
        }
    }
    let scope = StepScope {
        ctx,
        log,
        task,
        loaded: &loaded,
        vars: &vars,
        work_dir: &work_dir,
        cancel: &cancel,
        attached: prior.attached(),
        previous_node: ctx.resume.as_ref().map(|r| {
            r.previous_node
                .clone()
                .unwrap_or_else(|| "another node".into())
        }),
    };

    // Steps of one group start together; a group starts when the one before
    // it has finished, and its run conditions see the failures before it.
    for group in groups(&steps) {
        let mut to_run = Vec::with_capacity(group.len());
        for step in &group {
            // Finished on a node that held the task before: not run again.
            if let Some(done) = prior.result(step.number) {
                failures.extend(done.failures.iter().cloned());
                canceled |= done.canceled;
                continue;
            }
            let title = format!("Step {}: {}", step.number, step.name);
            let (activity, started) = match prior.child(&root.id, &title) {
                Some(a) => {
                    let started = prior.children(&a.id);
                    (log.reopen(a), started)
                }
                None => (log.activity(Some(&root), &title).await, vec![]),
            };
            to_run.push((*step, activity, started));
        }
        let error_so_far = (!failures.is_empty()).then(|| failures.join(" "));
        let ends = futures::future::join_all(to_run.iter().map(|(step, activity, started)| {
            scope.run_recorded(step, activity, started, canceled, error_so_far.as_deref())
        }))
        .await;
        for end in ends {
            failures.extend(end.failures);
            canceled |= end.canceled;
        }
    }
    let _ = tokio::fs::remove_dir_all(&work_dir).await;

    if canceled {
        root.error("The deployment was cancelled");
        root.finish(ActivityStatus::Canceled).await;
        return Outcome {
            state: TaskState::Canceled,
            error: Some("The task was cancelled".into()),
        };
    }
    if failures.is_empty() {
        root.info("Deployment completed successfully");
        root.finish(ActivityStatus::Success).await;
        Outcome {
            state: TaskState::Success,
            error: None,
        }
    } else {
        for f in &failures {
            root.error(f);
        }
        root.finish(ActivityStatus::Failed).await;
        Outcome::failed(format!(
            "The deployment failed because one or more steps failed. {}",
            failures.join(" ")
        ))
    }
}

/// How a step whose activity a node that died had already finished ended,
/// from that activity; `None` for one still to run.
fn ended_unrecorded(step: &PlannedStep, status: ActivityStatus) -> Option<StepEnd> {
    let (failures, canceled) = match status {
        ActivityStatus::Pending | ActivityStatus::Running => return None,
        ActivityStatus::Failed => (vec![format!("The step '{}' failed", step.name)], false),
        ActivityStatus::Canceled => (vec![], true),
        _ => (vec![], false),
    };
    Some(StepEnd { failures, canceled })
}

/// How one step ended: what failed, and whether the task was cancelled.
struct StepEnd {
    failures: Vec<String>,
    canceled: bool,
}

/// What every step of one deployment shares.
struct StepScope<'a> {
    ctx: &'a DeployContext,
    log: &'a TaskLog,
    task: &'a ServerTask,
    loaded: &'a Loaded,
    vars: &'a SharedVariables,
    work_dir: &'a std::path::Path,
    cancel: &'a CancellationToken,
    /// Scripts the node this task was taken over from started on agents.
    attached: Attached,
    /// The node this task was taken over from, if it was.
    previous_node: Option<String>,
}

impl<'a> StepScope<'a> {
    /// Runs a step, or finishes one a node that died had started
    /// (`started` holds the runs of its actions that node began), and
    /// records how it ended, so that no later holder runs it again.
    async fn run_recorded(
        &'a self,
        step: &'a PlannedStep,
        activity: &'a ActivityLog,
        started: &'a [cuttle_model::task::Activity],
        canceled_before: bool,
        error_so_far: Option<&'a str>,
    ) -> StepEnd {
        let end = if let Some(end) = ended_unrecorded(step, activity.status().await) {
            // It ended on the node that died, which had no time to record it.
            end
        } else if started.is_empty() {
            self.run_step(step, activity, canceled_before, error_so_far, 1)
                .await
        } else {
            self.interrupted_step(step, activity, started, canceled_before, error_so_far)
                .await
        };
        let (outputs, sensitive) = self.vars.progress();
        let progress = Progress { outputs, sensitive };
        let state = match serde_json::to_string(&progress) {
            Ok(text) => self.ctx.master_key.seal(&text),
            Err(e) => {
                tracing::error!(task = %self.task.id, error = %e, "could not record a step's outputs");
                return end;
            }
        };
        let result = cuttle_store::StepResult {
            step_number: step.number as i64,
            status: activity.status().await.as_str().to_owned(),
            failures: end.failures.clone(),
            canceled: end.canceled,
            state,
        };
        if let Some(lease) = self.log.lease() {
            // The step's activities first: a node taking the task over
            // finds the step's end in both, or in neither.
            self.log.flush().await;
            match self.ctx.store.record_step_result(lease, &result).await {
                Ok(()) => {}
                Err(cuttle_store::StoreError::LeaseLost { .. }) => self.log.lose(),
                Err(e) => {
                    tracing::error!(task = %self.task.id, step = step.number, error = %e, "could not record the end of a step")
                }
            }
        }
        end
    }

    /// A step that was running on a node that died. When every run it
    /// began was on an agent, the step goes on: each script is re-attached
    /// by its command id (the agent kept running it, and its log goes on
    /// from the line after the last one logged), and runs not begun start.
    /// A script on the dead node's built-in worker died with it: then the
    /// step fails, saying why, unless guided failure is on and someone asks
    /// for a retry (or to ignore it).
    async fn interrupted_step(
        &'a self,
        step: &'a PlannedStep,
        activity: &'a ActivityLog,
        started: &'a [cuttle_model::task::Activity],
        canceled_before: bool,
        error_so_far: Option<&'a str>,
    ) -> StepEnd {
        let previous = self.previous_node.as_deref().unwrap_or("another node");
        let on_agents = started.iter().all(|run| {
            self.attached
                .values()
                .any(|(attached, _)| attached.id == run.id)
        });
        if on_agents {
            activity.info(format!(
                "The server node {previous} stopped while this step ran; its scripts on \
                 agents are re-attached by their command ids"
            ));
            return self
                .run_step(step, activity, canceled_before, error_so_far, 1)
                .await;
        }
        for run in started {
            if matches!(
                run.status,
                ActivityStatus::Running | ActivityStatus::Pending
            ) {
                let on = self.log.reopen(run.clone());
                on.error(if run.name.starts_with(BUILT_IN_WORKER) {
                    format!(
                        "The server node {previous} stopped while this script ran on its \
                         {BUILT_IN_WORKER}, so the script stopped with it"
                    )
                } else {
                    format!(
                        "The server node {previous} stopped while this script ran on {}; \
                         a script already started on an agent is not re-attached, so it is \
                         counted as failed (it may have finished on the agent)",
                        run.name
                    )
                });
                on.finish(ActivityStatus::Failed).await;
            }
        }
        let why = format!("the server node {previous} stopped while the step ran");
        activity.error(format!("The step '{}' failed: {why}", step.name));
        if canceled_before || self.cancel.is_cancelled() {
            activity.finish(ActivityStatus::Canceled).await;
            return StepEnd {
                failures: vec![],
                canceled: true,
            };
        }
        let failed = |activity: &'a ActivityLog| async move {
            activity.finish(ActivityStatus::Failed).await;
            StepEnd {
                failures: vec![format!("The step '{}' failed: {why}", step.name)],
                canceled: false,
            }
        };
        if !self.loaded.deployment.use_guided_failure {
            return failed(activity).await;
        }
        let asking = Asking {
            store: &self.ctx.store,
            hub: &self.ctx.interventions,
            task: self.task,
            deployment: &self.loaded.deployment,
            cancel: self.cancel,
            lease: self.log.lease(),
        };
        let action = step
            .actions
            .first()
            .map(|a| a.action.name.as_str())
            .unwrap_or(step.name.as_str());
        let reason = format!("the server node {previous} stopped while it ran");
        match asking.guidance(activity, &step.name, action, &reason).await {
            Answer::Decided {
                decision: Decision::Retry,
                ..
            } => {
                // Attempts go on from those the dead node began, so an
                // agent never sees a command id twice.
                let first_attempt = started.len() + 1;
                self.run_step(step, activity, false, error_so_far, first_attempt)
                    .await
            }
            Answer::Decided {
                decision: Decision::Ignore,
                ..
            } => {
                activity.log(
                    LogCategory::Warning,
                    format!(
                        "The failure of '{}' was ignored; the deployment carries on",
                        step.name
                    ),
                );
                activity.finish(ActivityStatus::SuccessWithWarning).await;
                StepEnd {
                    failures: vec![],
                    canceled: false,
                }
            }
            Answer::Canceled => {
                activity.finish(ActivityStatus::Canceled).await;
                StepEnd {
                    failures: vec![],
                    canceled: true,
                }
            }
            _ => failed(activity).await,
        }
    }
}

impl<'a> StepScope<'a> {
    /// A worker lent by the host, for a step that would run on the built-in
    /// worker of an instance without one; why not, to log and fail with.
    ///
    /// `None` when the task was canceled while the loan waited for a worker.
    async fn borrow_worker(
        &self,
        activity: &ActivityLog,
    ) -> Option<Result<crate::hosted_workers::Lent, String>> {
        let no_worker = |more: &str| {
            let mut why = crate::sandbox::NO_BUILT_IN_WORKER.to_owned();
            if let Some(c) = why.get_mut(..1) {
                c.make_ascii_uppercase();
            }
            format!("{why}{more}")
        };
        let Some(lender) = &self.ctx.hosted_workers else {
            return Some(Err(no_worker(" (the host offers no hosted workers)")));
        };
        let Some(thumbprint) = self
            .ctx
            .agents
            .as_ref()
            .map(|a| a.identity().thumbprint().to_string())
        else {
            return Some(Err(no_worker(
                " (this instance has no certificate for workers)",
            )));
        };
        let waiting = |why: String| activity.info(why);
        let lent = lender.lend(
            &self.ctx.store,
            &self.loaded.deployment.space_id,
            &thumbprint,
            &waiting,
        );
        // A cancel ends the wait for a worker: the loan's future is dropped.
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            lent = lent => Some(lent.map_err(|e| no_worker(&format!("; and {e}")))),
        }
    }

    /// Runs one step (its condition, then its actions in order), writing
    /// under `activity`. `error_so_far` is what failed before its group.
    async fn run_step(
        &'a self,
        step: &'a PlannedStep,
        activity: &'a ActivityLog,
        canceled_before: bool,
        error_so_far: Option<&'a str>,
        first_attempt: usize,
    ) -> StepEnd {
        let mut failures = vec![];
        let mut canceled = false;
        if canceled_before || self.cancel.is_cancelled() {
            activity.finish(ActivityStatus::Canceled).await;
            return StepEnd {
                failures,
                canceled: true,
            };
        }
        let source_step = step_of(&self.loaded.process, step.number);
        if step.condition == "Variable" {
            let expression = source_step
                .and_then(|s| s.property(PROP_CONDITION_EXPRESSION))
                .unwrap_or_default();
            let dict = self.vars.for_deployment(error_so_far);
            match cuttle_vars::evaluate_truthy(&expression, &dict) {
                Ok(true) => {}
                Ok(false) => {
                    activity.info(format!(
                        "Skipped: the run condition {expression} is not true"
                    ));
                    activity.finish(ActivityStatus::Skipped).await;
                    return StepEnd { failures, canceled };
                }
                Err(e) => {
                    activity.error(format!("The run condition could not be evaluated: {e}"));
                    activity.finish(ActivityStatus::Failed).await;
                    failures.push(format!(
                        "The step '{}' failed: its run condition is invalid",
                        step.name
                    ));
                    return StepEnd { failures, canceled };
                }
            }
        } else if !condition_allows(&step.condition, error_so_far.is_some()) {
            activity.info(match step.condition.as_str() {
                "Failure" => "Skipped: this step runs only when an earlier step failed",
                _ => "Skipped: an earlier step failed",
            });
            activity.finish(ActivityStatus::Skipped).await;
            return StepEnd { failures, canceled };
        }
        if !step.runs_anything() {
            for a in &step.actions {
                if let Some(reason) = &a.skip {
                    log_skip(activity, &a.action.name, reason);
                }
            }
            activity.finish(ActivityStatus::Skipped).await;
            return StepEnd { failures, canceled };
        }
        activity.start().await;
        let mut step_failed = false;
        let mut step_ignored = false;
        for (i, planned) in step.actions.iter().enumerate() {
            if let Some(reason) = &planned.skip {
                log_skip(activity, &planned.action.name, reason);
                continue;
            }
            let package = if planned.action.action_type == PACKAGE_ACTION_TYPE
                || crate::deploy_package::script_from_package(&planned.action)
            {
                match crate::deploy_package::resolve(
                    &self.ctx.store,
                    &self.ctx.packages,
                    &self.loaded.release,
                    &planned.action,
                )
                .await
                {
                    Ok(p) => Some(p),
                    Err(why) => {
                        activity.error(&why);
                        failures.push(format!("The step '{}' failed: {why}", step.name));
                        step_failed = true;
                        continue;
                    }
                }
            } else {
                None
            };
            let placement = Placement {
                step: source_step.cloned().unwrap_or_default(),
                number: step.number,
                error_so_far,
                environment: self.loaded.environment.name.clone(),
                package,
            };
            let dir = self
                .work_dir
                .join(format!("step-{}-action-{}", step.number, i + 1));
            let run = |runs_on| ActionRun {
                ctx: self.ctx,
                log: self.log,
                step_activity: activity,
                step_name: &step.name,
                action: &planned.action,
                placement: &placement,
                runs_on,
                dir: dir.clone(),
                asking: Asking {
                    store: &self.ctx.store,
                    hub: &self.ctx.interventions,
                    task: self.task,
                    deployment: &self.loaded.deployment,
                    cancel: self.cancel,
                    lease: self.log.lease(),
                },
                guided: self.loaded.deployment.use_guided_failure,
                first_attempt,
                attached: &self.attached,
            };
            let outcomes = match &planned.placement {
                Where::Worker => {
                    let spread = self.task.id.bytes().map(usize::from).sum::<usize>();
                    let chosen = crate::worker_choice::choose(
                        &self.ctx.store,
                        &self.loaded.deployment.space_id,
                        &planned.action,
                        spread,
                    )
                    .await;
                    // Without a built-in worker, the host lends one; the
                    // loan is held until the step is done with it.
                    let lent = match &chosen {
                        Ok(WorkerChoice::BuiltIn) if self.ctx.sandbox.is_off() => {
                            Some(self.borrow_worker(activity).await)
                        }
                        _ => None,
                    };
                    match &chosen {
                        Ok(WorkerChoice::BuiltIn) if lent.is_some() => match &lent {
                            Some(None) => {
                                activity.info("Canceled while waiting for a hosted worker");
                                vec![ActionOutcome::Canceled]
                            }
                            Some(Some(Ok(lent))) => {
                                activity.info(format!(
                                    "Running on the hosted worker {}",
                                    lent.worker.name
                                ));
                                vec![run(RunsOn::Worker(&lent.worker)).run(self.vars).await]
                            }
                            Some(Some(Err(why))) => {
                                activity.error(why);
                                vec![ActionOutcome::Failed(why.clone())]
                            }
                            None => vec![],
                        },
                        Ok(WorkerChoice::BuiltIn) => {
                            vec![run(RunsOn::BuiltInWorker).run(self.vars).await]
                        }
                        Ok(WorkerChoice::Worker(w)) => {
                            vec![run(RunsOn::Worker(w)).run(self.vars).await]
                        }
                        Err(why) => {
                            activity.error(why);
                            vec![ActionOutcome::Failed(why.clone())]
                        }
                    }
                }
                Where::Targets(targets) => {
                    // A rolling deployment: at most this many targets at once.
                    let window = step.max_parallelism.unwrap_or(targets.len()).max(1);
                    let machines: Vec<&Machine> = targets
                        .iter()
                        .filter_map(|t| self.loaded.targets.iter().find(|m| m.id == t.id))
                        .collect();
                    let machines = match self.available(machines, activity).await {
                        Ok(m) => m,
                        Err(Unavailable::Canceled) => {
                            canceled = true;
                            break;
                        }
                        Err(Unavailable::Failed(why)) => {
                            activity.error(&why);
                            failures.push(format!("The step '{}' failed: {why}", step.name));
                            step_failed = true;
                            continue;
                        }
                    };
                    let runs: Vec<_> = machines
                        .into_iter()
                        .map(|m| run(RunsOn::Target(m)))
                        .collect();
                    // Boxed and collected first: a lazy iterator's closure
                    // held across the await makes the task's future !Send.
                    let mut pending: Vec<futures::future::BoxFuture<'_, ActionOutcome>> =
                        Vec::with_capacity(runs.len());
                    for r in &runs {
                        pending.push(Box::pin(r.run(self.vars)));
                    }
                    futures::stream::iter(pending)
                        .buffered(window)
                        .collect::<Vec<_>>()
                        .await
                }
            };
            for outcome in outcomes {
                match outcome {
                    ActionOutcome::Succeeded => {}
                    ActionOutcome::Ignored => step_ignored = true,
                    ActionOutcome::Canceled => canceled = true,
                    ActionOutcome::Failed(message) => {
                        failures.push(format!("The step '{}' failed: {message}", step.name));
                        step_failed = true;
                    }
                }
            }
            if canceled {
                break;
            }
        }
        let status = if canceled {
            ActivityStatus::Canceled
        } else if step_failed {
            ActivityStatus::Failed
        } else if step_ignored {
            ActivityStatus::SuccessWithWarning
        } else {
            ActivityStatus::Success
        };
        activity.finish(status).await;
        StepEnd { failures, canceled }
    }
}

/// Why a step does not run on its targets.
enum Unavailable {
    Failed(String),
    Canceled,
}

impl StepScope<'_> {
    /// The targets to run on: an unavailable one (as its last health check
    /// found) fails the step at once, naming it, and so does a polling
    /// target whose agent does not connect within its policy's connect
    /// timeout; unless the project skips unavailable machines, in which
    /// case they are left out with a warning.
    async fn available<'m>(
        &self,
        machines: Vec<&'m Machine>,
        activity: &ActivityLog,
    ) -> Result<Vec<&'m Machine>, Unavailable> {
        let policy = &self.loaded.project.project_connectivity_policy;
        let skip = policy
            .skip_machine_behavior
            .eq_ignore_ascii_case("SkipUnavailableMachines")
            || policy.exclude_unhealthy_targets;
        let (down, up): (Vec<&Machine>, Vec<&Machine>) = machines.into_iter().partition(|m| {
            matches!(
                m.health_status,
                HealthStatus::Unavailable | HealthStatus::Unhealthy
            )
        });
        if !down.is_empty() {
            let described: Vec<String> = down
                .iter()
                .map(|m| format!("{} ({:?}: {})", m.name, m.health_status, m.status_summary))
                .collect();
            if !skip {
                return Err(Unavailable::Failed(format!(
                    "the deployment target{} {} {} unavailable; check {}, or exclude {} from the deployment",
                    if down.len() == 1 { "" } else { "s" },
                    described.join(", "),
                    if down.len() == 1 { "is" } else { "are" },
                    if down.len() == 1 { "its health" } else { "their health" },
                    if down.len() == 1 { "it" } else { "them" },
                )));
            }
            activity.log(
                LogCategory::Warning,
                format!(
                    "Skipping unavailable deployment targets, as the project asks: {}",
                    described.join(", ")
                ),
            );
        }
        let Some(agents) = &self.ctx.agents else {
            // Running on them says why no agent can be reached.
            return Ok(up);
        };
        let away =
            crate::polling_wait::not_connected(agents, &self.ctx.store, &up, activity, self.cancel)
                .await
                .map_err(|_| Unavailable::Canceled)?;
        if away.is_empty() {
            return Ok(up);
        }
        if !skip {
            let reasons: Vec<String> = away.iter().map(|a| a.describe()).collect();
            return Err(Unavailable::Failed(reasons.join("; ")));
        }
        for a in &away {
            activity.log(
                LogCategory::Warning,
                format!(
                    "{}; the machine was skipped, as the project skips unavailable machines",
                    a.describe()
                ),
            );
        }
        Ok(up
            .into_iter()
            .filter(|m| !away.iter().any(|a| a.machine.id == m.id))
            .collect())
    }
}

/// How one action of a step ended.
enum ActionOutcome {
    Succeeded,
    /// It failed, and someone chose (guided failure) to carry on regardless.
    Ignored,
    Failed(String),
    Canceled,
}

/// One action of a step, with what it needs to run and to ask for help.
struct ActionRun<'a> {
    ctx: &'a DeployContext,
    log: &'a TaskLog,
    step_activity: &'a ActivityLog,
    step_name: &'a str,
    action: &'a Action,
    placement: &'a Placement<'a>,
    runs_on: RunsOn<'a>,
    dir: PathBuf,
    asking: Asking<'a>,
    /// Guided failure: a failure asks a person instead of failing the step.
    guided: bool,
    /// The number of the first attempt (above 1 when a node taking the
    /// task over retries a step the dead node had begun).
    first_attempt: usize,
    /// Scripts an earlier holder of the task started on agents.
    attached: &'a Attached,
}

impl ActionRun<'_> {
    async fn run(&self, vars: &SharedVariables) -> ActionOutcome {
        if self.action.action_type == MANUAL_ACTION_TYPE {
            return self.manual(vars).await;
        }
        let mut attempt = self.first_attempt.max(1);
        let machine = self.runs_on.name();
        loop {
            let (name, dir) = if attempt == 1 {
                (machine.to_owned(), self.dir.clone())
            } else {
                // A retry gets a clean working directory of its own.
                let mut dir = self.dir.clone().into_os_string();
                dir.push(format!("-attempt-{attempt}"));
                (format!("{machine} (attempt {attempt})"), PathBuf::from(dir))
            };
            let command_id = format!(
                "{}.step-{}.{}.{}.attempt-{attempt}",
                self.asking.task.id,
                self.placement.number,
                self.action.id,
                self.runs_on.id()
            );
            // Begun by the node this task was taken over from: re-attached
            // while it runs, its end taken as it is once it ended.
            let (target, resume_from) = match self.attached.get(&command_id) {
                Some((run, next)) => (self.log.reopen(run.clone()), Some((run.status, *next))),
                None => {
                    let target = self.log.activity(Some(self.step_activity), &name).await;
                    target.start().await;
                    (target, None)
                }
            };
            let result = match resume_from {
                Some((ActivityStatus::Success | ActivityStatus::SuccessWithWarning, _)) => {
                    return ActionOutcome::Succeeded
                }
                Some((ActivityStatus::Canceled, _)) => return ActionOutcome::Canceled,
                Some((ActivityStatus::Failed, _)) => {
                    let retried = command_id
                        .strip_suffix(&format!("attempt-{attempt}"))
                        .map(|stem| format!("{stem}attempt-{}", attempt + 1))
                        .is_some_and(|next| self.attached.contains_key(&next));
                    if retried {
                        // Someone already asked for a retry there.
                        attempt += 1;
                        continue;
                    }
                    Err(ActionError::Failed(format!(
                        "The script on {machine} failed on the server node that stopped"
                    )))
                }
                _ => {
                    run_action(
                        self.ctx,
                        self.action,
                        self.placement,
                        ActionSite {
                            runs_on: &self.runs_on,
                            dir,
                            command_id,
                            package: self.placement.package.as_ref(),
                            resume_from: resume_from.map(|(_, next)| next),
                        },
                        vars,
                        &target,
                        self.asking.cancel.clone(),
                    )
                    .await
                }
            };
            let finished_there = matches!(resume_from, Some((ActivityStatus::Failed, _)));
            let message = match result {
                Ok(()) => {
                    target.finish(ActivityStatus::Success).await;
                    return ActionOutcome::Succeeded;
                }
                Err(ActionError::Canceled) => {
                    target.error(
                        "The task was cancelled; the script and its child processes were stopped",
                    );
                    target.finish(ActivityStatus::Canceled).await;
                    return ActionOutcome::Canceled;
                }
                Err(ActionError::Failed(message)) if finished_there => message,
                Err(ActionError::Failed(message)) => {
                    target.error(&message);
                    target.finish(ActivityStatus::Failed).await;
                    message
                }
            };
            if !self.guided {
                return ActionOutcome::Failed(message);
            }
            let answer = self
                .asking
                .guidance(
                    self.step_activity,
                    self.step_name,
                    &self.action.name,
                    &message,
                )
                .await;
            match answer {
                Answer::Decided {
                    decision: Decision::Retry,
                    ..
                } => attempt += 1,
                Answer::Decided {
                    decision: Decision::Ignore,
                    ..
                } => {
                    self.step_activity.log(
                        LogCategory::Warning,
                        format!(
                            "The failure of '{}' was ignored; the deployment carries on",
                            self.action.name
                        ),
                    );
                    return ActionOutcome::Ignored;
                }
                Answer::Decided { .. } => return ActionOutcome::Failed(message),
                Answer::Canceled => return ActionOutcome::Canceled,
                Answer::Failed(why) => return ActionOutcome::Failed(format!("{message}; {why}")),
            }
        }
    }

    /// A manual intervention: its instructions are a template, like scripts.
    async fn manual(&self, vars: &SharedVariables) -> ActionOutcome {
        let template = self
            .action
            .property(PROP_MANUAL_INSTRUCTIONS)
            .unwrap_or_default();
        let dict = vars.for_action(
            &self.placement.step,
            self.placement.number,
            self.action,
            self.runs_on.name(),
            self.placement.error_so_far,
        );
        let instructions = cuttle_vars::render(&template, &dict)
            .ok()
            .and_then(|r| r.text)
            .unwrap_or(template);
        let answer = self
            .asking
            .manual(
                self.step_activity,
                self.step_name,
                self.action,
                &instructions,
            )
            .await;
        match answer {
            Answer::Decided {
                decision,
                notes,
                by,
                username,
            } => {
                let approved = decision == Decision::Proceed;
                record_manual_outputs(
                    vars,
                    &self.action.name,
                    approved,
                    notes.as_deref(),
                    by.as_ref(),
                    &username,
                );
                if approved {
                    ActionOutcome::Succeeded
                } else {
                    ActionOutcome::Failed(format!(
                        "the manual intervention was aborted by {username}{}",
                        notes.map(|n| format!(": {n}")).unwrap_or_default()
                    ))
                }
            }
            Answer::Canceled => ActionOutcome::Canceled,
            Answer::Failed(why) => ActionOutcome::Failed(why),
        }
    }
}

/// Says why an action does not run; a step that finds no targets is worth a
/// warning, since it usually means a role is misspelt or no agent is there.
fn log_skip(activity: &ActivityLog, action: &str, reason: &SkipReason) {
    let category = match reason {
        SkipReason::NoTargets { .. } => LogCategory::Warning,
        _ => LogCategory::Info,
    };
    activity.log(
        category,
        format!("Skipped '{action}': {}", reason.describe()),
    );
}

/// The timeout an action asks for, else the server's default.
fn timeout_of(action: &Action, default: Duration) -> Duration {
    let secs = action
        .property(PROP_TIMEOUT_SECONDS)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            action
                .property(PROP_TIMEOUT_MINUTES)
                .and_then(|m| m.trim().parse::<u64>().ok())
                .map(|m| m * 60)
        })
        .filter(|s| *s > 0);
    secs.map(Duration::from_secs).unwrap_or(default)
}

/// The process step with this 1-based number.
fn step_of(process: &ProcessSnapshot, number: usize) -> Option<&Step> {
    process.0.steps.get(number.checked_sub(1)?)
}

/// Which step an action belongs to, and what failed before it.
struct Placement<'a> {
    step: Step,
    number: usize,
    error_so_far: Option<&'a str>,
    /// The environment's name, where packages are installed under.
    environment: String,
    /// The package the action deploys, resolved once for all its targets.
    package: Option<crate::deploy_package::ResolvedPackage>,
}

/// The machine one run of an action happens on.
#[derive(Clone, Copy)]
enum RunsOn<'a> {
    BuiltInWorker,
    Target(&'a Machine),
    Worker(&'a Worker),
}

impl RunsOn<'_> {
    fn name(&self) -> &str {
        match self {
            RunsOn::BuiltInWorker => BUILT_IN_WORKER,
            RunsOn::Target(m) => &m.name,
            RunsOn::Worker(w) => &w.name,
        }
    }

    /// Part of a command id: unique per machine, and path-safe.
    fn id(&self) -> &str {
        match self {
            RunsOn::BuiltInWorker => "built-in",
            RunsOn::Target(m) => &m.id,
            RunsOn::Worker(w) => &w.id,
        }
    }

    /// The agent it runs on; `None` for the built-in worker.
    fn agent(&self) -> Option<AgentTarget<'_>> {
        match self {
            RunsOn::BuiltInWorker => None,
            RunsOn::Target(m) => Some(AgentTarget {
                name: &m.name,
                endpoint: &m.endpoint,
                machine_policy_id: &m.machine_policy_id,
            }),
            RunsOn::Worker(w) => Some(AgentTarget {
                name: &w.name,
                endpoint: &w.endpoint,
                machine_policy_id: &w.machine_policy_id,
            }),
        }
    }
}

/// Where one run of an action happens: the machine, the working directory
/// on the built-in worker, and the command id an agent knows it by (the same
/// id is never run twice by an agent).
struct ActionSite<'a> {
    runs_on: &'a RunsOn<'a>,
    dir: PathBuf,
    command_id: String,
    /// The package a "Deploy a package" action deploys.
    package: Option<&'a crate::deploy_package::ResolvedPackage>,
    /// Re-attaching to a script an earlier holder of the task started: how
    /// many of its lines the log holds.
    resume_from: Option<u64>,
}

/// What starts a service message line.
const SERVICE_MESSAGE: &str = "##octopus[";
/// The longest service message gathered from the pieces of a cut line.
const MAX_SERVICE_MESSAGE: usize = 16 << 20;

/// A service message being read from the pieces of a line too long to be
/// delivered whole.
enum Gather {
    Idle,
    Message(String),
    /// Too long to read: the rest of its pieces are dropped.
    TooLong,
}

async fn run_action(
    ctx: &DeployContext,
    action: &Action,
    placement: &Placement<'_>,
    site: ActionSite<'_>,
    vars: &SharedVariables,
    target: &ActivityLog,
    cancel: CancellationToken,
) -> Result<(), ActionError> {
    let machine = site.runs_on.name();
    let dict = vars.for_action(
        &placement.step,
        placement.number,
        action,
        machine,
        placement.error_so_far,
    );
    let (syntax, syntax_name, body, package) = if action.action_type == PACKAGE_ACTION_TYPE {
        let Some(resolved) = site.package else {
            return Err(ActionError::Failed(format!(
                "The action '{}' has no package to deploy",
                action.name
            )));
        };
        let step = crate::deploy_package::step(action, resolved, &placement.environment, &dict);
        (
            Syntax::Bash,
            "package".to_owned(),
            String::new(),
            Some(step),
        )
    } else if action.action_type == SCRIPT_ACTION_TYPE
        && crate::deploy_package::script_from_package(action)
    {
        let Some(resolved) = site.package else {
            return Err(ActionError::Failed(format!(
                "The action '{}' names no package to take its script from",
                action.name
            )));
        };
        let step =
            crate::deploy_package::script_step(action, resolved).map_err(ActionError::Failed)?;
        (Syntax::Bash, "Bash".to_owned(), String::new(), Some(step))
    } else if action.action_type == SCRIPT_ACTION_TYPE {
        let (syntax, syntax_name, body) = script_of(action, &dict, target)?;
        (syntax, syntax_name, body, None)
    } else {
        return Err(ActionError::Failed(format!(
            "The action type '{}' is not supported by this server",
            action.action_type
        )));
    };
    let timeout = timeout_of(action, ctx.default_timeout);
    // Said once, when the run began.
    if site.resume_from.is_none() {
        target.verbose(if package.is_some() {
            format!(
                "Deploying a package with a timeout of {} seconds",
                timeout.as_secs()
            )
        } else {
            format!(
                "Running a {syntax_name} script with a timeout of {} seconds",
                timeout.as_secs()
            )
        });
    }
    let bootstrap = match syntax {
        Syntax::Bash => BASH_BOOTSTRAP,
        Syntax::Python => PYTHON_BOOTSTRAP,
    }
    .to_owned();
    let files = vec![(VARIABLES_FILE.to_owned(), variables_file(&dict))];
    let mut outputs = Outputs::default();
    let (mut masker, mut secrets) = vars.masking();
    // A line too long to keep whole comes in pieces; each stream's pieces
    // are masked together, so a secret across a cut is still found.
    let mut pieces = [PieceMasker::default(), PieceMasker::default()];
    let piece_of = |stream: OutputStream| match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    };
    let show = |target: &ActivityLog, stream: OutputStream, text: String| match stream {
        OutputStream::Stdout => target.info(text),
        OutputStream::Stderr => target.error(text),
    };
    let mut gathering = Gather::Idle;
    // Replayed lines (re-attaching after a takeover) were shown already:
    // read for their output variables and masking only.
    let mut on_line = |stream: OutputStream, line: OutputLine, replayed: bool| {
        let pieces = &mut pieces[piece_of(stream)];
        // Service messages are lines of their own. One longer than a piece
        // (a large output variable) is gathered whole before it is read, and
        // none of it is shown: it carries the value.
        let message = match (stream, std::mem::replace(&mut gathering, Gather::Idle)) {
            (OutputStream::Stderr, _) => None,
            (_, Gather::TooLong) => {
                if line.continues {
                    gathering = Gather::TooLong;
                }
                return;
            }
            (_, Gather::Message(mut text)) => {
                text.push_str(&line.text);
                Some(text)
            }
            (_, Gather::Idle) if !pieces.mid_line() && line.text.starts_with(SERVICE_MESSAGE) => {
                Some(line.text.clone())
            }
            (_, Gather::Idle) => None,
        };
        if let Some(text) = message {
            if line.continues {
                gathering = if text.len() > MAX_SERVICE_MESSAGE {
                    if !replayed {
                        target.log(
                            LogCategory::Warning,
                            format!(
                                "A service message longer than {} MiB was ignored",
                                MAX_SERVICE_MESSAGE >> 20
                            ),
                        );
                    }
                    Gather::TooLong
                } else {
                    Gather::Message(text)
                };
                return;
            }
            match parse_service_message(&text) {
                Some(Ok(ServiceMessage::SetVariable {
                    name,
                    value,
                    sensitive,
                })) => {
                    if !outputs.set(&name, &value, sensitive) {
                        if !outputs.warned && !replayed {
                            outputs.warned = true;
                            target.log(
                                LogCategory::Warning,
                                format!(
                                    "Output variable {name} and any after it were ignored: \
                                     an action keeps at most {MAX_OUTPUTS} output variables \
                                     of {} MiB in all",
                                    MAX_OUTPUT_BYTES >> 20
                                ),
                            );
                        }
                        return;
                    }
                    if sensitive && !value.is_empty() {
                        // Mask it from the next line on, as later steps will,
                        // and everywhere the task's log masks.
                        secrets.push(value.clone());
                        masker = cuttle_vars::mask::Masker::new(secrets.iter().cloned());
                        target.add_secrets([value.clone()]);
                    }
                    if !replayed {
                        target.verbose(format!("Output variable {name} was set"));
                    }
                    return;
                }
                Some(Ok(ServiceMessage::Progress {
                    percentage,
                    message,
                })) => {
                    if replayed {
                        return;
                    }
                    let message = message.map(|m| masker.mask_line(&m).into_owned());
                    if let Some(m) = &message {
                        target.verbose(format!("Progress {percentage}%: {m}"));
                    }
                    target.progress(percentage, message);
                    return;
                }
                Some(Err(why)) => {
                    if replayed {
                        return;
                    }
                    target.log(
                        LogCategory::Warning,
                        format!("A service message was ignored: {why}"),
                    );
                    return;
                }
                None => {}
            }
            if text.len() != line.text.len() {
                // Gathered, yet not a service message after all: shown as
                // the pieces it came in would have been, masked whole.
                if !replayed {
                    show(target, stream, masker.mask_line(&text).into_owned());
                }
                return;
            }
        }
        if let Some(shown) = pieces.piece(&masker, &line.text, line.continues) {
            if !replayed {
                show(target, stream, shown);
            }
        }
    };
    let result = match site.runs_on.agent() {
        None if package.as_ref().is_some_and(|p| p.script_file.is_empty()) => {
            return Err(ActionError::Failed(
                "A package is deployed to deployment targets: give the step a target role".into(),
            ))
        }
        None => {
            let body = match (&package, site.package) {
                // A script from a package: extracted here, run from there.
                (Some(step), Some(resolved)) => {
                    let dir = site.dir.join("package");
                    crate::package_step::extract_for_script(&resolved.path, step, &dir)
                        .await
                        .map_err(ActionError::Failed)?;
                    crate::package_step::script_body(&dir, &step.script_file)
                }
                _ => body,
            };
            let spec = ScriptSpec {
                syntax,
                body,
                work_dir: site.dir,
                env: vec![],
                timeout,
                bootstrap: Some(bootstrap),
                files,
                sandbox: ctx.sandbox.clone(),
            };
            run_script_paced(
                spec,
                cancel,
                |stream, line| on_line(stream, line, false),
                || target.room(),
            )
            .await
            .map_err(|e| e.to_string())
        }
        Some(agent) => {
            let Some(agents) = &ctx.agents else {
                return Err(ActionError::Failed(
                    "This server has no TLS identity, so it cannot reach agents".into(),
                ));
            };
            // Read once: the connection limits and the package retention.
            let policy = crate::remote::policy_of(&ctx.store, agent.machine_policy_id).await;
            let mut package = package;
            if let Some(p) = package.as_mut() {
                p.versions_to_keep = policy
                    .machine_package_cache_retention_policy
                    .versions_to_keep();
            }
            let start = StartScript {
                id: site.command_id,
                syntax: match syntax {
                    Syntax::Bash => ScriptSyntax::Bash,
                    Syntax::Python => ScriptSyntax::Python,
                },
                body,
                bootstrap: Some(bootstrap),
                files: files
                    .into_iter()
                    .map(|(name, content)| ScriptFile { name, content })
                    .collect(),
                timeout_seconds: timeout.as_secs(),
                package,
            };
            let limits = ConnectionLimits::of(&policy);
            // Recorded before anything reaches the agent, so a node taking
            // the task over re-attaches to this run rather than failing it.
            let lease = target.task_log().lease();
            if let (Some(lease), None) = (lease, site.resume_from) {
                // Its run's activity first, which the record names.
                target.flush().await;
                match ctx
                    .store
                    .record_agent_command(lease, &start.id, &target.id)
                    .await
                {
                    Ok(()) => {}
                    Err(cuttle_store::StoreError::LeaseLost { .. }) => {
                        target.task_log().lose();
                        return Err(ActionError::Canceled);
                    }
                    Err(e) => {
                        return Err(ActionError::Failed(format!(
                            "The script could not be recorded before it started: {e}"
                        )))
                    }
                }
            }
            let command_id = start.id.clone();
            let marking = lease.is_some();
            if let Some(resolved) = site.package {
                crate::deploy_package::deliver(agents, &agent, limits, resolved, target)
                    .await
                    .map_err(ActionError::Failed)?;
            }
            run_on_agent(
                agents,
                &agent,
                limits,
                start,
                cancel,
                site.resume_from.unwrap_or(0),
                &mut on_line,
                |batch| match batch {
                    _ if !marking => {}
                    crate::remote::Batch::Start => target.task_log().hold(),
                    crate::remote::Batch::End { next } => target.task_log().mark(&command_id, next),
                },
                || target.room(),
            )
            .await
        }
    };
    // Output that ended in the middle of a cut line.
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        if let Some(rest) = pieces[piece_of(stream)].finish(&masker) {
            show(target, stream, rest);
        }
    }
    for (name, value, sensitive) in outputs.kept {
        vars.record_output(&action.name, machine, &name, &value, sensitive);
    }
    match result {
        Ok(ScriptOutcome::Exited(0)) => Ok(()),
        Ok(ScriptOutcome::Exited(code)) => Err(ActionError::Failed(format!(
            "The {syntax_name} script exited with code {code}"
        ))),
        Ok(ScriptOutcome::Killed { signal }) => Err(ActionError::Failed(format!(
            "The {syntax_name} script was killed by signal {signal}"
        ))),
        Ok(ScriptOutcome::TimedOut) => Err(ActionError::Failed(format!(
            "The script ran past its timeout of {} seconds and was killed, with its child processes",
            timeout.as_secs()
        ))),
        Ok(ScriptOutcome::Canceled) => Err(ActionError::Canceled),
        Err(e) => Err(ActionError::Failed(e)),
    }
}

/// The most output variables one run of an action keeps, and their names
/// and values' most bytes in all. A script, or an agent speaking for it,
/// can print `setVariable` without end, and each is held until the action
/// ends; real uses set a few short values.
const MAX_OUTPUTS: usize = 1_000;
const MAX_OUTPUT_BYTES: usize = 4 << 20;

/// The output variables one run of an action sets, in order, within
/// [`MAX_OUTPUTS`] and [`MAX_OUTPUT_BYTES`]; a name set again replaces its
/// value (the last one wins, as it would when recorded).
#[derive(Default)]
struct Outputs {
    kept: Vec<(String, String, bool)>,
    bytes: usize,
    /// Whether the log has said that some were ignored.
    warned: bool,
}

impl Outputs {
    /// Keeps the variable; false, keeping nothing, past the limits.
    fn set(&mut self, name: &str, value: &str, sensitive: bool) -> bool {
        let earlier = self.kept.iter().position(|(n, _, _)| n == name);
        let freed = earlier.map_or(0, |i| self.kept[i].0.len() + self.kept[i].1.len());
        let bytes = self.bytes - freed + name.len() + value.len();
        if bytes > MAX_OUTPUT_BYTES || (earlier.is_none() && self.kept.len() >= MAX_OUTPUTS) {
            return false;
        }
        self.bytes = bytes;
        let entry = (name.to_owned(), value.to_owned(), sensitive);
        match earlier {
            Some(i) => self.kept[i] = entry,
            None => self.kept.push(entry),
        }
        true
    }
}

/// A script action's syntax and body, rendered with the step's variables.
fn script_of(
    action: &Action,
    dict: &cuttle_vars::VariableDictionary,
    target: &ActivityLog,
) -> Result<(Syntax, String, String), ActionError> {
    let source = action
        .property(PROP_SCRIPT_SOURCE)
        .unwrap_or_else(|| "Inline".into());
    if !source.eq_ignore_ascii_case("Inline") {
        return Err(ActionError::Failed(format!(
            "Scripts from the source '{source}' are not supported yet; use an inline script"
        )));
    }
    let syntax_name = action
        .property(PROP_SCRIPT_SYNTAX)
        .unwrap_or_else(|| "Bash".into());
    let syntax = match Syntax::parse(&syntax_name) {
        Some(s) => s,
        None if syntax_name.eq_ignore_ascii_case("PowerShell") => {
            return Err(ActionError::Failed(
                "PowerShell scripts need pwsh, which the built-in worker does not have".into(),
            ))
        }
        None => {
            return Err(ActionError::Failed(format!(
                "The script syntax '{syntax_name}' is not supported; use Bash or Python"
            )))
        }
    };
    let template = action.property(PROP_SCRIPT_BODY).unwrap_or_default();
    if template.trim().is_empty() {
        return Err(ActionError::Failed(format!(
            "The action '{}' has no script body",
            action.name
        )));
    }
    // The body is a template: `#{…}` is substituted before the script runs.
    let rendered = cuttle_vars::render(&template, dict)
        .map_err(|e| ActionError::Failed(format!("The script body could not be rendered: {e}")))?;
    if let Some(e) = &rendered.parse_error {
        target.log(
            LogCategory::Warning,
            format!("The script's variable substitution could not be parsed, so the script runs as written: {e}"),
        );
    } else if !rendered.unresolved.is_empty() {
        target.verbose(format!(
            "These tokens in the script were left as written because they could not be evaluated: {}",
            rendered.unresolved.join(", ")
        ));
    }
    Ok((syntax, syntax_name, rendered.text.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_output_variables_are_bounded_in_number_and_size() {
        let mut outputs = Outputs::default();
        // A name set again replaces its value, and costs only the new one.
        for round in 0..10 {
            assert!(outputs.set("Same", &"x".repeat(MAX_OUTPUT_BYTES / 2), round % 2 == 0));
        }
        assert_eq!(outputs.kept.len(), 1);
        assert!(!outputs.set("Other", &"y".repeat(MAX_OUTPUT_BYTES / 2), false));
        assert!(outputs.set("Other", "short", false));
        assert_eq!(outputs.kept[1], ("Other".into(), "short".into(), false));
        // Past the number, new names are refused, known ones still change.
        let mut outputs = Outputs::default();
        for i in 0..MAX_OUTPUTS {
            assert!(outputs.set(&format!("V{i}"), "1", false));
        }
        assert!(!outputs.set("OneMore", "1", false));
        assert!(outputs.set("V0", "2", false));
        assert_eq!(outputs.kept.len(), MAX_OUTPUTS);
        assert_eq!(outputs.kept[0].1, "2");
    }
}
