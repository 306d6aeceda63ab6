//! Build information, as CI plugins push it: `POST build-information`,
//! and the list, items and deletes.

use super::{Id, Q};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page_of, resource, Linked};
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::build_info::BuildInformation;
use cuttle_model::Permission;
use cuttle_service::build_info::{self, NewBuildInformation};
use cuttle_service::packages::OverwriteMode;
use cuttle_service::paging::ListParams;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/build-information",
        get(
            list,
            op("Lists build information, optionally for one package")
                .requires(Permission::FeedView)
                .query::<ListParams>()
                .query::<ListFilters>()
                .page::<BuildInformation>(),
        )
        .post(
            create,
            op("Records a package version's build information")
                .requires(Permission::BuildInformationPush)
                .query::<CreateParams>()
                .body::<NewBuildInformation>()
                .created::<BuildInformation>(),
        ),
    );
    r.space(
        "/build-information/{id}",
        get(
            item,
            op("One build information record")
                .requires(Permission::FeedView)
                .resource::<BuildInformation>(),
        )
        .delete(
            delete,
            op("Deletes a build information record")
                .requires(Permission::BuildInformationAdminister)
                .no_content(),
        ),
    )
}

impl Linked for BuildInformation {
    fn links(&self) -> Value {
        json!({"Self": format!("/api/{}/build-information/{}", self.space_id, self.id)})
    }
    fn item_type() -> &'static str {
        "BuildInformation"
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateParams {
    #[serde(
        rename = "overwriteMode",
        alias = "OverwriteMode",
        alias = "overwritemode"
    )]
    overwrite_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListFilters {
    #[serde(rename = "packageId", alias = "PackageId")]
    package_id: Option<String>,
}

async fn create(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<CreateParams>,
    OctoJson(body): OctoJson<NewBuildInformation>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let asked = p.overwrite_mode.or_else(|| body.overwrite_mode.clone());
    let mode = OverwriteMode::from_query(asked.as_deref(), None)?;
    let created = build_info::create(&inst.store, &caller, &s, body, mode).await?;
    Ok((StatusCode::CREATED, Json(resource(&created))))
}

async fn list(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
    Q(f): Q<ListFilters>,
) -> ApiResult<Json<Value>> {
    let found = build_info::list(&inst.store, &s, f.package_id.as_deref()).await?;
    Ok(Json(page_of(
        found,
        &p,
        &format!("/api/{s}/build-information"),
    )))
}

async fn item(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &build_info::get(&inst.store, &s, &id).await?,
    )))
}

async fn delete(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    build_info::delete(&inst.store, &caller, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
