//! Environments, project groups, lifecycles and library variable sets: plain
//! resources served by one
//! generic set of handlers.

use super::{document_query, Id, Q};
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::links::{page, page_of, resource, Linked};
use crate::route_table::{get, op, put, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{
    Environment, LibraryVariableSet, Lifecycle, Permission, Permissions, Project, ProjectGroup,
    Scope,
};
use cuttle_service::paging::ListParams;
use cuttle_service::permissions;
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
                .requires(Permission::EnvironmentEdit)
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
                .requires(Permission::ProjectView)
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
    /// The permissions to view, create, modify and delete one.
    const PERMISSIONS: Crud;
    /// The environments one belongs to, which narrow who sees it; none
    /// for a resource that is not in environments.
    fn environment_ids(&self) -> Vec<&str> {
        Vec::new()
    }
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

/// The permissions of a plain resource's view, create, modify and delete.
#[derive(Clone, Copy)]
pub(super) struct Crud {
    pub view: Permission,
    pub create: Permission,
    pub edit: Permission,
    pub delete: Permission,
}

macro_rules! space_crud {
    ($t:ty, $path:literal, [$view:ident, $create_p:ident, $edit:ident, $delete_p:ident], $create:path, $update:path, $delete:path $(, environments = $envs:path)?) => {
        impl SpaceCrud for $t {
            const PATH: &'static str = $path;
            const PERMISSIONS: $crate::routes::infrastructure::Crud = $crate::routes::infrastructure::Crud {
                view: cuttle_model::Permission::$view,
                create: cuttle_model::Permission::$create_p,
                edit: cuttle_model::Permission::$edit,
                delete: cuttle_model::Permission::$delete_p,
            };
            $(
                fn environment_ids(&self) -> Vec<&str> {
                    $envs(self)
                }
            )?
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

fn environment_itself(e: &Environment) -> Vec<&str> {
    vec![e.id.as_str()]
}

space_crud!(
    Environment,
    "environments",
    [
        EnvironmentView,
        EnvironmentCreate,
        EnvironmentEdit,
        EnvironmentDelete
    ],
    svc::create_environment,
    svc::update_environment,
    svc::delete_environment,
    environments = environment_itself
);
space_crud!(
    ProjectGroup,
    "projectgroups",
    [
        ProjectGroupView,
        ProjectGroupCreate,
        ProjectGroupEdit,
        ProjectGroupDelete
    ],
    svc::create_project_group,
    svc::update_project_group,
    svc::delete_project_group
);
space_crud!(
    Lifecycle,
    "lifecycles",
    [
        LifecycleView,
        LifecycleCreate,
        LifecycleEdit,
        LifecycleDelete
    ],
    svc::create_lifecycle,
    svc::update_lifecycle,
    svc::delete_lifecycle
);
space_crud!(
    LibraryVariableSet,
    "libraryvariablesets",
    [
        LibraryVariableSetView,
        LibraryVariableSetCreate,
        LibraryVariableSetEdit,
        LibraryVariableSetDelete
    ],
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
                .requires(D::PERMISSIONS.view)
                .query::<ListParams>()
                .page::<D>(),
        )
        .post(
            create::<D>,
            op(format!("Creates a resource of type {kind}"))
                .requires(D::PERMISSIONS.create)
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
            op(format!("Every resource of type {kind} in the space"))
                .requires(D::PERMISSIONS.view)
                .array::<D>(),
        ),
    );
    r.space(
        &format!("{path}/{{id}}"),
        get(
            one::<D>,
            op(format!("One resource of type {kind}"))
                .requires(D::PERMISSIONS.view)
                .resource::<D>(),
        )
        .put(
            update::<D>,
            op(format!("Modifies a resource of type {kind}"))
                .requires(D::PERMISSIONS.edit)
                .body::<D>()
                .resource::<D>(),
        )
        .delete(
            delete::<D>,
            op(format!("Deletes a resource of type {kind}"))
                .requires(D::PERMISSIONS.delete)
                .no_content(),
        ),
    )
}

/// Whether the caller may do `p` to `doc`: in its space, and in one of
/// its environments when it is in any.
pub(super) fn allowed<D: SpaceCrud>(
    perms: &Permissions,
    p: Permission,
    space: &str,
    doc: &D,
) -> bool {
    perms.allows_in_environments(p, space, &doc.environment_ids())
}

/// Reads one the caller may see; any other answers as missing.
pub(super) async fn visible_one<D: SpaceCrud>(
    store: &Store,
    perms: &Permissions,
    space: &str,
    id: &str,
) -> Result<D, ServiceError> {
    let doc = svc::get_in_space::<D>(store, space, id).await?;
    if allowed(perms, D::PERMISSIONS.view, space, &doc) {
        Ok(doc)
    } else {
        Err(ServiceError::not_found(D::KIND, id))
    }
}

/// Whether every one the caller may view is every one there is (no
/// narrowing by environment applies), so a page can be read as it is.
fn unnarrowed<D: SpaceCrud>(perms: &Permissions, space: &str) -> bool {
    perms.administrator
        || perms.grants.iter().any(|g| {
            g.space_id.as_deref() == Some(space)
                && g.permissions.contains(&D::PERMISSIONS.view)
                && g.environment_ids.is_empty()
        })
}

async fn list<D: SpaceCrud>(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let path = format!("/api/{s}/{}", D::PATH);
    if unnarrowed::<D>(&perms, &s) {
        let found = svc::list::<D>(&inst.store, &document_query(&s, &p)).await?;
        return Ok(Json(page(&found.items, found.total, &p, &path)));
    }
    let q = DocumentQuery {
        skip: 0,
        take: None,
        ..document_query(&s, &p)
    };
    let mine: Vec<D> = svc::list::<D>(&inst.store, &q)
        .await?
        .items
        .into_iter()
        .filter(|d| allowed(&perms, D::PERMISSIONS.view, &s, d))
        .collect();
    Ok(Json(page_of(mine, &p, &path)))
}

async fn all<D: SpaceCrud>(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        space_id: Some(s.clone()),
        ..Default::default()
    };
    let found = svc::list::<D>(&inst.store, &q).await?;
    Ok(Json(Value::Array(
        found
            .items
            .iter()
            .filter(|d| allowed(&perms, D::PERMISSIONS.view, &s, *d))
            .map(resource)
            .collect(),
    )))
}

async fn one<D: SpaceCrud>(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &visible_one::<D>(&inst.store, &perms, &s, &id).await?,
    )))
}

pub(super) async fn create<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<D>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    for e in body.environment_ids() {
        permissions::require(
            &perms,
            D::PERMISSIONS.create,
            &Scope::space(&s).environment(e),
        )?;
    }
    let created = D::create(&inst.store, &c, &s, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&created))))
}

async fn update<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
    OctoJson(body): OctoJson<D>,
) -> ApiResult<Json<Value>> {
    let before = visible_one::<D>(&inst.store, &perms, &s, &id).await?;
    for doc in [&before, &body] {
        for e in doc.environment_ids() {
            permissions::require(
                &perms,
                D::PERMISSIONS.edit,
                &Scope::space(&s).environment(e),
            )?;
        }
    }
    Ok(Json(resource(
        &D::update(&inst.store, &c, &s, &id, body).await?,
    )))
}

async fn delete<D: SpaceCrud>(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    SpaceId(s): SpaceId,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    let doc = visible_one::<D>(&inst.store, &perms, &s, &id).await?;
    for e in doc.environment_ids() {
        permissions::require(
            &perms,
            D::PERMISSIONS.delete,
            &Scope::space(&s).environment(e),
        )?;
    }
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
    Perms(perms): Perms,
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
        .filter(|x| super::projects::may_view_project(&perms, x))
        .collect();
    Ok(Json(page_of(
        mine,
        &p,
        &format!("/api/{s}/projectgroups/{id}/projects"),
    )))
}
