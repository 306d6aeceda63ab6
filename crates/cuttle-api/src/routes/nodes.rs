//! Server nodes (Octopus's `octopusservernodes`): the servers sharing this
//! installation's database, draining one, changing its task cap, removing
//! one that is gone, and which node answered (for load balancers).

use super::{Id, Q};
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page_of, resource, Linked};
use crate::route_table::{get, op, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::server_node::{node_id, ServerNode};
use cuttle_model::Permission;
use cuttle_service::nodes::{self, NodeUpdate};
use cuttle_service::paging::ListParams;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(r: Routes) -> Routes {
    r.at(
        "/api/octopusservernodes",
        get(
            list,
            op("Lists the server nodes on this installation's database, with which one leads")
                .requires(Permission::ConfigureServer)
                .query::<ListParams>()
                .page::<ServerNode>(),
        ),
    )
    .at(
        "/api/octopusservernodes/ping",
        get(
            ping,
            op(
                "Names the server node that answered (for load balancers' checks), with \
                whether it leads and what it applies now",
            )
            .public(),
        ),
    )
    .at(
        "/api/octopusservernodes/{id}",
        get(
            item,
            op("One server node")
                .requires(Permission::ConfigureServer)
                .resource::<ServerNode>(),
        )
        .put(
            update,
            op(
                "Changes a node's MaxConcurrentTasks, or drains it with IsInMaintenanceMode \
                (it finishes what it runs and takes nothing new)",
            )
            .requires(Permission::ConfigureServer)
            .body::<NodeBody>()
            .resource::<ServerNode>(),
        )
        .delete(
            delete,
            op("Removes a node that is offline (one that is online is refused)")
                .requires(Permission::ConfigureServer)
                .no_content(),
        ),
    )
}

impl Linked for ServerNode {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/octopusservernodes/{}", self.id)})
    }
    fn item_type() -> &'static str {
        "OctopusServerNode"
    }
}

async fn list(State(inst): State<AppState>, Q(params): Q<ListParams>) -> ApiResult<Json<Value>> {
    let all = nodes::list(&inst).await?;
    Ok(Json(page_of(all, &params, "/api/octopusservernodes")))
}

async fn item(State(inst): State<AppState>, Id(id): Id) -> ApiResult<Json<Value>> {
    Ok(Json(resource(&nodes::get(&inst, &id).await?)))
}

/// A change to a node, or the whole node as Octopus clients send it back:
/// fields left out stay as they are, read-only ones are ignored, and a
/// different `Name` is refused.
#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct NodeBody {
    name: Option<String>,
    max_concurrent_tasks: Option<i64>,
    is_in_maintenance_mode: Option<bool>,
}

async fn update(
    State(inst): State<AppState>,
    Id(id): Id,
    OctoJson(body): OctoJson<Value>,
) -> ApiResult<Json<Value>> {
    // A JSON array would otherwise bind to the fields in order.
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object (a server node, or the fields to change)",
        ));
    }
    let body: NodeBody = crate::json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("The request body has the wrong shape: {e}")))?;
    let change = NodeUpdate {
        name: body.name,
        max_concurrent_tasks: body.max_concurrent_tasks,
        is_in_maintenance_mode: body.is_in_maintenance_mode,
    };
    Ok(Json(resource(&nodes::update(&inst, &id, change).await?)))
}

async fn delete(State(inst): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    nodes::delete(&inst, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ping(State(inst): State<AppState>) -> Json<Value> {
    let name = &inst.config.node_name;
    Json(json!({
        "Id": node_id(name),
        "Name": name,
        "IsLeader": inst.is_leader(),
        // What this node applies now (a change made through another node
        // reaches it at its next heartbeat).
        "IsInMaintenanceMode": inst.runner.is_draining(),
        "MaxConcurrentTasks": inst.runner.capacity(),
        "RunningTaskCount": inst.runner.running_count(),
    }))
}
