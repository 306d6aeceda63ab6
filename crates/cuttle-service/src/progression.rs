//! Lifecycle progression of releases: loading what the pure rules in
//! [`cuttle_model::progression`] need, the progression a client reads, and
//! automatic deployments when a release reaches a phase.
//!
//! Automatic deployments are queued in the name of the user whose action
//! moved the release on: whoever created the release (for the first phase)
//! or made the deployment whose success completed the previous phase. The
//! audit trail then leads to a person, as Octopus's does (its automatic
//! promotions act as the user who triggered them); the deployment's
//! `Comments` and the audit message say it was automatic.

use crate::deployments::{self, NewDeployment};
use crate::resources::get_in_space;
use crate::{Instance, Result};
use cuttle_engine::TaskFinished;
use cuttle_model::progression::{
    DeploymentOutcome, EffectivePhase, PhaseProgress, Progression, ReleaseHistory,
};
use cuttle_model::{
    Channel, Deployment, Environment, Lifecycle, Project, Release, ServerTask, TaskState, User,
};
use cuttle_store::{DocumentQuery, Store};
use std::sync::Weak;
use tokio::sync::broadcast;

/// A release with everything its progression was worked out from.
pub struct Evaluated {
    pub lifecycle: Lifecycle,
    /// The release's deployments, newest first, each with its task.
    pub deployments: Vec<(Deployment, ServerTask)>,
    pub progression: Progression,
}

fn outcome(state: TaskState) -> DeploymentOutcome {
    match state {
        TaskState::Success => DeploymentOutcome::Succeeded,
        TaskState::Queued | TaskState::Executing | TaskState::Cancelling => {
            DeploymentOutcome::InProgress
        }
        TaskState::Failed | TaskState::Canceled | TaskState::TimedOut => {
            DeploymentOutcome::Unsuccessful
        }
    }
}

/// The lifecycle a release follows: its channel's, or else its project's.
pub async fn lifecycle_of(
    store: &Store,
    release: &Release,
    project: &Project,
) -> Result<Lifecycle> {
    let channel: Channel = get_in_space(store, &release.space_id, &release.channel_id).await?;
    let id = channel
        .lifecycle_id
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| project.lifecycle_id.clone());
    get_in_space(store, &release.space_id, &id).await
}

/// Loads the release's lifecycle, the space's environments and the release's
/// deployments, and evaluates its progression. Reads only (no transaction).
pub async fn evaluate(store: &Store, release: &Release, project: &Project) -> Result<Evaluated> {
    let lifecycle = lifecycle_of(store, release, project).await?;
    evaluate_under(store, release, lifecycle).await
}

/// [`evaluate`] under the release's `lifecycle`, read already.
async fn evaluate_under(
    store: &Store,
    release: &Release,
    lifecycle: Lifecycle,
) -> Result<Evaluated> {
    // Environments list in sort order, which the default lifecycle follows.
    let environments = store
        .list::<Environment>(&DocumentQuery {
            space_id: Some(release.space_id.clone()),
            ..Default::default()
        })
        .await?
        .items;
    // Only this release's deployments, each joined with its task; one
    // whose task is gone (history cleaned up) tells nothing and is left out.
    let deployments = store
        .release_deployments(&release.space_id, &release.id)
        .await?;
    let mut history = ReleaseHistory::default();
    for (d, t) in &deployments {
        history.record(&d.environment_id, outcome(t.state));
    }
    let progression = Progression::evaluate(&lifecycle, &environments, history);
    Ok(Evaluated {
        lifecycle,
        deployments,
        progression,
    })
}

/// One phase as `GET /releases/{id}/progression` shows it.
pub struct PhaseView {
    pub phase: EffectivePhase,
    pub progress: PhaseProgress,
    /// Octopus blocks phases of releases with unresolved defects; Cuttle has
    /// no defects yet, so this is always false.
    pub blocked: bool,
    /// The release's deployments to this phase's environments, newest first.
    pub deployments: Vec<(Deployment, ServerTask)>,
}

/// `GET /releases/{id}/progression`: Octopus's `LifecycleProgressionResource`.
pub struct ReleaseProgression {
    pub release: Release,
    pub phases: Vec<PhaseView>,
    pub next_deployments: Vec<String>,
    pub next_deployments_minimum_required: usize,
}

pub async fn release_progression(
    store: &Store,
    space_id: &str,
    release_id: &str,
) -> Result<ReleaseProgression> {
    let release: Release = get_in_space(store, space_id, release_id).await?;
    let project: Project = get_in_space(store, space_id, &release.project_id).await?;
    let evaluated = evaluate(store, &release, &project).await?;
    let progression = &evaluated.progression;
    let phases = progression
        .phases
        .iter()
        .map(|p| PhaseView {
            phase: p.phase.clone(),
            progress: p.progress,
            blocked: false,
            deployments: evaluated
                .deployments
                .iter()
                .filter(|(d, _)| p.phase.environments().any(|e| e == &d.environment_id))
                .cloned()
                .collect(),
        })
        .collect();
    Ok(ReleaseProgression {
        phases,
        next_deployments: progression.next_deployments(),
        next_deployments_minimum_required: progression.next_deployments_minimum_required(),
        release,
    })
}

/// Queues deployments of the release to the automatic environments of every
/// phase it has reached and never been deployed to. Environments whose
/// deployment cannot be queued (a required prompted variable, say) are
/// skipped and logged: nobody is there to ask.
pub async fn deploy_automatic_phases(
    inst: &Instance,
    release_id: &str,
    by: &crate::actor::Actor,
) -> Result<Vec<Deployment>> {
    let store = &inst.store;
    // The lifecycle deploys, not the person whose action reached the phase:
    // their name goes on the deployment, their permissions do not limit it.
    let by = &crate::actor::Actor {
        permissions: None,
        ..by.clone()
    };
    // Two nodes finishing deployments of this release at once must not both
    // queue the next phase: one decides and writes, then the other looks.
    let _lock = store
        .node_lock(&format!("automatic-deployments/{release_id}"))
        .await?;
    let Some(release) = store.get::<Release>(release_id).await? else {
        return Ok(vec![]);
    };
    let project: Project = get_in_space(store, &release.space_id, &release.project_id).await?;
    if project.is_disabled {
        return Ok(vec![]);
    }
    let lifecycle = lifecycle_of(store, &release, &project).await?;
    // Only environments a phase names as automatic are ever deployed to
    // automatically: without any, the release's history need not be read
    // (after every successful deployment).
    if lifecycle
        .phases
        .iter()
        .all(|p| p.automatic_deployment_targets.is_empty())
    {
        return Ok(vec![]);
    }
    let evaluated = evaluate_under(store, &release, lifecycle).await?;
    let due = evaluated.progression.automatic_due();
    if due.is_empty() {
        return Ok(vec![]);
    }
    let mut checked = vec![];
    for environment_id in due {
        let phase = evaluated
            .progression
            .phases
            .iter()
            .find(|p| p.phase.environments().any(|e| e == &environment_id))
            .map(|p| p.phase.name.clone())
            .unwrap_or_default();
        let note = format!(
            "Deployed automatically: the lifecycle '{}' deploys to this environment when a release reaches its phase '{phase}'",
            evaluated.lifecycle.name
        );
        let new = NewDeployment {
            release_id: release.id.clone(),
            environment_id: environment_id.clone(),
            comments: Some(note.clone()),
            ..Default::default()
        };
        match deployments::check(store, &inst.master_key, by, &release.space_id, new).await {
            Ok(c) => checked.push(c.automatic(note)),
            Err(e) => tracing::warn!(
                release = %release.id,
                environment = %environment_id,
                error = %e,
                "an automatic deployment could not be queued"
            ),
        }
    }
    if checked.is_empty() {
        return Ok(vec![]);
    }
    let written = deployments::write(inst, by, &release.space_id, checked).await?;
    Ok(written.into_iter().map(|(d, _)| d).collect())
}

/// After a deployment succeeds, its release may have reached new phases.
async fn promote_after(inst: &Instance, finished: &TaskFinished) -> Result<()> {
    if finished.name != "Deploy" || finished.state != TaskState::Success {
        return Ok(());
    }
    let Some(task) = inst.store.task(&finished.task_id).await? else {
        return Ok(());
    };
    let Some(deployment_id) = task.deployment_id else {
        return Ok(());
    };
    let Some(deployment) = inst.store.get::<Deployment>(&deployment_id).await? else {
        return Ok(());
    };
    // The user may have been deleted since; the name on the deployment stays.
    let by = match inst.store.user(&deployment.deployed_by_id).await? {
        Some(u) => u,
        None => User {
            id: deployment.deployed_by_id.clone(),
            username: deployment.deployed_by.clone(),
            ..Default::default()
        },
    };
    // Queued by the server on behalf of whoever deployed.
    let by = crate::actor::Actor::from(by);
    let queued = deploy_automatic_phases(inst, &deployment.release_id, &by).await?;
    if !queued.is_empty() {
        tracing::info!(
            release = %deployment.release_id,
            count = queued.len(),
            "queued automatic deployments"
        );
    }
    Ok(())
}

/// Follows the runner's finished tasks for as long as the instance lives,
/// one at a time (so two successes at once cannot both queue the same
/// automatic deployment on this node).
pub(crate) fn follow_finished_tasks(
    inst: Weak<Instance>,
    mut finished: broadcast::Receiver<TaskFinished>,
    stopping: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                received = finished.recv() => received,
                _ = stopping.cancelled() => return,
            };
            let event = match received {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "missed finished tasks; their automatic deployments were not checked"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(inst) = inst.upgrade() else {
                return;
            };
            if let Err(e) = promote_after(&inst, &event).await {
                tracing::error!(task = %event.task_id, error = %e, "could not check automatic deployments");
            }
        }
    });
}
