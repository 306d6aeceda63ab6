//! Deployment preview: the plan a deployment of a release to an environment
//! would follow — steps in order and parallel groups, where each action runs,
//! and what is skipped and why — computed without running anything.

use crate::resources::get_in_space;
use crate::Result;
use cuttle_engine::plan::{groups, plan, Placement, PlanInput};
use cuttle_engine::variables::BUILT_IN_WORKER;
use cuttle_model::{Environment, Project, Release};
use cuttle_store::{ProcessSnapshot, Store};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentPreview {
    pub space_id: String,
    pub release_id: String,
    pub release_version: String,
    pub project_id: String,
    pub environment_id: String,
    pub environment_name: String,
    /// Step numbers, grouped: the steps of one group start together.
    pub groups: Vec<Vec<usize>>,
    pub steps: Vec<StepPreview>,
    /// Whether the lifecycle lets the release be deployed there now.
    pub allowed: bool,
    /// Why not, when it does not.
    pub blocked_reason: Option<String>,
    /// Things a person should know before deploying (steps with no targets).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StepPreview {
    pub number: usize,
    pub name: String,
    pub group: usize,
    pub condition: String,
    /// What the condition means for this deployment.
    pub condition_note: Option<String>,
    pub max_parallelism: Option<usize>,
    pub actions: Vec<ActionPreview>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ActionPreview {
    pub id: String,
    pub name: String,
    pub action_type: String,
    pub runs: bool,
    /// Where it runs: the built-in worker, or the names of its targets.
    pub targets: Vec<String>,
    pub skip_reason: Option<String>,
}

pub async fn preview_deployment(
    store: &Store,
    space_id: &str,
    release_id: &str,
    environment_id: &str,
) -> Result<DeploymentPreview> {
    let release: Release = get_in_space(store, space_id, release_id).await?;
    let environment: Environment = get_in_space(store, space_id, environment_id).await?;
    let project: Project = get_in_space(store, space_id, &release.project_id).await?;
    let process: ProcessSnapshot = store
        .require(&release.project_deployment_process_snapshot_id)
        .await?;
    let evaluated = crate::progression::evaluate(store, &release, &project).await?;
    let blocked_reason = evaluated
        .progression
        .check(&environment.id)
        .err()
        .map(|refusal| refusal.message(&release.version, &evaluated.lifecycle.name));
    let steps = plan(&PlanInput {
        process: &process.0,
        environment_id: &environment.id,
        channel_id: &release.channel_id,
        skip_actions: &[],
        targets: &[],
    });
    let mut warnings = vec![];
    let preview_steps = steps
        .iter()
        .map(|step| StepPreview {
            number: step.number,
            name: step.name.clone(),
            group: step.group,
            condition: step.condition.clone(),
            condition_note: match step.condition.as_str() {
                "Failure" => Some("Runs only if an earlier step fails".into()),
                "Always" => Some("Runs even if an earlier step fails".into()),
                "Variable" => Some("Runs if its variable expression is true at that point".into()),
                _ => None,
            },
            max_parallelism: step.max_parallelism,
            actions: step
                .actions
                .iter()
                .map(|a| {
                    if let Some(reason @ cuttle_engine::plan::SkipReason::NoTargets { .. }) =
                        &a.skip
                    {
                        warnings.push(format!(
                            "Step {} '{}' will run on no target: {}",
                            step.number,
                            step.name,
                            reason.describe()
                        ));
                    }
                    ActionPreview {
                        id: a.action.id.clone(),
                        name: a.action.name.clone(),
                        action_type: a.action.action_type.clone(),
                        runs: a.skip.is_none(),
                        targets: match &a.placement {
                            Placement::Worker => vec![BUILT_IN_WORKER.to_owned()],
                            Placement::Targets(t) => t.iter().map(|t| t.name.clone()).collect(),
                        },
                        skip_reason: a.skip.as_ref().map(|r| r.describe()),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(DeploymentPreview {
        space_id: space_id.into(),
        release_id: release.id.clone(),
        release_version: release.version.clone(),
        project_id: project.id,
        environment_id: environment.id,
        environment_name: environment.name,
        groups: groups(&steps)
            .iter()
            .map(|g| g.iter().map(|s| s.number).collect())
            .collect(),
        steps: preview_steps,
        allowed: blocked_reason.is_none(),
        blocked_reason,
        warnings,
    })
}
