//! The variables of one deployment: the release's frozen variables with
//! their sensitive values opened, prompted values, system variables, and the
//! output variables steps create as they run; and the masker every log line
//! of the task goes through.

use cuttle_model::{
    Action, Channel, Deployment, Environment, Project, Release, Space, Step, Variable, VariableSet,
};
use cuttle_store::{MasterKey, Store};
use cuttle_vars::mask::Masker;
use cuttle_vars::scope::{select, ScopeContext};
use cuttle_vars::VariableDictionary;

/// The name the built-in worker goes by in logs and in `Octopus.Machine.Name`.
pub const BUILT_IN_WORKER: &str = "Built-in worker";

/// Everything a deployment's variables are built from.
pub struct Sources<'a> {
    pub space: Option<&'a Space>,
    pub project: &'a Project,
    pub release: &'a Release,
    pub deployment: &'a Deployment,
    pub environment: &'a Environment,
    pub channel: Option<&'a Channel>,
    pub task_id: &'a str,
}

pub struct DeploymentVariables {
    /// The release's variables, values in plain text.
    variables: Vec<Variable>,
    system: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
    context: ScopeContext,
    sensitive: Vec<String>,
    masker: Masker,
}

impl DeploymentVariables {
    /// Loads the release's variables, opening sensitive values with `key`
    /// and applying the deployment's prompted values.
    pub async fn load(
        store: &Store,
        key: &MasterKey,
        src: &Sources<'_>,
    ) -> Result<DeploymentVariables, String> {
        let snapshot_id = &src.release.project_variable_set_snapshot_id;
        let mut variables = if snapshot_id.is_empty() {
            vec![]
        } else {
            store
                .get::<VariableSet>(snapshot_id)
                .await
                .map_err(|e| e.to_string())?
                .map(|s| s.variables)
                .unwrap_or_default()
        };
        let mut sensitive = vec![];
        for v in &mut variables {
            if v.sensitive() {
                if let Some(sealed) = &v.value {
                    let plain = key.open(sealed).map_err(|e| {
                        format!("The sensitive variable '{}' could not be read: {e}", v.name)
                    })?;
                    sensitive.push(plain.clone());
                    v.value = Some(plain);
                }
            }
            if v.prompt.is_some() {
                let given = src
                    .deployment
                    .form_values
                    .get(&v.id)
                    .or_else(|| src.deployment.form_values.get(&v.name));
                if let Some(given) = given {
                    // Prompted values of sensitive variables are stored sealed.
                    let plain = if v.sensitive() {
                        let plain = key.open(given).map_err(|e| {
                            format!("The prompted value of '{}' could not be read: {e}", v.name)
                        })?;
                        sensitive.push(plain.clone());
                        plain
                    } else {
                        given.clone()
                    };
                    v.value = Some(plain);
                }
            }
        }
        let d = src.deployment;
        let mut system: Vec<(String, String)> = vec![
            ("Octopus.Project.Id", src.project.id.clone()),
            ("Octopus.Project.Name", src.project.name.clone()),
            ("Octopus.Release.Id", src.release.id.clone()),
            ("Octopus.Release.Number", src.release.version.clone()),
            (
                "Octopus.Release.Notes",
                src.release.release_notes.clone().unwrap_or_default(),
            ),
            ("Octopus.Environment.Id", src.environment.id.clone()),
            ("Octopus.Environment.Name", src.environment.name.clone()),
            ("Octopus.Deployment.Id", d.id.clone()),
            ("Octopus.Deployment.Name", d.name.clone()),
            (
                "Octopus.Deployment.Comments",
                d.comments.clone().unwrap_or_default(),
            ),
            ("Octopus.Deployment.CreatedBy.Id", d.deployed_by_id.clone()),
            (
                "Octopus.Deployment.CreatedBy.Username",
                d.deployed_by.clone(),
            ),
            ("Octopus.Task.Id", src.task_id.to_owned()),
            ("Octopus.Space.Id", d.space_id.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(space) = src.space {
            system.push(("Octopus.Space.Name".into(), space.name.clone()));
        }
        let mut channel_context = vec![src.release.channel_id.clone()];
        if let Some(channel) = src.channel {
            system.push(("Octopus.Release.Channel.Id".into(), channel.id.clone()));
            system.push(("Octopus.Release.Channel.Name".into(), channel.name.clone()));
            channel_context.push(channel.name.clone());
        }
        let context = ScopeContext {
            environment: vec![src.environment.id.clone(), src.environment.name.clone()],
            channel: channel_context,
            process_owner: vec![src.project.deployment_process_id.clone()],
            ..Default::default()
        };
        let masker = Masker::new(sensitive.iter().cloned());
        Ok(DeploymentVariables {
            variables,
            system,
            outputs: vec![],
            context,
            sensitive,
            masker,
        })
    }

    /// The variables at deployment level (step conditions), with the
    /// deployment's error so far for `Variable` run conditions.
    pub fn for_deployment(&self, error: Option<&str>) -> VariableDictionary {
        let mut dict = self.resolve(&self.context);
        if let Some(e) = error {
            dict.set("Octopus.Deployment.Error", "The deployment failed");
            dict.set("Octopus.Deployment.ErrorDetail", e);
        }
        dict
    }

    /// The variables one action sees on one machine.
    pub fn for_action(
        &self,
        step: &Step,
        step_number: usize,
        action: &Action,
        machine: &str,
        error: Option<&str>,
    ) -> VariableDictionary {
        let roles = step.target_roles();
        let context = ScopeContext {
            machine: vec![machine.to_owned()],
            // The built-in worker has no roles of its own; it stands in for
            // the step's targets, so role-scoped values follow the step.
            roles: roles.clone(),
            step_roles: roles.clone(),
            action: vec![
                action.id.clone(),
                action.name.clone(),
                step.id.clone(),
                step.name.clone(),
            ],
            ..self.context.clone()
        };
        let mut dict = self.resolve(&context);
        for (k, v) in [
            ("Octopus.Step.Id", step.id.clone()),
            ("Octopus.Step.Name", step.name.clone()),
            ("Octopus.Step.Number", step_number.to_string()),
            ("Octopus.Action.Id", action.id.clone()),
            ("Octopus.Action.Name", action.name.clone()),
            ("Octopus.Action.Number", step_number.to_string()),
            ("Octopus.Action.TargetRoles", roles.join(",")),
            ("Octopus.Machine.Name", machine.to_owned()),
        ] {
            dict.set(k, v);
        }
        if let Some(e) = error {
            dict.set("Octopus.Deployment.Error", "The deployment failed");
            dict.set("Octopus.Deployment.ErrorDetail", e);
        }
        dict
    }

    fn resolve(&self, context: &ScopeContext) -> VariableDictionary {
        let mut dict = VariableDictionary::new();
        for v in select(&self.variables, context) {
            dict.set(v.name.clone(), v.value.clone().unwrap_or_default());
        }
        // System variables describe this deployment; a user variable of the
        // same name cannot override them.
        for (k, v) in &self.system {
            dict.set(k.clone(), v.clone());
        }
        for (k, v) in &self.outputs {
            dict.set(k.clone(), v.clone());
        }
        dict
    }

    /// Records an output variable an action created on a machine, readable
    /// as `Octopus.Action[action].Output.name` and, per machine, as
    /// `Octopus.Action[action].Output[machine].name`.
    pub fn record_output(
        &mut self,
        action: &str,
        machine: &str,
        name: &str,
        value: &str,
        sensitive: bool,
    ) {
        for key in [
            format!("Octopus.Action[{action}].Output.{name}"),
            format!("Octopus.Action[{action}].Output[{machine}].{name}"),
        ] {
            match self
                .outputs
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            {
                Some(slot) => slot.1 = value.to_owned(),
                None => self.outputs.push((key, value.to_owned())),
            }
        }
        if sensitive && !value.is_empty() {
            self.add_sensitive(value);
        }
    }

    /// The output variables so far and every sensitive value, to record
    /// with a finished step.
    pub fn progress(&self) -> (Vec<(String, String)>, Vec<String>) {
        (self.outputs.clone(), self.sensitive.clone())
    }

    /// Puts back what [`DeploymentVariables::progress`] gave, on the node
    /// that takes a deployment over.
    pub fn restore(&mut self, outputs: Vec<(String, String)>, sensitive: Vec<String>) {
        for (key, value) in outputs {
            match self
                .outputs
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            {
                Some(slot) => slot.1 = value,
                None => self.outputs.push((key, value)),
            }
        }
        let new: Vec<String> = sensitive
            .into_iter()
            .filter(|v| !v.is_empty() && !self.sensitive.contains(v))
            .collect();
        if !new.is_empty() {
            self.sensitive.extend(new);
            self.masker = Masker::new(self.sensitive.iter().cloned());
        }
    }

    pub fn add_sensitive(&mut self, value: &str) {
        self.sensitive.push(value.to_owned());
        self.masker = Masker::new(self.sensitive.iter().cloned());
    }

    pub fn sensitive_values(&self) -> &[String] {
        &self.sensitive
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }
}

/// The deployment's variables shared by steps that run at the same time. Each
/// use takes the lock only briefly (to read a dictionary or record an output),
/// never across a script run.
pub struct SharedVariables(std::sync::Mutex<DeploymentVariables>);

impl SharedVariables {
    pub fn new(vars: DeploymentVariables) -> Self {
        SharedVariables(std::sync::Mutex::new(vars))
    }

    fn with<T>(&self, f: impl FnOnce(&mut DeploymentVariables) -> T) -> T {
        // A panic elsewhere cannot leave the variables half-written: every
        // change is a single push or assignment.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn for_deployment(&self, error: Option<&str>) -> VariableDictionary {
        self.with(|v| v.for_deployment(error))
    }

    pub fn for_action(
        &self,
        step: &Step,
        step_number: usize,
        action: &Action,
        machine: &str,
        error: Option<&str>,
    ) -> VariableDictionary {
        self.with(|v| v.for_action(step, step_number, action, machine, error))
    }

    /// The masker as it is now, and the sensitive values it masks.
    pub fn masking(&self) -> (Masker, Vec<String>) {
        self.with(|v| (v.masker().clone(), v.sensitive_values().to_vec()))
    }

    /// See [`DeploymentVariables::progress`].
    pub fn progress(&self) -> (Vec<(String, String)>, Vec<String>) {
        self.with(|v| v.progress())
    }

    /// See [`DeploymentVariables::restore`].
    pub fn restore(&self, outputs: Vec<(String, String)>, sensitive: Vec<String>) {
        self.with(|v| v.restore(outputs, sensitive))
    }

    pub fn record_output(
        &self,
        action: &str,
        machine: &str,
        name: &str,
        value: &str,
        sensitive: bool,
    ) {
        self.with(|v| v.record_output(action, machine, name, value, sensitive))
    }
}
