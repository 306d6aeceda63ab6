//! Projects, their channels and their deployment processes.

use crate::actor::Actor;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::{guid, process_id_for, variable_set_id_for, Collection};
use cuttle_model::process::PROP_CONDITION_EXPRESSION;
use cuttle_model::project::DEFAULT_CHANNEL_NAME;
use cuttle_model::{
    slugify, Channel, DeploymentProcess, Lifecycle, Project, ProjectGroup, Step, VariableSet,
};
use cuttle_store::{DocumentQuery, Store};
use std::collections::HashSet;

async fn validate_project(store: &Store, space_id: &str, p: &Project) -> Result<()> {
    let mut errors = vec![];
    check_name("project", &p.name, &mut errors);
    if p.project_group_id.is_empty() {
        errors.push(
            "ProjectGroupId is required: say which project group the project belongs to".into(),
        );
    } else if get_in_space::<ProjectGroup>(store, space_id, &p.project_group_id)
        .await
        .is_err()
    {
        errors.push(format!(
            "The project group '{}' does not exist",
            p.project_group_id
        ));
    }
    if p.lifecycle_id.is_empty() {
        errors.push(
            "LifecycleId is required: say which lifecycle the project's releases follow".into(),
        );
    } else if get_in_space::<Lifecycle>(store, space_id, &p.lifecycle_id)
        .await
        .is_err()
    {
        errors.push(format!("The lifecycle '{}' does not exist", p.lifecycle_id));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// Creates a project together with its (empty) deployment process and its
/// default channel.
pub async fn create_project(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut project: Project,
) -> Result<Project> {
    validate_project(store, space_id, &project).await?;
    crate::variables::check_included_sets(store, space_id, &project).await?;
    let mut tx = store.begin().await?;
    project.id = tx.next_id(Collection::Projects).await?;
    project.space_id = space_id.into();
    project.name = project.name.trim().to_owned();
    project.slug = slugify(&project.name);
    project.deployment_process_id = process_id_for(&project.id);
    project.variable_set_id = variable_set_id_for(&project.id);
    tx.insert(&project).await?;
    let process = DeploymentProcess {
        id: project.deployment_process_id.clone(),
        space_id: space_id.into(),
        project_id: project.id.clone(),
        version: 0,
        last_snapshot_id: None,
        steps: vec![],
    };
    tx.insert(&process).await?;
    tx.insert(&VariableSet {
        id: project.variable_set_id.clone(),
        space_id: space_id.into(),
        owner_id: project.id.clone(),
        version: 0,
        variables: vec![],
    })
    .await?;
    let channel = Channel {
        id: tx.next_id(Collection::Channels).await?,
        space_id: space_id.into(),
        project_id: project.id.clone(),
        name: DEFAULT_CHANNEL_NAME.into(),
        slug: slugify(DEFAULT_CHANNEL_NAME),
        is_default: true,
        ..Default::default()
    };
    tx.insert(&channel).await?;
    let message = format!("project {} was created", project.name);
    audit_change(&mut tx, caller, None, Some(&project), message, vec![]).await?;
    tx.commit().await?;
    Ok(project)
}

pub async fn update_project(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut project: Project,
) -> Result<Project> {
    let existing: Project = get_in_space(store, space_id, id).await?;
    validate_project(store, space_id, &project).await?;
    crate::variables::check_included_sets(store, space_id, &project).await?;
    project.id = existing.id.clone();
    project.space_id = existing.space_id.clone();
    project.name = project.name.trim().to_owned();
    project.slug = slugify(&project.name);
    project.deployment_process_id = existing.deployment_process_id.clone();
    project.variable_set_id = existing.variable_set_id.clone();
    let mut tx = store.begin().await?;
    tx.update(&project).await?;
    let message = format!("project {} was modified", project.name);
    audit_change(
        &mut tx,
        caller,
        Some(&existing),
        Some(&project),
        message,
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(project)
}

/// Deletes a project with everything it owns (process, channels, releases,
/// deployments). Its finished tasks stay, as history.
pub async fn delete_project(store: &Store, caller: &Actor, space_id: &str, id: &str) -> Result<()> {
    let project: Project = get_in_space(store, space_id, id).await?;
    // One statement a kind, whatever the project's history holds.
    let mut tx = store.begin().await?;
    tx.delete_owned::<Channel>(space_id, &project.id).await?;
    tx.delete_owned::<cuttle_model::Release>(space_id, &project.id)
        .await?;
    tx.delete_owned::<cuttle_model::Deployment>(space_id, &project.id)
        .await?;
    tx.delete_owned::<cuttle_store::ProcessSnapshot>(space_id, &project.id)
        .await?;
    tx.delete_owned::<VariableSet>(space_id, &project.id)
        .await?;
    tx.delete::<DeploymentProcess>(&project.deployment_process_id)
        .await?;
    tx.delete::<Project>(&project.id).await?;
    let message = format!("project {} was deleted", project.name);
    audit_change(&mut tx, caller, Some(&project), None, message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

/// Finds a project by id, slug or exact name.
pub async fn find_project(store: &Store, space_id: &str, id_or_name: &str) -> Result<Project> {
    if let Ok(p) = get_in_space::<Project>(store, space_id, id_or_name).await {
        return Ok(p);
    }
    if let Some(p) = store
        .find_by_name::<Project>(Some(space_id), None, id_or_name)
        .await?
    {
        return Ok(p);
    }
    let q = DocumentQuery::in_space(space_id);
    store
        .list::<Project>(&q)
        .await?
        .items
        .into_iter()
        .find(|p| p.slug == id_or_name)
        .ok_or_else(|| ServiceError::NotFound(format!("The project '{id_or_name}' was not found")))
}

pub async fn default_channel(store: &Store, project: &Project) -> Result<Channel> {
    let q = DocumentQuery {
        parent_ids: vec![project.id.clone()],
        ..Default::default()
    };
    let channels = store.list::<Channel>(&q).await?.items;
    channels
        .iter()
        .find(|c| c.is_default)
        .or(channels.first())
        .cloned()
        .ok_or_else(|| {
            ServiceError::Internal(format!("The project '{}' has no channel", project.name))
        })
}

/// A process update as clients send it: the steps, and the version they loaded.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProcessUpdate {
    pub version: Option<i64>,
    pub steps: Vec<Step>,
}

fn validate_steps(steps: &mut [Step]) -> Result<()> {
    let mut errors = vec![];
    let mut names = HashSet::new();
    let mut action_names = HashSet::new();
    for (i, step) in steps.iter_mut().enumerate() {
        let label = format!("Step {}", i + 1);
        if step.id.is_empty() {
            step.id = guid();
        }
        step.name = step.name.trim().to_owned();
        if step.name.is_empty() {
            errors.push(format!("{label} needs a name"));
        } else if let Some(problem) = crate::text::name_problem("Name", "step", &step.name) {
            errors.push(format!("{label}: {problem}"));
        } else if !names.insert(step.name.to_lowercase()) {
            errors.push(format!(
                "{label}: the step name '{}' is used twice; step names must be unique",
                step.name
            ));
        }
        if step.slug.is_empty() {
            step.slug = slugify(&step.name);
        }
        if step.condition.is_empty() {
            step.condition = "Success".into();
        }
        if !["Success", "Failure", "Always", "Variable"].contains(&step.condition.as_str()) {
            errors.push(format!(
                "{label}: Condition must be Success, Failure, Always or Variable, not '{}'",
                step.condition
            ));
        }
        if step.condition == "Variable"
            && step
                .property(PROP_CONDITION_EXPRESSION)
                .is_none_or(|e| e.trim().is_empty())
        {
            errors.push(format!(
                "{label}: a Variable run condition needs the expression in the step property {PROP_CONDITION_EXPRESSION}"
            ));
        }
        if step.start_trigger.is_empty() {
            step.start_trigger = "StartAfterPrevious".into();
        }
        match step.start_trigger.as_str() {
            "StartAfterPrevious" => {}
            // The first step has nothing to start with.
            "StartWithPrevious" if i == 0 => errors.push(format!(
                "{label} ('{}') cannot start with the previous step: it is the first step",
                step.name
            )),
            "StartWithPrevious" => {}
            other => errors.push(format!(
                "{label}: StartTrigger must be StartAfterPrevious or StartWithPrevious, not '{other}'"
            )),
        }
        if step.actions.is_empty() {
            errors.push(format!(
                "{label} ('{}') needs at least one action",
                step.name
            ));
        }
        let single = step.actions.len() == 1;
        for (j, action) in step.actions.iter_mut().enumerate() {
            if action.id.is_empty() {
                action.id = guid();
            }
            if action.name.trim().is_empty() && single {
                action.name = step.name.clone();
            }
            action.name = action.name.trim().to_owned();
            if action.name.is_empty() {
                errors.push(format!("{label}, action {} needs a name", j + 1));
            } else if let Some(problem) = crate::text::name_problem("Name", "action", &action.name)
            {
                errors.push(format!("{label}, action {}: {problem}", j + 1));
            } else if !action_names.insert(action.name.to_lowercase()) {
                errors.push(format!(
                    "{label}: the action name '{}' is used twice; action names must be unique",
                    action.name
                ));
            }
            if action.slug.is_empty() {
                action.slug = slugify(&action.name);
            }
            if action.action_type.trim().is_empty() {
                errors.push(format!(
                    "{label}: the action '{}' needs an ActionType (for example Octopus.Script)",
                    action.name
                ));
            }
            // Octopus clients send an empty container (`Image: null`); an
            // empty string means the same.
            if let Some(image) = action
                .container
                .image
                .take()
                .filter(|i| !i.trim().is_empty())
            {
                errors.push(format!(
                    "{label}: the action '{}' asks to run in the container image '{}', but Cuttle runs steps on its workers and agents, not in execution containers; leave Container.Image null",
                    action.name,
                    image.trim()
                ));
            }
        }
        for problem in step_content_problems(step) {
            errors.push(format!("{label} ('{}'): {problem}", step.name));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// What a step's primary action needs before it can do anything: an inline
/// script needs its body, a package step the package it deploys. Saving a
/// process refuses such a step (the engine would only fail it at
/// deployment); editors call this to say so beside the field.
pub fn step_content_problems(step: &Step) -> Vec<String> {
    use cuttle_model::process::{
        PACKAGE_ACTION_TYPE, PROP_SCRIPT_BODY, PROP_SCRIPT_SOURCE, SCRIPT_ACTION_TYPE,
    };
    let Some(action) = step.actions.first() else {
        return vec![];
    };
    let mut problems = vec![];
    let inline = action
        .property(PROP_SCRIPT_SOURCE)
        .is_none_or(|s| s.eq_ignore_ascii_case("Inline"));
    if action.action_type == SCRIPT_ACTION_TYPE
        && inline
        && action
            .property(PROP_SCRIPT_BODY)
            .is_none_or(|b| b.trim().is_empty())
    {
        problems.push("The script is empty: write the script this step runs".to_owned());
    }
    if action.action_type == PACKAGE_ACTION_TYPE
        && action
            .packages
            .iter()
            .all(|p| p.package_id.trim().is_empty())
    {
        problems.push("A package ID is required: name the package this step deploys".to_owned());
    }
    problems
}

pub async fn process_of_project(
    store: &Store,
    space_id: &str,
    project_id: &str,
) -> Result<DeploymentProcess> {
    let project: Project = get_in_space(store, space_id, project_id).await?;
    get_in_space(store, space_id, &project.deployment_process_id).await
}

/// Replaces a process's steps. A client that loaded an older version than
/// the stored one gets a conflict instead of silently undoing someone's edit.
pub async fn update_process(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    process_id: &str,
    update: ProcessUpdate,
) -> Result<DeploymentProcess> {
    let mut process: DeploymentProcess = get_in_space(store, space_id, process_id).await?;
    if let Some(v) = update.version {
        if v != process.version {
            return Err(ServiceError::Conflict(format!(
                "The deployment process was changed by someone else since you loaded it (you have version {v}, it is now at version {}). Reload it and make your change again.",
                process.version
            )));
        }
    }
    let mut steps = update.steps;
    validate_steps(&mut steps)?;
    process.steps = steps;
    process.version += 1;
    let mut tx = store.begin().await?;
    // Re-read inside the transaction so two concurrent saves cannot both win.
    let current: DeploymentProcess = tx
        .get(process_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("deployment process", process_id))?;
    if current.version + 1 != process.version {
        return Err(ServiceError::Conflict("The deployment process was changed by someone else while saving; reload it and try again.".into()));
    }
    tx.update(&process).await?;
    let message = format!("deployment process {} was modified", process.id);
    let project = vec![process.project_id.clone()];
    audit_change(
        &mut tx,
        caller,
        Some(&current),
        Some(&process),
        message,
        project,
    )
    .await?;
    tx.commit().await?;
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::Action;

    #[test]
    fn step_validation_fills_ids_and_lists_problems() {
        let mut ok = vec![Step {
            name: "Hello".into(),
            actions: vec![Action {
                action_type: "Octopus.Script".into(),
                properties: [(
                    cuttle_model::process::PROP_SCRIPT_BODY.to_owned(),
                    serde_json::Value::from("echo hello"),
                )]
                .into(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        validate_steps(&mut ok).unwrap();
        assert!(!ok[0].id.is_empty() && !ok[0].actions[0].id.is_empty());
        assert_eq!(ok[0].actions[0].name, "Hello");

        let mut bad = vec![
            ok[0].clone(),
            ok[0].clone(),
            Step {
                name: " ".into(),
                ..Default::default()
            },
        ];
        let Err(ServiceError::BadRequest { errors, .. }) = validate_steps(&mut bad) else {
            panic!("expected errors")
        };
        assert!(
            errors.iter().any(|e| e.contains("used twice")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("needs a name")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("at least one action")),
            "{errors:?}"
        );
    }
}
