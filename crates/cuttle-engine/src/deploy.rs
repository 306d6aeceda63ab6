//! Carrying out a deployment task: load what the release froze, plan, then
//! run each step's actions on the built-in worker, writing the activity log.

use crate::log::{ActivityLog, TaskLog};
use crate::plan::{condition_allows, plan};
use crate::script::{run_script, OutputStream, ScriptOutcome, ScriptSpec, Syntax};
use cuttle_model::process::{
    PROP_SCRIPT_BODY, PROP_SCRIPT_SOURCE, PROP_SCRIPT_SYNTAX, PROP_TIMEOUT_MINUTES,
    PROP_TIMEOUT_SECONDS, SCRIPT_ACTION_TYPE,
};
use cuttle_model::{
    Action, ActivityStatus, Deployment, Environment, LogCategory, Project, Release, ServerTask,
    TaskState,
};
use cuttle_store::{ProcessSnapshot, Store};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct DeployContext {
    pub store: Store,
    pub work_root: PathBuf,
    pub default_timeout: Duration,
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
    Ok(Loaded {
        deployment,
        release,
        project,
        environment,
        process,
    })
}

pub async fn run(
    ctx: &DeployContext,
    task: &ServerTask,
    log: &TaskLog,
    cancel: CancellationToken,
) -> Outcome {
    let root = log.activity(None, &task.description).await;
    root.start().await;
    let loaded = match load(&ctx.store, task).await {
        Ok(l) => l,
        Err(e) => {
            root.log(LogCategory::Fatal, &e);
            root.finish(ActivityStatus::Failed).await;
            return Outcome::failed(e);
        }
    };
    root.info(format!(
        "Deploying {} release {} to {}",
        loaded.project.name, loaded.release.version, loaded.environment.name
    ));

    let work_dir = ctx.work_root.join(&task.id);
    let steps = plan(
        &loaded.process.0,
        &loaded.environment.id,
        &loaded.deployment.skip_actions,
    );
    let mut failures: Vec<String> = vec![];
    let mut canceled = false;

    for step in &steps {
        let title = format!("Step {}: {}", step.number, step.name);
        let activity = log.activity(Some(&root), &title).await;
        if canceled || cancel.is_cancelled() {
            canceled = true;
            activity.finish(ActivityStatus::Canceled).await;
            continue;
        }
        if !condition_allows(&step.condition, !failures.is_empty()) {
            activity.info(match step.condition.as_str() {
                "Failure" => "Skipped: this step runs only when an earlier step failed",
                _ => "Skipped: an earlier step failed",
            });
            activity.finish(ActivityStatus::Skipped).await;
            continue;
        }
        if !step.runs_anything() {
            for a in &step.actions {
                if let Some(reason) = &a.skip {
                    activity.info(format!(
                        "Skipped '{}': {}",
                        a.action.name,
                        reason.describe()
                    ));
                }
            }
            activity.finish(ActivityStatus::Skipped).await;
            continue;
        }
        activity.start().await;
        let mut step_failed = false;
        for (i, planned) in step.actions.iter().enumerate() {
            if let Some(reason) = &planned.skip {
                activity.info(format!(
                    "Skipped '{}': {}",
                    planned.action.name,
                    reason.describe()
                ));
                continue;
            }
            let target = log.activity(Some(&activity), "Built-in worker").await;
            target.start().await;
            let dir = work_dir.join(format!("step-{}-action-{}", step.number, i + 1));
            match run_action(ctx, &planned.action, &target, dir, cancel.clone()).await {
                Ok(()) => target.finish(ActivityStatus::Success).await,
                Err(ActionError::Canceled) => {
                    target.error(
                        "The task was cancelled; the script and its child processes were stopped",
                    );
                    target.finish(ActivityStatus::Canceled).await;
                    canceled = true;
                }
                Err(ActionError::Failed(message)) => {
                    target.error(&message);
                    target.finish(ActivityStatus::Failed).await;
                    failures.push(format!("The step '{}' failed: {message}", step.name));
                    step_failed = true;
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
        } else {
            ActivityStatus::Success
        };
        activity.finish(status).await;
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

async fn run_action(
    ctx: &DeployContext,
    action: &Action,
    target: &ActivityLog,
    dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), ActionError> {
    if action.action_type != SCRIPT_ACTION_TYPE {
        return Err(ActionError::Failed(format!(
            "The action type '{}' is not supported by this server",
            action.action_type
        )));
    }
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
    let body = action.property(PROP_SCRIPT_BODY).unwrap_or_default();
    if body.trim().is_empty() {
        return Err(ActionError::Failed(format!(
            "The action '{}' has no script body",
            action.name
        )));
    }
    let timeout = timeout_of(action, ctx.default_timeout);
    target.verbose(format!(
        "Running a {syntax_name} script with a timeout of {} seconds",
        timeout.as_secs()
    ));
    let spec = ScriptSpec {
        syntax,
        body,
        work_dir: dir,
        env: vec![],
        timeout,
    };
    let on_line = |stream: OutputStream, line: String| match stream {
        OutputStream::Stdout => target.info(line),
        OutputStream::Stderr => target.error(line),
    };
    match run_script(spec, cancel, on_line).await {
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
        Err(e) => Err(ActionError::Failed(e.to_string())),
    }
}
