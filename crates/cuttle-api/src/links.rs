//! `Links` for every resource, and the paged collection envelope. Links point
//! only at routes this server answers, so a client that follows them never
//! meets a 404.

use cuttle_model::*;
use cuttle_service::paging::ListParams;
use cuttle_service::variables::VariableSetView;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A resource's JSON with its `Links` added.
pub fn with_links<T: Serialize>(resource: &T, links: Value) -> Value {
    let mut v = serde_json::to_value(resource).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("Links".into(), links);
    }
    v
}

pub trait Linked {
    fn links(&self) -> Value;
    fn item_type() -> &'static str;
    /// Takes out of the serialized resource what must not leave the server.
    fn redact(_json: &mut Value) {}
}

impl Linked for Event {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/events/{}", self.id)})
    }
    fn item_type() -> &'static str {
        "Event"
    }
}

impl Linked for Space {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/spaces/{}", self.id), "SpaceHome": format!("/api/{}", self.id)})
    }
    fn item_type() -> &'static str {
        "Space"
    }
}

impl Linked for Environment {
    fn links(&self) -> Value {
        let base = format!("/api/{}/environments/{}", self.space_id, self.id);
        json!({"Self": base, "Machines": format!("{base}/machines")})
    }
    fn item_type() -> &'static str {
        "Environment"
    }
}

impl Linked for ProjectGroup {
    fn links(&self) -> Value {
        let base = format!("/api/{}/projectgroups/{}", self.space_id, self.id);
        json!({"Self": base, "Projects": format!("{base}/projects")})
    }
    fn item_type() -> &'static str {
        "ProjectGroup"
    }
}

impl Linked for Lifecycle {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/{}/lifecycles/{}", self.space_id, self.id)})
    }
    fn item_type() -> &'static str {
        "Lifecycle"
    }
}

impl Linked for Project {
    fn links(&self) -> Value {
        let base = format!("/api/{}/projects/{}", self.space_id, self.id);
        json!({
            "Self": base,
            "Releases": format!("{base}/releases"),
            "Channels": format!("{base}/channels"),
            "Variables": format!("/api/{}/variables/{}", self.space_id, self.variable_set_id),
            "DeploymentProcess": format!("/api/{}/deploymentprocesses/{}", self.space_id, self.deployment_process_id),
            "ProjectGroup": format!("/api/{}/projectgroups/{}", self.space_id, self.project_group_id),
            "Lifecycle": format!("/api/{}/lifecycles/{}", self.space_id, self.lifecycle_id),
        })
    }
    fn item_type() -> &'static str {
        "Project"
    }
}

impl Linked for Channel {
    fn links(&self) -> Value {
        json!({
            "Self": format!("/api/{}/channels/{}", self.space_id, self.id),
            "Project": format!("/api/{}/projects/{}", self.space_id, self.project_id),
        })
    }
    fn item_type() -> &'static str {
        "Channel"
    }
}

impl Linked for LibraryVariableSet {
    fn links(&self) -> Value {
        json!({
            "Self": format!("/api/{}/libraryvariablesets/{}", self.space_id, self.id),
            "Variables": format!("/api/{}/variables/{}", self.space_id, self.variable_set_id),
        })
    }
    fn item_type() -> &'static str {
        "LibraryVariableSet"
    }
}

impl Linked for VariableSetView {
    fn links(&self) -> Value {
        let s = &self.set.space_id;
        let owner = &self.set.owner_id;
        let owner_link = if owner.starts_with("LibraryVariableSets-") {
            format!("/api/{s}/libraryvariablesets/{owner}")
        } else {
            format!("/api/{s}/projects/{owner}")
        };
        json!({
            "Self": format!("/api/{s}/variables/{}", self.set.id),
            "Owner": owner_link,
        })
    }
    fn item_type() -> &'static str {
        "VariableSet"
    }
}

impl Linked for DeploymentProcess {
    fn links(&self) -> Value {
        json!({
            "Self": format!("/api/{}/deploymentprocesses/{}", self.space_id, self.id),
            "Project": format!("/api/{}/projects/{}", self.space_id, self.project_id),
        })
    }
    fn item_type() -> &'static str {
        "DeploymentProcess"
    }
}

impl Linked for Release {
    fn links(&self) -> Value {
        let base = format!("/api/{}/releases/{}", self.space_id, self.id);
        let mut links = json!({
            "Self": base,
            "Project": format!("/api/{}/projects/{}", self.space_id, self.project_id),
            "Channel": format!("/api/{}/channels/{}", self.space_id, self.channel_id),
            "Deployments": format!("{base}/deployments"),
            "Progression": format!("{base}/progression"),
            "ProjectDeploymentProcessSnapshot": format!("/api/{}/deploymentprocesses/{}", self.space_id, self.project_deployment_process_snapshot_id),
        });
        // Releases made before variables were frozen have no snapshot.
        if !self.project_variable_set_snapshot_id.is_empty() {
            links["ProjectVariableSnapshot"] = json!(format!(
                "/api/{}/variables/{}",
                self.space_id, self.project_variable_set_snapshot_id
            ));
        }
        links
    }
    fn item_type() -> &'static str {
        "Release"
    }
}

impl Linked for Deployment {
    fn links(&self) -> Value {
        let s = &self.space_id;
        json!({
            "Self": format!("/api/{s}/deployments/{}", self.id),
            "Release": format!("/api/{s}/releases/{}", self.release_id),
            "Environment": format!("/api/{s}/environments/{}", self.environment_id),
            "Project": format!("/api/{s}/projects/{}", self.project_id),
            "Task": format!("/api/tasks/{}", self.task_id),
        })
    }
    fn item_type() -> &'static str {
        "Deployment"
    }
    /// Prompted values of sensitive variables are kept sealed; even sealed
    /// they are nobody's business outside the server.
    fn redact(json: &mut Value) {
        if let Some(Value::Object(values)) = json.get_mut("FormValues") {
            values.retain(|_, v| !v.as_str().is_some_and(cuttle_store::secrets::is_sealed));
        }
    }
}

impl Linked for ServerTask {
    fn links(&self) -> Value {
        let base = format!("/api/tasks/{}", self.id);
        json!({
            "Self": base,
            "Details": format!("{base}/details"),
            "Raw": format!("{base}/raw"),
            "Cancel": format!("{base}/cancel"),
        })
    }
    fn item_type() -> &'static str {
        "Task"
    }
}

impl Linked for Interruption {
    fn links(&self) -> Value {
        let base = format!("/api/{}/interruptions/{}", self.space_id, self.id);
        json!({
            "Self": base,
            "Submit": format!("{base}/submit"),
            "Responsible": format!("{base}/responsible"),
            "Task": format!("/api/tasks/{}", self.task_id),
        })
    }
    fn item_type() -> &'static str {
        "Interruption"
    }
}

impl Linked for Machine {
    fn links(&self) -> Value {
        let s = &self.space_id;
        json!({
            "Self": format!("/api/{s}/machines/{}", self.id),
            "MachinePolicy": format!("/api/{s}/machinepolicies/{}", self.machine_policy_id),
        })
    }
    fn item_type() -> &'static str {
        "DeploymentTarget"
    }
}

impl Linked for Worker {
    fn links(&self) -> Value {
        let s = &self.space_id;
        json!({
            "Self": format!("/api/{s}/workers/{}", self.id),
            "MachinePolicy": format!("/api/{s}/machinepolicies/{}", self.machine_policy_id),
        })
    }
    fn item_type() -> &'static str {
        "Worker"
    }
}

impl Linked for WorkerPool {
    fn links(&self) -> Value {
        let base = format!("/api/{}/workerpools/{}", self.space_id, self.id);
        json!({"Self": base, "Workers": format!("{base}/workers")})
    }
    fn item_type() -> &'static str {
        "WorkerPool"
    }
}

impl Linked for MachinePolicy {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/{}/machinepolicies/{}", self.space_id, self.id)})
    }
    fn item_type() -> &'static str {
        "MachinePolicy"
    }
}

impl Linked for cuttle_model::Subscription {
    fn links(&self) -> Value {
        let base = format!("/api/{}/subscriptions/{}", self.space_id, self.id);
        json!({"Self": base, "Deliveries": format!("{base}/deliveries")})
    }
    fn item_type() -> &'static str {
        "Subscription"
    }
}

impl Linked for cuttle_service::subscriptions::DeliveryRecord {
    fn links(&self) -> Value {
        json!({"Event": format!("/api/events/{}", self.event_id)})
    }
    fn item_type() -> &'static str {
        "SubscriptionDelivery"
    }
}

impl Linked for User {
    fn links(&self) -> Value {
        let base = format!("/api/users/{}", self.id);
        json!({"Self": base, "ApiKeys": format!("{base}/apikeys"), "Permissions": format!("{base}/permissions")})
    }
    fn item_type() -> &'static str {
        "User"
    }
}

impl Linked for ApiKey {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/users/{}/apikeys/{}", self.user_id, self.id)})
    }
    fn item_type() -> &'static str {
        "ApiKey"
    }
}

impl Linked for Team {
    fn links(&self) -> Value {
        let base = format!("/api/teams/{}", self.id);
        json!({"Self": base, "ScopedUserRoles": format!("{base}/scopeduserroles")})
    }
    fn item_type() -> &'static str {
        "Team"
    }
}

impl Linked for UserRole {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/userroles/{}", self.id)})
    }
    fn item_type() -> &'static str {
        "UserRole"
    }
}

impl Linked for ScopedUserRole {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/scopeduserroles/{}", self.id)})
    }
    fn item_type() -> &'static str {
        "ScopedUserRole"
    }
}

pub fn resource<T: Serialize + Linked>(r: &T) -> Value {
    let mut v = with_links(r, r.links());
    T::redact(&mut v);
    v
}

/// The paged envelope Octopus collections use.
pub fn page<T: Serialize + Linked>(
    items: &[T],
    total: i64,
    params: &ListParams,
    path: &str,
) -> Value {
    let take = params.take();
    let skip = params.skip();
    let pages = if take == 0 {
        0
    } else {
        (total + take - 1) / take
    };
    let mut links = Map::new();
    links.insert(
        "Self".into(),
        json!(format!("{path}?skip={skip}&take={take}")),
    );
    links.insert(
        "Template".into(),
        json!(format!("{path}{{?skip,take,ids,partialName}}")),
    );
    links.insert(
        "Page.All".into(),
        json!(format!(
            "{path}?skip=0&take={}",
            cuttle_service::paging::TAKE_ALL
        )),
    );
    links.insert(
        "Page.Current".into(),
        json!(format!("{path}?skip={skip}&take={take}")),
    );
    // `skip` comes from the query string: near i64::MAX the sum would overflow.
    let next = skip.saturating_add(take);
    if next < total {
        links.insert(
            "Page.Next".into(),
            json!(format!("{path}?skip={next}&take={take}")),
        );
    }
    let last_skip = if pages > 0 { (pages - 1) * take } else { 0 };
    links.insert(
        "Page.Last".into(),
        json!(format!("{path}?skip={last_skip}&take={take}")),
    );
    json!({
        "ItemType": T::item_type(),
        "TotalResults": total,
        "ItemsPerPage": take,
        "NumberOfPages": pages,
        "LastPageNumber": (pages - 1).max(0),
        "Items": items.iter().map(resource).collect::<Vec<_>>(),
        "Links": Value::Object(links),
    })
}

/// Pages a list that was filtered in memory.
pub fn page_of<T: Serialize + Linked>(all: Vec<T>, params: &ListParams, path: &str) -> Value {
    let total = all.len() as i64;
    let items: Vec<T> = all
        .into_iter()
        .skip(params.skip() as usize)
        .take(params.take() as usize)
        .collect();
    page(&items, total, params, path)
}
