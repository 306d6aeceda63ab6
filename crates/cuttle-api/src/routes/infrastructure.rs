//! Environments, project groups, lifecycles and library variable sets: plain
//! resources served by one
//! generic set of handlers.

use super::{document_query, Id, Q};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page, page_of, resource, Linked};
use crate::route_table::{get, op, put, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{Environment, LibraryVariableSet, Lifecycle, Project, ProjectGroup};
use cuttle_service::paging::ListParams;
use cuttle_service::resources as svc;
use cuttle_service::variables;
use cuttle_service::ServiceError;
use cuttle_store::{Document, DocumentQuery, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;

pub fn routes(mut r: Routes) -> Routes {
    r = crud::<Environment>(r);
    r = r.space(
        "/environments/sortorder",
        put(
            sort_environments,
            op("Orders the space's environments: the body lists their ids in order")
                .body_ids()
                .empty(),
        ),
    );
    r = crud::<ProjectGroup>(r);
    r = r.space(
        "/projectgroups/{id}/projects",
        get(
            group_projects,
            op("Lists the projects in a project group")
                .query::<ListParams>()
                .page::<Project>(),
        ),
    );
    r = crud::<LibraryVariableSet>(r);
    crud::<Lifecycle>(r)
}

/// A space resource whose commands are plain create, modify and delete.
pub(super) trait SpaceCrud:
    Document + Linked + Serialize + DeserializeOwned + utoipa::ToSchema + Send + 'static
{
    /// The collection's route segment.
    const PATH: &'static str;
    fn create(
        store: &Store,
        caller: &cuttle_service::actor::Actor,
        space: &str,
        body: Self,
    ) -> impl Future<Output = Result<Self, ServiceError>> + Send;
    fn update(
        store: &Store,
        caller: &cuttle_service::actor::Actor,
        space: &str,
        id: &str,
        body: Self,
    ) -> impl Future<Output = Result<Self, ServiceError>> + Send;
    fn delete(
        store: &Store,
        caller: &cuttle_service::actor::Actor,
        space: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
}

macro_rules! space_crud {
    ($t:ty, $path:literal, $create:path, $update:path, $delete:path) => {
        impl SpaceCrud for $t {
            const PATH: &'static str = $path;
            fn create(
                store: &Store,
                caller: &cuttle_service::actor::Actor,
                space: &str,
                body: Self,
            ) -> impl Future<Output = Result<Self, ServiceError>> + Send {
                $create(store, caller, space, body)
            }
            fn update(
                store: &Store,
                caller: &cuttle_service::actor::Actor,
                space: &str,
                id: &str,
                body: Self,
            ) -> impl Future<Output = Result<Self, ServiceError>> + Send {
                $update(store, caller, space, id, body)
            }
            fn delete(
                store: &Store,
                caller: &cuttle_service::actor::Actor,
                space: &str,
                id: &str,
            ) -> impl Future<Output = Result<(), ServiceError>> + Send {
                $delete(store, caller, space, id)
            }
        }
    };
}
pub(super) use space_crud;

space_crud!(
    Environment,
    "environments",
    svc::create_environment,
    svc::update_environment,
    svc::delete_environment
);
space_crud!(
    ProjectGroup,
    "projectgroups",
    svc::create_project_group,
    svc::update_project_group,
    svc::delete_project_group
);
space_crud!(
    Lifecycle,
    "lifecycles",
    svc::create_lifecycle,
    svc::update_lifecycle,
    svc::delete_lifecycle
);
space_crud!(
    LibraryVariableSet,
    "libraryvariablesets",
    variables::create_library_variable_set,
    variables::update_library_variable_set,
    variables::delete_library_variable_set
);

/// The list, `all`, read, create, modify and delete routes of one resource.
pub(super) fn crud<D: SpaceCrud>(r: Routes) -> Routes {
    let path = format!("/{}", D::PATH);
    let kind = D::item_type();
    let r = r.space(
        &path,
        get(
            list::<D>,
            op(format!("Lists the space's resources of type {kind}"))
                .query::<ListParams>()
                .page::<D>(),
        )
        .post(
            create::<D>,
            op(format!("Creates a resource of type {kind}"))
                .body::<D>()
                .created::<D>(),
        ),
    );
    item_routes::<D>(r)
}

/// The `all`, read, modify and delete routes of one resource, for those
/// whose list and create routes are their own.
pub(super) fn item_routes<D: SpaceCrud>(r: Routes) -> Routes {
    let path = format!("/{}", D::PATH);
    let kind = D::item_type();
    let r = r.space(
        &format!("{path}/all"),
        get(
            all::<D>,
            op(format!("Every resource of type {kind} in the space")).array::<D>(),
        ),
    );
    r.space(
        &format!("{path}/{{id}}"),
        get(
            one::<D>,
            op(format!("One resource of type {kind}")).resource::<D>(),
        )
        .put(
            update::<D>,
            op(format!("Modifies a resource of type {kind}"))
                .body::<D>()
                .resource::<D>(),
        )
        .delete(
            delete::<D>,
            op(format!("Deletes a resource of type {kind}")).no_content(),
        ),
    )
}

async fn list<D: SpaceCrud>(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let found = svc::list::<D>(&inst.store, &document_query(&s, &p)).await?;
    Ok(Json(page(
        &found.items,
        found.total,
        &p,
        &format!("/api/{s}/{}", D::PATH),
    )))
}

async fn all<D: SpaceCrud>(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        space_id: Some(s),
        ..Default::default()
    };
    let found = svc::list::<D>(&inst.store, &q).await?;
    Ok(Json(Value::Array(
        found.items.iter().map(resource).collect(),
    )))
}

async fn one<D: SpaceCrud>(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &svc::get_in_space::<D>(&inst.store, &s, &id).await?,
    )))
}

pub(super) async fn create<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<D>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = D::create(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&created))))
}

async fn update<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<D>,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &D::update(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    D::delete(&inst.store, &c, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sort_environments(
    State(inst): State<AppState>,
    Caller(c): Caller,
    SpaceId(s): SpaceId,
    OctoJson(ids): OctoJson<Vec<String>>,
) -> ApiResult<StatusCode> {
    svc::sort_environments(&inst.store, &c, &s, &ids).await?;
    Ok(StatusCode::OK)
}

async fn group_projects(
    State(inst): State<AppState>,
    _: Caller,
    SpaceId(s): SpaceId,
    Id(id): Id,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let g = svc::get_in_space::<ProjectGroup>(&inst.store, &s, &id).await?;
    let q = DocumentQuery {
        space_id: Some(s.clone()),
        ..Default::default()
    };
    let mine: Vec<Project> = svc::list::<Project>(&inst.store, &q)
        .await?
        .items
        .into_iter()
        .filter(|x| x.project_group_id == g.id)
        .collect();
    Ok(Json(page_of(
        mine,
        &p,
        &format!("/api/{s}/projectgroups/{id}/projects"),
    )))
}
