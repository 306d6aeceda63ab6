//! `GET /api/{space}/releases/{id}/deployments/preview/{environmentId}`: the
//! plan a deployment would follow, without running anything.

use crate::error::ApiResult;
use crate::links::with_links;
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use cuttle_model::Permission;
use cuttle_service::preview::{preview_deployment, DeploymentPreview};
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn routes(r: Routes) -> Routes {
    r.space(
        "/releases/{id}/deployments/preview/{environment}",
        get(
            preview,
            op("The plan a deployment of the release to the environment would follow")
                .requires(Permission::ReleaseView)
                .resource::<DeploymentPreview>(),
        ),
    )
}

async fn preview(
    State(inst): State<AppState>,
    crate::authorize::Perms(perms): crate::authorize::Perms,
    SpaceId(s): SpaceId,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let release = params.get("id").map(String::as_str).unwrap_or_default();
    let environment = params
        .get("environment")
        .map(String::as_str)
        .unwrap_or_default();
    // A release of a project the caller may not see is not there for them.
    let r =
        cuttle_service::resources::get_in_space::<cuttle_model::Release>(&inst.store, &s, release)
            .await?;
    let view = crate::authorize::SpaceView::new(perms, &s);
    if !view.allows(Permission::ReleaseView, Some(&r.project_id), None) {
        return Err(cuttle_service::ServiceError::not_found("release", release).into());
    }
    let p = preview_deployment(&inst.store, &s, release, environment).await?;
    let links = json!({
        "Self": format!("/api/{s}/releases/{}/deployments/preview/{}", p.release_id, p.environment_id),
        "Release": format!("/api/{s}/releases/{}", p.release_id),
        "Environment": format!("/api/{s}/environments/{}", p.environment_id),
    });
    Ok(Json(with_links(&p, links)))
}
