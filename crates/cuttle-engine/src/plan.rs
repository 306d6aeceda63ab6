//! Planning: which actions of a process run in a deployment to one
//! environment, and why the others do not. Pure, so it is tested without I/O;
//! the runner carries the plan out.

use cuttle_model::process::{PROP_MAX_PARALLELISM, PROP_RUN_ON_SERVER};
use cuttle_model::{Action, DeploymentProcess};

/// Why an action does not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    NotForEnvironment,
    NotForChannel,
    SkippedByRequest,
    /// The step targets roles that no deployment target in the environment has.
    NoTargets {
        roles: Vec<String>,
    },
}

impl SkipReason {
    pub fn describe(&self) -> String {
        match self {
            SkipReason::Disabled => "the step is disabled".into(),
            SkipReason::NotForEnvironment => "the step does not run in this environment".into(),
            SkipReason::NotForChannel => "the step does not run for this release's channel".into(),
            SkipReason::SkippedByRequest => "the deployment was asked to skip it".into(),
            SkipReason::NoTargets { roles } => format!(
                "no deployment target in this environment has the role{} {}",
                if roles.len() == 1 { "" } else { "s" },
                roles.join(", ")
            ),
        }
    }
}

/// A deployment target an action may run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanTarget {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
}

/// Where an action runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Once, on the built-in worker.
    Worker,
    /// Once on each of these targets.
    Targets(Vec<PlanTarget>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedAction {
    pub action: Action,
    pub skip: Option<SkipReason>,
    pub placement: Placement,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStep {
    /// 1-based, as the task log numbers steps.
    pub number: usize,
    pub name: String,
    /// `Success`, `Failure`, `Always` or `Variable`.
    pub condition: String,
    /// 1-based; steps that start with the previous one share its group and
    /// run at the same time.
    pub group: usize,
    /// At most this many targets at once (a rolling deployment); `None` is all.
    pub max_parallelism: Option<usize>,
    pub actions: Vec<PlannedAction>,
}

impl PlannedStep {
    pub fn runs_anything(&self) -> bool {
        self.actions.iter().any(|a| a.skip.is_none())
    }
}

/// What a plan is made from.
pub struct PlanInput<'a> {
    pub process: &'a DeploymentProcess,
    pub environment_id: &'a str,
    pub channel_id: &'a str,
    /// Actions to leave out, by id or name.
    pub skip_actions: &'a [String],
    /// The deployment targets in the environment.
    pub targets: &'a [PlanTarget],
}

/// Plans a deployment: for every step, its parallel group, and for every
/// action whether it runs, where, or why not.
pub fn plan(input: &PlanInput<'_>) -> Vec<PlannedStep> {
    let mut group = 0;
    input
        .process
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            if i == 0 || step.start_trigger != "StartWithPrevious" {
                group += 1;
            }
            let roles = step.target_roles();
            let on_server = |a: &Action| {
                a.property(PROP_RUN_ON_SERVER)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            };
            PlannedStep {
                number: i + 1,
                name: step.name.clone(),
                condition: step.condition.clone(),
                group,
                max_parallelism: step
                    .property(PROP_MAX_PARALLELISM)
                    .and_then(|v| v.trim().parse().ok())
                    .filter(|n: &usize| *n > 0),
                actions: step
                    .actions
                    .iter()
                    .map(|a| {
                        let placement = if roles.is_empty() || on_server(a) {
                            Placement::Worker
                        } else {
                            Placement::Targets(
                                input
                                    .targets
                                    .iter()
                                    .filter(|t| t.roles.iter().any(|r| roles.contains(r)))
                                    .cloned()
                                    .collect(),
                            )
                        };
                        let skip = if a.is_disabled {
                            Some(SkipReason::Disabled)
                        } else if input
                            .skip_actions
                            .iter()
                            .any(|s| s == &a.id || s == &a.name)
                        {
                            Some(SkipReason::SkippedByRequest)
                        } else if !a.applies_to_environment(input.environment_id) {
                            Some(SkipReason::NotForEnvironment)
                        } else if !a.channels.is_empty()
                            && !a.channels.iter().any(|c| c == input.channel_id)
                        {
                            Some(SkipReason::NotForChannel)
                        } else if placement == Placement::Targets(vec![]) {
                            Some(SkipReason::NoTargets {
                                roles: roles.clone(),
                            })
                        } else {
                            None
                        };
                        PlannedAction {
                            action: a.clone(),
                            skip,
                            placement,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The plan's steps, gathered into the groups that run at the same time, in order.
pub fn groups(steps: &[PlannedStep]) -> Vec<Vec<&PlannedStep>> {
    let mut out: Vec<Vec<&PlannedStep>> = vec![];
    for step in steps {
        match out.last_mut() {
            Some(last) if last[0].group == step.group => last.push(step),
            _ => out.push(vec![step]),
        }
    }
    out
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
        let skip = ["d name".to_owned()];
        let p = plan(&PlanInput {
            process: &process,
            environment_id: "Environments-1",
            channel_id: "Channels-1",
            skip_actions: &skip,
            targets: &[],
        });
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
    fn groups_roles_and_channels() {
        let step = |name: &str, trigger: &str, props: serde_json::Value| Step {
            name: name.into(),
            start_trigger: trigger.into(),
            properties: serde_json::from_value(props).unwrap(),
            actions: vec![action(name)],
            ..Default::default()
        };
        let mut channel_only = step("e", "StartAfterPrevious", serde_json::json!({}));
        channel_only.actions[0].channels = vec!["Channels-9".into()];
        let process = DeploymentProcess {
            steps: vec![
                step("a", "StartWithPrevious", serde_json::json!({})),
                step(
                    "b",
                    "StartAfterPrevious",
                    serde_json::json!({"Octopus.Action.TargetRoles": "web"}),
                ),
                step(
                    "c",
                    "StartWithPrevious",
                    serde_json::json!({"Octopus.Action.TargetRoles": "db, web", "Octopus.Action.MaxParallelism": "2"}),
                ),
                step(
                    "d",
                    "StartAfterPrevious",
                    serde_json::json!({"Octopus.Action.TargetRoles": "queue"}),
                ),
                channel_only,
            ],
            ..Default::default()
        };
        let targets = [
            PlanTarget {
                id: "Machines-1".into(),
                name: "web1".into(),
                roles: vec!["web".into()],
            },
            PlanTarget {
                id: "Machines-2".into(),
                name: "db1".into(),
                roles: vec!["db".into()],
            },
        ];
        let p = plan(&PlanInput {
            process: &process,
            environment_id: "Environments-1",
            channel_id: "Channels-1",
            skip_actions: &[],
            targets: &targets,
        });
        // A first step cannot start with a previous one: it opens group 1.
        let g: Vec<Vec<usize>> = groups(&p)
            .iter()
            .map(|g| g.iter().map(|s| s.number).collect())
            .collect();
        assert_eq!(g, [vec![1], vec![2, 3], vec![4], vec![5]]);
        assert_eq!(p[0].actions[0].placement, Placement::Worker);
        assert_eq!(
            p[1].actions[0].placement,
            Placement::Targets(vec![targets[0].clone()])
        );
        assert_eq!(
            p[2].actions[0].placement,
            Placement::Targets(targets.to_vec())
        );
        assert_eq!(p[2].max_parallelism, Some(2));
        assert_eq!(
            p[3].actions[0].skip,
            Some(SkipReason::NoTargets {
                roles: vec!["queue".into()]
            })
        );
        assert!(p[3].actions[0]
            .skip
            .as_ref()
            .unwrap()
            .describe()
            .contains("role queue"));
        assert_eq!(p[4].actions[0].skip, Some(SkipReason::NotForChannel));
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
