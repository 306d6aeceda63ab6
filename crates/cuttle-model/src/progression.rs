//! Lifecycle progression: given a lifecycle, the space's environments and
//! where a release has been deployed, which phases are complete and where the
//! release may go now. Pure: the service loads the facts, this decides.
//!
//! The rules, after Octopus's lifecycle documentation:
//! - Phases are passed in order. A phase is complete when enough of its
//!   environments have a *successful* deployment of the release:
//!   `MinimumEnvironmentsBeforePromotion` of them, or all when that is 0.
//! - A phase may be deployed to once every earlier phase is complete or
//!   optional (`IsOptionalPhase`: it may be skipped).
//! - An environment where the release already succeeded may always be
//!   deployed to again, so going back to an earlier environment is allowed.
//! - A lifecycle without phases has one phase per environment, in the
//!   environments' sort order, each to be completed in turn.
//! - A phase that names no environments stands for every environment that no
//!   other phase names ("any environment"). Octopus's documentation says
//!   "not named in previous phases"; naming no later phase's environments
//!   either keeps a later phase from being reachable early.
//! - Automatic environments are deployed to when the release reaches their
//!   phase, once: an environment with any deployment of the release, even a
//!   failed one, is not deployed to automatically again. Optional phases do
//!   not deploy automatically.

use crate::{Environment, Lifecycle};
use serde::Serialize;
use std::collections::BTreeSet;

/// How a deployment of the release went, as far as progression cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentOutcome {
    Succeeded,
    /// Queued or executing.
    InProgress,
    /// Failed, cancelled or timed out.
    Unsuccessful,
}

/// Where a release has been deployed.
#[derive(Clone, Debug, Default)]
pub struct ReleaseHistory {
    succeeded: BTreeSet<String>,
    in_progress: BTreeSet<String>,
    attempted: BTreeSet<String>,
}

impl ReleaseHistory {
    pub fn record(&mut self, environment_id: &str, outcome: DeploymentOutcome) {
        self.attempted.insert(environment_id.to_owned());
        match outcome {
            DeploymentOutcome::Succeeded => {
                self.succeeded.insert(environment_id.to_owned());
            }
            DeploymentOutcome::InProgress => {
                self.in_progress.insert(environment_id.to_owned());
            }
            DeploymentOutcome::Unsuccessful => {}
        }
    }

    pub fn succeeded_in(&self, environment_id: &str) -> bool {
        self.succeeded.contains(environment_id)
    }
}

/// A phase with its environments worked out (implicit phases of a lifecycle
/// without phases, "any environment" phases, environments that no longer
/// exist left out).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EffectivePhase {
    pub id: String,
    pub name: String,
    pub automatic_deployment_targets: Vec<String>,
    pub optional_deployment_targets: Vec<String>,
    pub minimum_environments_before_promotion: i64,
    pub is_optional_phase: bool,
}

impl EffectivePhase {
    /// Automatic environments first, then manual ones.
    pub fn environments(&self) -> impl Iterator<Item = &String> {
        self.automatic_deployment_targets
            .iter()
            .chain(&self.optional_deployment_targets)
    }

    fn contains(&self, environment_id: &str) -> bool {
        self.environments().any(|e| e == environment_id)
    }

    /// How many environments must succeed for the phase to be complete.
    fn required(&self) -> usize {
        let count = self.environments().count();
        match usize::try_from(self.minimum_environments_before_promotion) {
            Ok(min) if min > 0 => min.min(count),
            _ => count,
        }
    }
}

/// The phases a lifecycle really has over these environments (given in sort
/// order).
pub fn effective_phases(
    lifecycle: &Lifecycle,
    environments: &[Environment],
) -> Vec<EffectivePhase> {
    if lifecycle.phases.is_empty() {
        return environments
            .iter()
            .map(|e| EffectivePhase {
                id: e.id.clone(),
                name: e.name.clone(),
                automatic_deployment_targets: vec![],
                optional_deployment_targets: vec![e.id.clone()],
                minimum_environments_before_promotion: 0,
                is_optional_phase: false,
            })
            .collect();
    }
    let exists = |id: &String| environments.iter().any(|e| &e.id == id);
    let named: BTreeSet<&String> = lifecycle
        .phases
        .iter()
        .flat_map(|p| {
            p.automatic_deployment_targets
                .iter()
                .chain(&p.optional_deployment_targets)
        })
        .collect();
    lifecycle
        .phases
        .iter()
        .map(|p| {
            let any_environment = p.automatic_deployment_targets.is_empty()
                && p.optional_deployment_targets.is_empty();
            let mut automatic: Vec<String> = vec![];
            for e in p.automatic_deployment_targets.iter().filter(|e| exists(e)) {
                if !automatic.contains(e) {
                    automatic.push(e.clone());
                }
            }
            let mut optional: Vec<String> = vec![];
            let candidates: Vec<String> = if any_environment {
                environments
                    .iter()
                    .map(|e| e.id.clone())
                    .filter(|id| !named.contains(id))
                    .collect()
            } else {
                p.optional_deployment_targets.clone()
            };
            for e in candidates.iter().filter(|e| exists(e)) {
                if !automatic.contains(e) && !optional.contains(e) {
                    optional.push(e.clone());
                }
            }
            EffectivePhase {
                id: p.id.clone(),
                name: p.name.clone(),
                automatic_deployment_targets: automatic,
                optional_deployment_targets: optional,
                minimum_environments_before_promotion: p.minimum_environments_before_promotion,
                is_optional_phase: p.is_optional_phase,
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum PhaseProgress {
    /// Enough of its environments succeeded.
    Complete,
    /// Reachable, not complete yet.
    Current,
    /// An earlier phase must complete first.
    Pending,
}

#[derive(Clone, Debug)]
pub struct PhaseState {
    pub phase: EffectivePhase,
    pub progress: PhaseProgress,
    /// Every earlier phase is complete or optional.
    pub reachable: bool,
    pub required: usize,
    pub succeeded: usize,
}

impl PhaseState {
    pub fn is_complete(&self) -> bool {
        self.progress == PhaseProgress::Complete
    }
}

/// Why a release may not be deployed to an environment now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotInLifecycle {
        environment: String,
    },
    PhaseIncomplete {
        environment: String,
        /// The first phase that is neither complete nor optional.
        phase: String,
        /// Names of the phase's environments without a success, not running.
        to_deploy: Vec<String>,
        /// Names of the phase's environments with a deployment under way.
        running: Vec<String>,
        /// How many more successes the phase needs.
        more_needed: usize,
    },
}

impl Refusal {
    /// The message people read, naming what has to happen first.
    pub fn message(&self, release_version: &str, lifecycle_name: &str) -> String {
        match self {
            Refusal::NotInLifecycle { environment } => format!(
                "The lifecycle '{lifecycle_name}' does not include the environment '{environment}', so release {release_version} cannot be deployed there"
            ),
            Refusal::PhaseIncomplete {
                environment,
                phase,
                to_deploy,
                running,
                more_needed,
            } => {
                let mut todo = vec![];
                if !to_deploy.is_empty() {
                    let waiting = running.len().min(*more_needed);
                    let still = more_needed - waiting;
                    if still >= to_deploy.len() {
                        todo.push(format!("deploy to {}", to_deploy.join(", ")));
                    } else if still > 0 {
                        todo.push(format!("deploy to {still} more of {}", to_deploy.join(", ")));
                    }
                }
                if !running.is_empty() {
                    todo.push(format!(
                        "wait for the deployment to {} to succeed",
                        running.join(", ")
                    ));
                }
                format!(
                    "Release {release_version} cannot be deployed to {environment} yet: the phase '{phase}' must be complete first ({})",
                    todo.join("; ")
                )
            }
        }
    }
}

/// A release's progression through its lifecycle.
#[derive(Clone, Debug)]
pub struct Progression {
    pub phases: Vec<PhaseState>,
    /// The space's environments, id and name, in sort order.
    environments: Vec<(String, String)>,
    history: ReleaseHistory,
}

impl Progression {
    /// `environments` in sort order (the default lifecycle follows it).
    pub fn evaluate(
        lifecycle: &Lifecycle,
        environments: &[Environment],
        history: ReleaseHistory,
    ) -> Progression {
        let mut phases = vec![];
        let mut reachable = true;
        for phase in effective_phases(lifecycle, environments) {
            let required = phase.required();
            let succeeded = phase
                .environments()
                .filter(|e| history.succeeded.contains(*e))
                .count();
            let complete = succeeded >= required;
            let progress = if complete {
                PhaseProgress::Complete
            } else if reachable {
                PhaseProgress::Current
            } else {
                PhaseProgress::Pending
            };
            let passable = complete || phase.is_optional_phase;
            phases.push(PhaseState {
                phase,
                progress,
                reachable,
                required,
                succeeded,
            });
            reachable = reachable && passable;
        }
        Progression {
            phases,
            environments: environments
                .iter()
                .map(|e| (e.id.clone(), e.name.clone()))
                .collect(),
            history,
        }
    }

    fn name_of(&self, environment_id: &str) -> String {
        self.environments
            .iter()
            .find(|(id, _)| id == environment_id)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| environment_id.to_owned())
    }

    /// The first phase an environment belongs to.
    fn phase_index(&self, environment_id: &str) -> Option<usize> {
        self.phases
            .iter()
            .position(|p| p.phase.contains(environment_id))
    }

    /// Whether the release may be deployed to the environment now.
    pub fn check(&self, environment_id: &str) -> Result<(), Refusal> {
        let Some(index) = self.phase_index(environment_id) else {
            return Err(Refusal::NotInLifecycle {
                environment: self.name_of(environment_id),
            });
        };
        if self.phases[index].reachable || self.history.succeeded.contains(environment_id) {
            return Ok(());
        }
        // Unreachable means some earlier phase is neither complete nor optional.
        let blocking = self.phases[..index]
            .iter()
            .find(|p| !p.is_complete() && !p.phase.is_optional_phase);
        let Some(blocking) = blocking else {
            return Ok(());
        };
        let (running, to_deploy): (Vec<&String>, Vec<&String>) = blocking
            .phase
            .environments()
            .filter(|e| !self.history.succeeded.contains(*e))
            .partition(|e| self.history.in_progress.contains(*e));
        Err(Refusal::PhaseIncomplete {
            environment: self.name_of(environment_id),
            phase: blocking.phase.name.clone(),
            to_deploy: to_deploy.iter().map(|e| self.name_of(e)).collect(),
            running: running.iter().map(|e| self.name_of(e)).collect(),
            more_needed: blocking.required.saturating_sub(blocking.succeeded),
        })
    }

    /// Every environment the release may be deployed to now, in sort order.
    pub fn allowed(&self) -> Vec<String> {
        self.environments
            .iter()
            .map(|(id, _)| id)
            .filter(|id| self.check(id).is_ok())
            .cloned()
            .collect()
    }

    /// Environments of the current phases the release has not succeeded in
    /// yet: where it goes next.
    pub fn next_deployments(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for p in self
            .phases
            .iter()
            .filter(|p| p.progress == PhaseProgress::Current)
        {
            for e in p.phase.environments() {
                if !self.history.succeeded.contains(e) && !out.contains(e) {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// How many more successes the first required current phase needs.
    pub fn next_deployments_minimum_required(&self) -> usize {
        self.phases
            .iter()
            .find(|p| p.progress == PhaseProgress::Current && !p.phase.is_optional_phase)
            .map(|p| p.required.saturating_sub(p.succeeded))
            .unwrap_or(0)
    }

    /// Automatic environments of reachable phases that the release has never
    /// been deployed to: deploy these now.
    pub fn automatic_due(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for p in self
            .phases
            .iter()
            .filter(|p| p.reachable && !p.phase.is_optional_phase)
        {
            for e in &p.phase.automatic_deployment_targets {
                if !self.history.attempted.contains(e)
                    && !out.contains(e)
                    && self
                        .phase_index(e)
                        .is_some_and(|i| self.phases[i].reachable)
                {
                    out.push(e.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phase;

    fn envs(names: &[&str]) -> Vec<Environment> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Environment {
                id: format!("Environments-{n}"),
                name: (*n).into(),
                sort_order: i as i64 + 1,
                ..Default::default()
            })
            .collect()
    }

    fn id(name: &str) -> String {
        format!("Environments-{name}")
    }

    fn phase(name: &str, automatic: &[&str], manual: &[&str]) -> Phase {
        Phase {
            id: format!("phase-{name}"),
            name: name.into(),
            automatic_deployment_targets: automatic.iter().map(|e| id(e)).collect(),
            optional_deployment_targets: manual.iter().map(|e| id(e)).collect(),
            ..Default::default()
        }
    }

    fn lifecycle(phases: Vec<Phase>) -> Lifecycle {
        Lifecycle {
            name: "Standard".into(),
            phases,
            ..Default::default()
        }
    }

    fn history(entries: &[(&str, DeploymentOutcome)]) -> ReleaseHistory {
        let mut h = ReleaseHistory::default();
        for (e, o) in entries {
            h.record(&id(e), *o);
        }
        h
    }

    fn three_phases() -> Lifecycle {
        lifecycle(vec![
            phase("Dev", &[], &["Dev"]),
            phase("Test", &[], &["Test"]),
            phase("Production", &[], &["Production"]),
        ])
    }

    use DeploymentOutcome::*;

    #[test]
    fn phases_are_passed_in_order() {
        let e = envs(&["Dev", "Test", "Production"]);
        let p = Progression::evaluate(&three_phases(), &e, history(&[]));
        assert_eq!(p.allowed(), vec![id("Dev")]);
        let refusal = p.check(&id("Production")).unwrap_err();
        assert_eq!(
            refusal.message("1.0.0", "Standard"),
            "Release 1.0.0 cannot be deployed to Production yet: the phase 'Dev' must be complete first (deploy to Dev)"
        );
        let progress: Vec<_> = p.phases.iter().map(|p| p.progress).collect();
        assert_eq!(
            progress,
            [
                PhaseProgress::Current,
                PhaseProgress::Pending,
                PhaseProgress::Pending
            ]
        );

        let p = Progression::evaluate(&three_phases(), &e, history(&[("Dev", Succeeded)]));
        assert_eq!(p.allowed(), vec![id("Dev"), id("Test")]);
        assert_eq!(
            p.check(&id("Production")).unwrap_err().message("1.0.0", "Standard"),
            "Release 1.0.0 cannot be deployed to Production yet: the phase 'Test' must be complete first (deploy to Test)"
        );
        assert_eq!(p.next_deployments(), vec![id("Test")]);
        assert_eq!(p.next_deployments_minimum_required(), 1);
    }

    #[test]
    fn only_successes_count() {
        let e = envs(&["Dev", "Test", "Production"]);
        for outcome in [Unsuccessful, InProgress] {
            let p = Progression::evaluate(&three_phases(), &e, history(&[("Dev", outcome)]));
            assert_eq!(p.allowed(), vec![id("Dev")], "{outcome:?}");
        }
        let p = Progression::evaluate(&three_phases(), &e, history(&[("Dev", InProgress)]));
        assert_eq!(
            p.check(&id("Test")).unwrap_err().message("2.0", "Standard"),
            "Release 2.0 cannot be deployed to Test yet: the phase 'Dev' must be complete first (wait for the deployment to Dev to succeed)"
        );
        // A later success counts even after a failure.
        let p = Progression::evaluate(
            &three_phases(),
            &e,
            history(&[("Dev", Unsuccessful), ("Dev", Succeeded)]),
        );
        assert!(p.check(&id("Test")).is_ok());
    }

    #[test]
    fn earlier_environments_can_always_be_redeployed() {
        let e = envs(&["Dev", "Test", "Production"]);
        let done = history(&[
            ("Dev", Succeeded),
            ("Test", Succeeded),
            ("Production", Succeeded),
        ]);
        let p = Progression::evaluate(&three_phases(), &e, done);
        assert_eq!(p.allowed(), vec![id("Dev"), id("Test"), id("Production")]);
        assert!(p.phases.iter().all(PhaseState::is_complete));
        assert!(p.next_deployments().is_empty());
        assert_eq!(p.next_deployments_minimum_required(), 0);

        // Even where the lifecycle would not let it go now (say the lifecycle
        // changed), an environment that already has the release may have it again.
        let changed = lifecycle(vec![
            phase("Staging", &[], &["Test"]),
            phase("Production", &[], &["Production"]),
        ]);
        let p = Progression::evaluate(&changed, &e, history(&[("Production", Succeeded)]));
        assert!(p.check(&id("Production")).is_ok());
    }

    #[test]
    fn environments_outside_the_lifecycle_are_refused() {
        let e = envs(&["Dev", "Test", "Production", "Sandbox"]);
        let p = Progression::evaluate(&three_phases(), &e, history(&[("Dev", Succeeded)]));
        let refusal = p.check(&id("Sandbox")).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NotInLifecycle {
                environment: "Sandbox".into()
            }
        );
        assert!(refusal
            .message("1.0.0", "Standard")
            .contains("The lifecycle 'Standard' does not include the environment 'Sandbox'"));
        assert!(matches!(
            p.check("Environments-unknown"),
            Err(Refusal::NotInLifecycle { .. })
        ));
    }

    #[test]
    fn optional_phases_may_be_skipped() {
        let e = envs(&["Dev", "Test", "Production"]);
        let mut lc = three_phases();
        lc.phases[1].is_optional_phase = true;
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded)]));
        assert_eq!(p.allowed(), vec![id("Dev"), id("Test"), id("Production")]);
        assert_eq!(p.phases[1].progress, PhaseProgress::Current);
        assert_eq!(p.phases[2].progress, PhaseProgress::Current);
        assert_eq!(p.next_deployments(), vec![id("Test"), id("Production")]);
        // The required phase after the optional one is what must complete next.
        assert_eq!(p.next_deployments_minimum_required(), 1);

        // Several optional phases in a row: all reachable at once.
        let mut lc = three_phases();
        lc.phases[0].is_optional_phase = true;
        lc.phases[1].is_optional_phase = true;
        let p = Progression::evaluate(&lc, &e, history(&[]));
        assert_eq!(p.allowed().len(), 3);
        // An optional phase before a required, incomplete one does not block,
        // and the refusal names the required one.
        let mut lc = three_phases();
        lc.phases[0].is_optional_phase = true;
        let p = Progression::evaluate(&lc, &e, history(&[]));
        let msg = p.check(&id("Production")).unwrap_err().message("1", "L");
        assert!(msg.contains("the phase 'Test'"), "{msg}");
    }

    #[test]
    fn minimum_environments_before_promotion() {
        let e = envs(&["Dev", "QA1", "QA2", "QA3", "Production"]);
        let mut testing = phase("Testing", &[], &["QA1", "QA2", "QA3"]);
        testing.minimum_environments_before_promotion = 2;
        let lc = lifecycle(vec![
            phase("Dev", &[], &["Dev"]),
            testing,
            phase("Production", &[], &["Production"]),
        ]);
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded), ("QA2", Succeeded)]));
        assert_eq!(p.next_deployments_minimum_required(), 1);
        assert_eq!(
            p.check(&id("Production")).unwrap_err().message("1.0.0", "Standard"),
            "Release 1.0.0 cannot be deployed to Production yet: the phase 'Testing' must be complete first (deploy to 1 more of QA1, QA3)"
        );
        let p = Progression::evaluate(
            &lc,
            &e,
            history(&[("Dev", Succeeded), ("QA2", Succeeded), ("QA3", Succeeded)]),
        );
        assert!(p.phases[1].is_complete());
        assert!(p.check(&id("Production")).is_ok());
        // The rest of a complete phase can still be deployed to.
        assert!(p.check(&id("QA1")).is_ok());

        // 0 means all of them.
        let mut lc = lc;
        lc.phases[1].minimum_environments_before_promotion = 0;
        let p = Progression::evaluate(
            &lc,
            &e,
            history(&[("Dev", Succeeded), ("QA2", Succeeded), ("QA3", Succeeded)]),
        );
        assert!(p.check(&id("Production")).is_err());
        // A minimum above the phase's size means all of them.
        lc.phases[1].minimum_environments_before_promotion = 10;
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded)]));
        assert_eq!(p.phases[1].required, 3);
    }

    #[test]
    fn default_lifecycle_follows_environment_order() {
        let e = envs(&["Dev", "Test", "Production"]);
        let lc = lifecycle(vec![]);
        let p = Progression::evaluate(&lc, &e, history(&[]));
        assert_eq!(p.phases.len(), 3);
        assert_eq!(p.phases[0].phase.name, "Dev");
        assert_eq!(p.allowed(), vec![id("Dev")]);
        let msg = p
            .check(&id("Test"))
            .unwrap_err()
            .message("0.0.1", "Default Lifecycle");
        assert!(
            msg.contains("the phase 'Dev' must be complete first"),
            "{msg}"
        );
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded)]));
        assert_eq!(p.allowed(), vec![id("Dev"), id("Test")]);
        assert!(p.automatic_due().is_empty());
        // No environments at all: nothing to deploy to, and nothing crashes.
        let p = Progression::evaluate(&lc, &[], history(&[]));
        assert!(p.allowed().is_empty() && p.phases.is_empty());
    }

    #[test]
    fn automatic_environments() {
        let e = envs(&["Dev", "Test", "Production"]);
        let lc = lifecycle(vec![
            phase("Dev", &["Dev"], &[]),
            phase("Test", &["Test"], &[]),
            phase("Production", &[], &["Production"]),
        ]);
        // At creation: the first phase's automatic environments.
        let p = Progression::evaluate(&lc, &e, history(&[]));
        assert_eq!(p.automatic_due(), vec![id("Dev")]);
        // Once queued, not again.
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", InProgress)]));
        assert!(p.automatic_due().is_empty());
        // Dev succeeded: Test is reached and deployed to automatically.
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded)]));
        assert_eq!(p.automatic_due(), vec![id("Test")]);
        // A failed automatic deployment is not retried on its own.
        let p = Progression::evaluate(
            &lc,
            &e,
            history(&[("Dev", Succeeded), ("Test", Unsuccessful)]),
        );
        assert!(p.automatic_due().is_empty());
        // Manual environments never are.
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded), ("Test", Succeeded)]));
        assert!(p.automatic_due().is_empty());
        assert!(p.check(&id("Production")).is_ok());
    }

    #[test]
    fn optional_phases_do_not_deploy_automatically() {
        let e = envs(&["Dev", "Test"]);
        let mut dev = phase("Dev", &["Dev"], &[]);
        dev.is_optional_phase = true;
        let lc = lifecycle(vec![dev, phase("Test", &["Test"], &[])]);
        let p = Progression::evaluate(&lc, &e, history(&[]));
        // Test is reachable past the optional phase, so it deploys; Dev does not.
        assert_eq!(p.automatic_due(), vec![id("Test")]);
    }

    #[test]
    fn phases_without_environments_take_the_rest() {
        let e = envs(&["Dev", "Test", "Staging", "Production"]);
        let lc = lifecycle(vec![
            phase("Dev", &[], &["Dev"]),
            phase("Anything", &[], &[]),
            phase("Production", &[], &["Production"]),
        ]);
        let phases = effective_phases(&lc, &e);
        assert_eq!(
            phases[1].optional_deployment_targets,
            vec![id("Test"), id("Staging")]
        );
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded), ("Test", Succeeded)]));
        assert!(p.check(&id("Production")).is_err());
        assert!(p.check(&id("Staging")).is_ok());
    }

    #[test]
    fn missing_and_repeated_environments_are_tidied() {
        let e = envs(&["Dev", "Test"]);
        let lc = lifecycle(vec![
            phase("Dev", &["Dev", "Gone"], &["Dev"]),
            phase("Test", &[], &["Test", "Test"]),
        ]);
        let phases = effective_phases(&lc, &e);
        assert_eq!(phases[0].automatic_deployment_targets, vec![id("Dev")]);
        assert!(phases[0].optional_deployment_targets.is_empty());
        assert_eq!(phases[1].optional_deployment_targets, vec![id("Test")]);
        // The deleted environment does not keep the phase from completing.
        let p = Progression::evaluate(&lc, &e, history(&[("Dev", Succeeded)]));
        assert!(p.check(&id("Test")).is_ok());
    }
}
