//! Deployments: a release sent to an environment. Creating one queues its
//! server task in the same transaction, then wakes the runner.

use crate::actor::Actor;
use crate::progression;
use crate::projects::find_project;
use crate::releases::find_release;
use crate::resources::{audit_changed, get_in_space};
use crate::{Instance, Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::{
    Deployment, Environment, Permission, Project, Release, Scope, ServerTask, Timestamp,
    VariableSet,
};
use cuttle_store::{MasterKey, NewTask, Store};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A deployment as clients ask for it (`POST /deployments`).
#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct NewDeployment {
    pub release_id: String,
    pub environment_id: String,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub comments: Option<String>,
    pub form_values: BTreeMap<String, String>,
    pub use_guided_failure: Option<bool>,
    pub skip_actions: Vec<String>,
    pub specific_machine_ids: Vec<String>,
    pub excluded_machine_ids: Vec<String>,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    pub queue_time: Option<Timestamp>,
    pub queue_time_expiry: Option<Timestamp>,
}

/// Everything checked and loaded, ready to write.
pub(crate) struct Checked {
    new: NewDeployment,
    release: Release,
    project: Project,
    environment: Environment,
    /// Why the system queued it, for the audit event; `None` when a person did.
    automatic: Option<String>,
}

impl Checked {
    pub(crate) fn automatic(self, why: String) -> Self {
        Checked {
            automatic: Some(why),
            ..self
        }
    }
}

/// Validates a deployment and loads what writing it needs. Reads only, so it
/// runs before the transaction opens.
/// Refuses a deployment the caller may not make: a release of a project
/// they may not see is not there for them; one they see but may not deploy
/// to this environment is refused naming `DeploymentCreate` and where.
fn authorize(
    caller: &Actor,
    space_id: &str,
    release: &Release,
    project: &Project,
    environment: &Environment,
) -> Result<()> {
    let scope = Scope::space(space_id)
        .project(&project.id)
        .project_group(&project.project_group_id);
    if !caller.may(Permission::ProjectView, &scope) {
        return Err(ServiceError::not_found("release", &release.id));
    }
    caller.require(
        Permission::DeploymentCreate,
        &scope.environment(&environment.id),
    )
}

pub(crate) async fn check(
    store: &Store,
    key: &MasterKey,
    caller: &Actor,
    space_id: &str,
    mut new: NewDeployment,
) -> Result<Checked> {
    let mut missing = vec![];
    if new.release_id.is_empty() {
        missing.push("ReleaseId is required: say which release to deploy".to_owned());
    }
    if new.environment_id.is_empty() {
        missing.push("EnvironmentId is required: say where to deploy".to_owned());
    }
    if !missing.is_empty() {
        return Err(ServiceError::invalid(missing));
    }
    let release: Release = get_in_space(store, space_id, &new.release_id).await?;
    let environment: Environment = get_in_space(store, space_id, &new.environment_id).await?;
    let project: Project = get_in_space(store, space_id, &release.project_id).await?;
    if let Some(pid) = new.project_id.as_deref().filter(|p| !p.is_empty()) {
        if pid != project.id {
            return Err(ServiceError::bad_request(format!(
                "The release '{}' ({}) belongs to the project '{}', not to '{pid}'",
                release.version, release.id, project.name
            )));
        }
    }
    // Who may deploy is settled before whether the release may go there.
    authorize(caller, space_id, &release, &project, &environment)?;
    if project.is_disabled {
        return Err(ServiceError::bad_request(format!(
            "The project '{}' is disabled, so it cannot be deployed",
            project.name
        )));
    }
    if let Some(t) = &new.tenant_id {
        if !t.is_empty() {
            return Err(ServiceError::bad_request(
                "Tenanted deployments are not supported yet",
            ));
        }
    }
    let evaluated = progression::evaluate(store, &release, &project).await?;
    if let Err(refusal) = evaluated.progression.check(&environment.id) {
        return Err(ServiceError::bad_request(
            refusal.message(&release.version, &evaluated.lifecycle.name),
        ));
    }
    new.form_values = prompted_values(store, key, &release, &environment, new.form_values).await?;
    Ok(Checked {
        new,
        release,
        project,
        environment,
        automatic: None,
    })
}

pub(crate) async fn write(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    checked: Vec<Checked>,
) -> Result<Vec<(Deployment, ServerTask)>> {
    for c in &checked {
        authorize(caller, space_id, &c.release, &c.project, &c.environment)?;
    }
    let mut tx = inst.store.begin().await?;
    let mut out = vec![];
    for Checked {
        new,
        release,
        project,
        environment,
        automatic,
    } in checked
    {
        let id = tx.next_id(Collection::Deployments).await?;
        let description = format!(
            "Deploy {} release {} to {}",
            project.name, release.version, environment.name
        );
        let task = tx
            .insert_task(NewTask {
                space_id: Some(space_id.into()),
                name: "Deploy".into(),
                description: description.clone(),
                arguments: serde_json::json!({"DeploymentId": id}),
                queue_time: new.queue_time,
                queue_time_expiry: new.queue_time_expiry,
                project_id: Some(project.id.clone()),
                environment_id: Some(environment.id.clone()),
                deployment_id: Some(id.clone()),
            })
            .await?;
        let deployment = Deployment {
            id,
            space_id: space_id.into(),
            name: format!("Deploy to {}", environment.name),
            release_id: release.id.clone(),
            environment_id: environment.id.clone(),
            project_id: project.id.clone(),
            channel_id: release.channel_id.clone(),
            tenant_id: None,
            task_id: task.id.clone(),
            deployment_process_id: release.project_deployment_process_snapshot_id.clone(),
            comments: new.comments,
            form_values: new.form_values,
            use_guided_failure: cuttle_model::interruption::resolve_guided_failure(
                new.use_guided_failure,
                &project.default_guided_failure_mode,
                environment.use_guided_failure,
            ),
            skip_actions: new.skip_actions,
            specific_machine_ids: new.specific_machine_ids,
            excluded_machine_ids: new.excluded_machine_ids,
            force_package_download: new.force_package_download,
            force_package_redeployment: new.force_package_redeployment,
            queue_time: new.queue_time,
            queue_time_expiry: new.queue_time_expiry,
            created: Some(Timestamp::now()),
            deployed_by: caller.username.clone(),
            deployed_by_id: caller.id.clone(),
            failure_encountered: false,
        };
        tx.insert(&deployment).await?;
        audit_changed(
            &mut tx,
            caller,
            Some(space_id),
            "DeploymentQueued",
            match automatic {
                Some(why) => format!("{description}. {why}"),
                None => description,
            },
            vec![
                deployment.id.clone(),
                release.id,
                project.id,
                environment.id,
                task.id.clone(),
            ],
            None,
            Some(&deployment),
        )
        .await?;
        out.push((deployment, task));
    }
    tx.commit().await?;
    inst.runner.wake();
    Ok(out)
}

pub async fn create_deployment(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    new: NewDeployment,
) -> Result<Deployment> {
    let checked = check(&inst.store, &inst.master_key, caller, space_id, new).await?;
    let mut written = write(inst, caller, space_id, vec![checked]).await?;
    Ok(written.remove(0).0)
}

/// Deploys one release to several environments: every deployment is checked
/// before any is written, and all are queued in one transaction, so a refusal
/// for one environment queues nothing.
pub async fn create_deployments(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    new: Vec<NewDeployment>,
) -> Result<Vec<(Deployment, ServerTask)>> {
    if new.is_empty() {
        return Err(ServiceError::invalid(vec![
            "EnvironmentId is required: say where to deploy".to_owned(),
        ]));
    }
    let mut checked = vec![];
    for n in new {
        checked.push(check(&inst.store, &inst.master_key, caller, space_id, n).await?);
    }
    write(inst, caller, space_id, checked).await
}

/// The release's prompted variables that apply in any of `environment_ids`
/// (all of them when it is empty), as frozen with the release.
pub async fn prompted_variables(
    store: &Store,
    release: &Release,
    environment_ids: &[String],
) -> Result<Vec<cuttle_model::Variable>> {
    let variables = match release.project_variable_set_snapshot_id.as_str() {
        "" => vec![],
        id => store
            .get::<VariableSet>(id)
            .await?
            .map(|s| s.variables)
            .unwrap_or_default(),
    };
    Ok(variables
        .into_iter()
        .filter(|v| v.prompt.is_some() && prompt_applies(v, environment_ids))
        .collect())
}

/// Whether a prompted variable is asked for when deploying to any of
/// `environment_ids` (always when it is empty or the variable is unscoped).
pub fn prompt_applies(variable: &cuttle_model::Variable, environment_ids: &[String]) -> bool {
    variable.scope.environment.is_empty()
        || environment_ids.is_empty()
        || environment_ids
            .iter()
            .any(|e| variable.scope.environment.contains(e))
}

/// `POST /api/{space}/deployments/create/untenanted/v1`.
#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateDeploymentCommand {
    pub project_name: String,
    pub release_version: String,
    pub environment_names: Vec<String>,
    pub use_guided_failure: Option<bool>,
    pub specific_machine_names: Vec<String>,
    pub excluded_machine_names: Vec<String>,
    pub skip_step_names: Vec<String>,
    pub run_at: Option<Timestamp>,
    pub no_run_after: Option<Timestamp>,
    pub variables: BTreeMap<String, String>,
    pub force_package_download: bool,
}

/// Deploys a release, named by project and version, to environments named by
/// name: every name is checked before anything is written, and all the
/// deployments are queued in one transaction.
pub async fn create_deployments_by_name(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    cmd: CreateDeploymentCommand,
) -> Result<Vec<(Deployment, ServerTask)>> {
    let mut errors = vec![];
    if cmd.project_name.trim().is_empty() {
        errors.push("ProjectName is required".to_owned());
    }
    if cmd.release_version.trim().is_empty() {
        errors.push("ReleaseVersion is required".to_owned());
    }
    if cmd.environment_names.is_empty() {
        errors.push("EnvironmentNames is required: name at least one environment".to_owned());
    }
    if !errors.is_empty() {
        return Err(ServiceError::invalid(errors));
    }
    if !cmd.specific_machine_names.is_empty() || !cmd.excluded_machine_names.is_empty() {
        return Err(ServiceError::bad_request(
            "Deployment targets are not supported yet, so machine names cannot be given",
        ));
    }
    let project = find_project(&inst.store, space_id, cmd.project_name.trim()).await?;
    let release = find_release(&inst.store, &project, cmd.release_version.trim()).await?;
    let mut checked = vec![];
    for name in &cmd.environment_names {
        let env = inst
            .store
            .find_by_name::<Environment>(Some(space_id), None, name.trim())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("The environment '{name}' was not found"))
            })?;
        let new = NewDeployment {
            release_id: release.id.clone(),
            environment_id: env.id,
            project_id: Some(project.id.clone()),
            form_values: cmd.variables.clone(),
            use_guided_failure: cmd.use_guided_failure,
            skip_actions: cmd.skip_step_names.clone(),
            force_package_download: cmd.force_package_download,
            queue_time: cmd.run_at,
            queue_time_expiry: cmd.no_run_after,
            ..Default::default()
        };
        checked.push(check(&inst.store, &inst.master_key, caller, space_id, new).await?);
    }
    write(inst, caller, space_id, checked).await
}

/// Checks the values given for the release's prompted variables (by variable
/// id, as `FormValues` has them, or by name, as the executions API does) and
/// returns them keyed by variable id, sensitive ones sealed. A required prompt
/// without a value, or a value for something that is not a prompted variable,
/// is refused.
async fn prompted_values(
    store: &Store,
    key: &MasterKey,
    release: &Release,
    environment: &Environment,
    given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let prompted =
        prompted_variables(store, release, std::slice::from_ref(&environment.id)).await?;
    let mut errors = vec![];
    for k in given.keys() {
        if !prompted
            .iter()
            .any(|v| &v.id == k || v.name.eq_ignore_ascii_case(k))
        {
            errors.push(format!(
                "'{k}' is not a prompted variable of release {} in {}",
                release.version, environment.name
            ));
        }
    }
    let mut out = BTreeMap::new();
    for v in &prompted {
        let value = given.get(&v.id).or_else(|| {
            given
                .iter()
                .find(|(k, _)| v.name.eq_ignore_ascii_case(k))
                .map(|(_, x)| x)
        });
        let required = v.prompt.as_ref().is_some_and(|p| p.required);
        match value {
            Some(value) if !value.is_empty() || !required => {
                let stored = if v.sensitive() {
                    key.seal(value)
                } else {
                    value.clone()
                };
                out.insert(v.id.clone(), stored);
            }
            _ if required && v.value.as_deref().unwrap_or_default().is_empty() => {
                let label = v
                    .prompt
                    .as_ref()
                    .map(|p| p.label.as_str())
                    .unwrap_or_default();
                errors.push(format!(
                    "The prompted variable '{}'{} needs a value",
                    v.name,
                    if label.is_empty() || label == v.name {
                        String::new()
                    } else {
                        format!(" ({label})")
                    }
                ));
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ServiceError::invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::prompt_applies;
    use cuttle_model::Variable;

    #[test]
    fn a_prompt_applies_where_it_is_scoped() {
        let mut v = Variable::default();
        let (dev, prod) = ("Environments-1".to_owned(), "Environments-2".to_owned());
        assert!(prompt_applies(&v, std::slice::from_ref(&prod)));
        v.scope.environment = vec![dev.clone()];
        assert!(prompt_applies(&v, std::slice::from_ref(&dev)));
        assert!(!prompt_applies(&v, std::slice::from_ref(&prod)));
        assert!(prompt_applies(&v, &[prod, dev]));
        assert!(prompt_applies(&v, &[]));
    }
}
