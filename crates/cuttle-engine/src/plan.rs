//! Planning: which actions of a process run in a deployment to one
//! environment, and why the others do not. Pure, so it is tested without I/O;
//! the runner carries the plan out.

use cuttle_model::{Action, DeploymentProcess};

/// Why an action does not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    NotForEnvironment,
    SkippedByRequest,
}

impl SkipReason {
    pub fn describe(&self) -> &'static str {
        match self {
            SkipReason::Disabled => "the step is disabled",
            SkipReason::NotForEnvironment => "the step does not run in this environment",
            SkipReason::SkippedByRequest => "the deployment was asked to skip it",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedAction {
    pub action: Action,
    pub skip: Option<SkipReason>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStep {
    /// 1-based, as the task log numbers steps.
    pub number: usize,
    pub name: String,
    /// `Success`, `Failure`, `Always` or `Variable`.
    pub condition: String,
    pub actions: Vec<PlannedAction>,
}

impl PlannedStep {
    pub fn runs_anything(&self) -> bool {
        self.actions.iter().any(|a| a.skip.is_none())
    }
}

/// Plans a deployment of `process` to `environment_id`, leaving out the
/// actions named (by id or name) in `skip_actions`.
pub fn plan(
    process: &DeploymentProcess,
    environment_id: &str,
    skip_actions: &[String],
) -> Vec<PlannedStep> {
    process
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| PlannedStep {
            number: i + 1,
            name: step.name.clone(),
            condition: step.condition.clone(),
            actions: step
                .actions
                .iter()
                .map(|a| {
                    let skip = if a.is_disabled {
                        Some(SkipReason::Disabled)
                    } else if skip_actions.iter().any(|s| s == &a.id || s == &a.name) {
                        Some(SkipReason::SkippedByRequest)
                    } else if !a.applies_to_environment(environment_id) {
                        Some(SkipReason::NotForEnvironment)
                    } else {
                        None
                    };
                    PlannedAction {
                        action: a.clone(),
                        skip,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Whether a step with `condition` runs, given whether an earlier step failed.
pub fn condition_allows(condition: &str, failed_so_far: bool) -> bool {
    match condition {
        "Always" => true,
        "Failure" => failed_so_far,
        // `Variable` conditions need the variable language; until then they
        // behave like `Success`.
        _ => !failed_so_far,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::Step;

    fn action(id: &str) -> Action {
        Action {
            id: id.into(),
            name: format!("{id} name"),
            action_type: "Octopus.Script".into(),
            ..Default::default()
        }
    }

    #[test]
    fn plans_with_reasons() {
        let mut disabled = action("b");
        disabled.is_disabled = true;
        let mut prod_only = action("c");
        prod_only.environments = vec!["Environments-2".into()];
        let process = DeploymentProcess {
            steps: vec![
                Step {
                    name: "one".into(),
                    actions: vec![action("a"), disabled],
                    ..Default::default()
                },
                Step {
                    name: "two".into(),
                    actions: vec![prod_only, action("d")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = plan(&process, "Environments-1", &["d name".into()]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].number, 2);
        let skips: Vec<_> = p
            .iter()
            .flat_map(|s| s.actions.iter().map(|a| a.skip.clone()))
            .collect();
        assert_eq!(
            skips,
            [
                None,
                Some(SkipReason::Disabled),
                Some(SkipReason::NotForEnvironment),
                Some(SkipReason::SkippedByRequest)
            ]
        );
        assert!(p[0].runs_anything());
        assert!(!p[1].runs_anything());
    }

    #[test]
    fn conditions() {
        assert!(condition_allows("Success", false));
        assert!(!condition_allows("Success", true));
        assert!(condition_allows("Failure", true));
        assert!(!condition_allows("Failure", false));
        assert!(condition_allows("Always", true));
    }
}
