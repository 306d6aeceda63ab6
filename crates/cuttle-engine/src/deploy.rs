//! Carrying out a deployment task: load what the release froze, plan, then
//! run each step's actions on the built-in worker, writing the activity log.

use crate::helpers::{
    parse_service_message, variables_file, ServiceMessage, BASH_BOOTSTRAP, PYTHON_BOOTSTRAP,
    VARIABLES_FILE,
};
use crate::log::{ActivityLog, TaskLog};
use crate::plan::{condition_allows, plan};
use crate::script::{run_script, OutputStream, ScriptOutcome, ScriptSpec, Syntax};
use crate::variables::{DeploymentVariables, Sources, BUILT_IN_WORKER};
use cuttle_model::process::PROP_CONDITION_EXPRESSION;
use cuttle_model::process::{
    PROP_SCRIPT_BODY, PROP_SCRIPT_SOURCE, PROP_SCRIPT_SYNTAX, PROP_TIMEOUT_MINUTES,
    PROP_TIMEOUT_SECONDS, SCRIPT_ACTION_TYPE,
};
use cuttle_model::{
    Action, ActivityStatus, Deployment, Environment, LogCategory, Project, Release, ServerTask,
    TaskState,
};
use cuttle_model::{Channel, Space, Step};
use cuttle_store::{MasterKey, ProcessSnapshot, Store};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct DeployContext {
    pub store: Store,
    pub master_key: MasterKey,
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
    space: Option<Space>,
    channel: Option<Channel>,
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
    Ok(Loaded {
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
    let sources = Sources {
        space: loaded.space.as_ref(),
        project: &loaded.project,
        release: &loaded.release,
        deployment: &loaded.deployment,
        environment: &loaded.environment,
        channel: loaded.channel.as_ref(),
        task_id: &task.id,
    };
    let mut vars = match DeploymentVariables::load(&ctx.store, &ctx.master_key, &sources).await {
        Ok(v) => v,
        Err(e) => {
            root.log(LogCategory::Fatal, &e);
            root.finish(ActivityStatus::Failed).await;
            return Outcome::failed(e);
        }
    };

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
        let error_so_far = (!failures.is_empty()).then(|| failures.join(" "));
        let source_step = step_of(&loaded.process, step.number);
        if step.condition == "Variable" {
            let expression = source_step
                .and_then(|s| s.property(PROP_CONDITION_EXPRESSION))
                .unwrap_or_default();
            let dict = vars.for_deployment(error_so_far.as_deref());
            match cuttle_vars::evaluate_truthy(&expression, &dict) {
                Ok(true) => {}
                Ok(false) => {
                    activity.info(format!(
                        "Skipped: the run condition {expression} is not true"
                    ));
                    activity.finish(ActivityStatus::Skipped).await;
                    continue;
                }
                Err(e) => {
                    activity.error(format!("The run condition could not be evaluated: {e}"));
                    activity.finish(ActivityStatus::Failed).await;
                    failures.push(format!(
                        "The step '{}' failed: its run condition is invalid",
                        step.name
                    ));
                    continue;
                }
            }
        } else if !condition_allows(&step.condition, !failures.is_empty()) {
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
            let target = log.activity(Some(&activity), BUILT_IN_WORKER).await;
            target.start().await;
            let dir = work_dir.join(format!("step-{}-action-{}", step.number, i + 1));
            let placement = Placement {
                step: source_step.cloned().unwrap_or_default(),
                number: step.number,
                machine: BUILT_IN_WORKER,
                error_so_far: error_so_far.as_deref(),
            };
            match run_action(
                ctx,
                &planned.action,
                &placement,
                &mut vars,
                &target,
                dir,
                cancel.clone(),
            )
            .await
            {
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

/// The process step with this 1-based number.
fn step_of(process: &ProcessSnapshot, number: usize) -> Option<&Step> {
    process.0.steps.get(number.checked_sub(1)?)
}

/// Where an action runs: its step, and the machine it runs on.
struct Placement<'a> {
    step: Step,
    number: usize,
    machine: &'a str,
    error_so_far: Option<&'a str>,
}

async fn run_action(
    ctx: &DeployContext,
    action: &Action,
    placement: &Placement<'_>,
    vars: &mut DeploymentVariables,
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
    let template = action.property(PROP_SCRIPT_BODY).unwrap_or_default();
    if template.trim().is_empty() {
        return Err(ActionError::Failed(format!(
            "The action '{}' has no script body",
            action.name
        )));
    }
    let dict = vars.for_action(
        &placement.step,
        placement.number,
        action,
        placement.machine,
        placement.error_so_far,
    );
    // The body is a template: `#{…}` is substituted before the script runs.
    let rendered = cuttle_vars::render(&template, &dict)
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
    let body = rendered.text.unwrap_or_default();
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
        bootstrap: Some(
            match syntax {
                Syntax::Bash => BASH_BOOTSTRAP,
                Syntax::Python => PYTHON_BOOTSTRAP,
            }
            .to_owned(),
        ),
        files: vec![(VARIABLES_FILE.to_owned(), variables_file(&dict))],
    };
    let mut outputs = vec![];
    let mut masker = vars.masker().clone();
    let mut secrets = vars.sensitive_values().to_vec();
    let on_line = |stream: OutputStream, line: String| {
        if stream == OutputStream::Stdout {
            match parse_service_message(&line) {
                Some(Ok(ServiceMessage::SetVariable {
                    name,
                    value,
                    sensitive,
                })) => {
                    if sensitive && !value.is_empty() {
                        // Mask it from the next line on, as later steps will.
                        secrets.push(value.clone());
                        masker = cuttle_vars::mask::Masker::new(secrets.iter().cloned());
                    }
                    target.verbose(format!("Output variable {name} was set"));
                    outputs.push((name, value, sensitive));
                    return;
                }
                Some(Err(why)) => {
                    target.log(
                        LogCategory::Warning,
                        format!("A service message was ignored: {why}"),
                    );
                    return;
                }
                None => {}
            }
        }
        let line = masker.mask_line(&line).into_owned();
        match stream {
            OutputStream::Stdout => target.info(line),
            OutputStream::Stderr => target.error(line),
        }
    };
    let result = run_script(spec, cancel, on_line).await;
    for (name, value, sensitive) in outputs {
        vars.record_output(&action.name, placement.machine, &name, &value, sensitive);
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
        Err(e) => Err(ActionError::Failed(e.to_string())),
    }
}
