//! Route table and the small areas (root document, users, spaces, feeds).
//! Space resources answer on `/api/{space}/…` and, for the default space, on
//! the same path without the space segment.

mod backup;
mod build_info;
mod events;
mod infrastructure;
mod interruptions;
mod machines;
mod nodes;
pub mod operations;
mod packages;
mod preview;
mod projects;
mod releases;
mod subscriptions;
mod tasks;
mod teams;
mod variables;

use crate::answers::{Feed, ServerThumbprint};
use crate::auth::Caller;
use crate::authorize::Perms;
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, page_of, resource};
use crate::route_table::{get, op, Routes};
use crate::space::SpaceId;
use crate::AppState;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use cuttle_model::{ApiKey, Permission, Space, User};
use cuttle_service::instance::{CUTTLE_VERSION, OCTOPUS_COMPATIBLE_VERSION};
use cuttle_service::paging::ListParams;
use cuttle_service::{auth, resources};
use cuttle_store::DocumentQuery;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// Query parameters, with a readable 400 when they do not parse.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Q)
            .map_err(|e| ApiError::bad_request(format!("The query string is not valid: {e}")))
    }
}

/// The document query a list request asks for.
pub fn document_query(space_id: &str, params: &ListParams) -> DocumentQuery {
    DocumentQuery {
        space_id: Some(space_id.to_owned()),
        ids: params.ids(),
        partial_name: params.partial_name.clone(),
        name: params.name.clone(),
        skip: params.skip(),
        take: Some(params.take()),
        ..Default::default()
    }
}

pub fn all() -> Routes {
    let mut r = Routes::new()
        .at(
            "/api",
            get(
                root,
                op("The API's root document, with links to every collection").public(),
            ),
        )
        .at(
            "/api/",
            get(
                root,
                op("The API's root document (with a trailing slash)").public(),
            ),
        )
        .at(
            "/api/capabilities",
            get(
                capabilities,
                op("The requests this server supports, by Octopus's names").public(),
            ),
        )
        .at(
            "/api/agents/server-thumbprint",
            get(
                server_thumbprint,
                op("The server certificate's thumbprint agents must trust").signed_in(),
            ),
        )
        .at(
            "/api/users/me",
            get(me, op("The calling user").signed_in().resource::<User>()),
        )
        .at(
            "/api/users",
            get(
                users,
                op("Lists users (without UserView, only the caller)")
                    .signed_in()
                    .query::<ListParams>()
                    .page::<User>(),
            )
            .post(
                create_user,
                op("Creates a user")
                    .requires(Permission::UserEdit)
                    .body::<NewUserBody>()
                    .created::<User>(),
            ),
        )
        .at(
            "/api/users/{id}",
            get(
                user,
                op("One user (the caller, or anyone with UserView)")
                    .signed_in()
                    .resource::<User>(),
            )
            .put(
                update_user,
                op(
                    "Modifies a user: their own name, email and password, or with UserEdit \
                    anyone's, and disabling (which stops their sessions and keys at once)",
                )
                .signed_in()
                .body::<UserChangeBody>()
                .resource::<User>(),
            )
            .delete(
                delete_user,
                op("Removes a user with their API keys and sessions")
                    .requires(Permission::UserEdit)
                    .no_content(),
            ),
        )
        .at(
            "/api/users/{id}/apikeys",
            get(
                api_keys,
                op("Lists the user's API keys (the caller's own, or anyone's with UserEdit)")
                    .signed_in()
                    .page::<ApiKey>(),
            )
            .post(
                create_api_key,
                op("Creates an API key; the answer holds its secret, shown this once")
                    .signed_in()
                    .body::<NewApiKey>()
                    .created::<ApiKey>(),
            ),
        )
        .at(
            "/api/users/{id}/apikeys/{key}",
            get(
                api_key,
                op("One of the user's API keys")
                    .signed_in()
                    .resource::<ApiKey>(),
            )
            .delete(
                revoke_api_key,
                op("Revokes an API key").signed_in().no_content(),
            ),
        )
        .at(
            "/api/spaces",
            get(
                spaces,
                op("Lists the spaces the caller holds anything in")
                    .signed_in()
                    .query::<ListParams>()
                    .page::<Space>(),
            )
            .post(
                create_space,
                op("Creates a space, with its defaults")
                    .requires(Permission::SpaceCreate)
                    .body::<Space>()
                    .created::<Space>(),
            ),
        )
        .at(
            "/api/spaces/all",
            get(
                all_spaces,
                op("Every space the caller holds anything in")
                    .signed_in()
                    .array::<Space>(),
            ),
        )
        .at(
            "/api/spaces/{id}",
            get(space, op("One space").signed_in().resource::<Space>())
                .put(
                    update_space,
                    op("Modifies a space (stop its task queue before deleting it); SpaceEdit, or a member of the space's managers teams")
                        .signed_in()
                        .body::<Space>()
                        .resource::<Space>(),
                )
                .delete(
                    delete_space,
                    op("Deletes a space whose task queue is stopped; SpaceDelete, or a member of the space's managers teams")
                        .signed_in()
                        .no_content(),
                ),
        )
        .at(
            "/api/{space}",
            get(
                space_home,
                op("The space's root document, with links to its collections").signed_in(),
            ),
        );
    r = r.space(
        "/feeds",
        get(
            feeds,
            op("Lists the space's feeds (the built-in feed)")
                .requires(Permission::FeedView)
                .query::<ListParams>(),
        ),
    );
    r = r.space(
        "/feeds/{id}",
        get(
            feed,
            op("One feed")
                .requires(Permission::FeedView)
                .resource::<Feed>(),
        ),
    );
    r = infrastructure::routes(r);
    r = projects::routes(r);
    r = releases::routes(r);
    r = variables::routes(r);
    r = interruptions::routes(r);
    r = preview::routes(r);
    r = machines::routes(r);
    r = packages::routes(r);
    r = build_info::routes(r);
    r = events::routes(r);
    r = operations::routes(r);
    r = backup::routes(r);
    r = subscriptions::routes(r);
    r = teams::routes(r);
    r = nodes::routes(r);
    tasks::routes(r)
}

/// The thumbprint agents must trust, for `cuttle agent register`, and the
/// one they will have to trust after a rotation, for `cuttle agent trust
/// --add-next`. Behind authentication: only someone allowed to register an
/// agent needs them.
async fn server_thumbprint(State(inst): State<AppState>, _: Caller) -> Json<Value> {
    let port = inst.polling_port.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!(ServerThumbprint {
        thumbprint: inst.identity.thumbprint().to_string(),
        // Made by `cuttle server certificate new` and read at start; null
        // when there is none.
        next_thumbprint: inst.next_thumbprint.as_ref().map(|t| t.to_string()),
        // Where polling agents connect, on this server's host; null when
        // the polling endpoint is off.
        polling_port: (port != 0).then_some(port),
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "The resource you requested was not found.",
    )
}

async fn root(State(inst): State<AppState>) -> Json<Value> {
    Json(json!({
        "Application": "Cuttle",
        "Version": OCTOPUS_COMPATIBLE_VERSION,
        "CuttleVersion": CUTTLE_VERSION,
        "ApiVersion": "3.0.0",
        "InstallationId": inst.installation_id,
        "Links": {
            "Self": "/api",
            "Capabilities": "/api/capabilities",
            "CurrentUser": "/api/users/me",
            "Users": "/api/users{/id}{?skip,take,ids}",
            "Spaces": "/api/spaces{/id}{?skip,take,ids,partialName}",
            "Environments": "/api/environments{/id}{?skip,take,ids,partialName,name}",
            "ProjectGroups": "/api/projectgroups{/id}{?skip,take,ids,partialName}",
            "Lifecycles": "/api/lifecycles{/id}{?skip,take,ids,partialName}",
            "Projects": "/api/projects{/id}{?skip,take,ids,partialName,name}",
            "LibraryVariableSets": "/api/libraryvariablesets{/id}{?skip,take,ids,partialName,name}",
            "Variables": "/api/variables{/id}",
            "Channels": "/api/channels{/id}{?skip,take,ids,partialName}",
            "DeploymentProcesses": "/api/deploymentprocesses{/id}",
            "Releases": "/api/releases{/id}{?skip,take,ids}",
            "Deployments": "/api/deployments{/id}{?skip,take,ids,projects,environments,taskState}",
            "Tasks": "/api/tasks{/id}{?skip,take,ids,states,name,project,environment}",
            "Interruptions": "/api/interruptions{/id}{?skip,take,regarding,pendingOnly,ids}",
            "Feeds": "/api/feeds{/id}{?skip,take,ids}",
            "Machines": "/api/machines{/id}{?skip,take,ids,name,partialName,roles,environmentIds,healthStatuses,isDisabled}",
            "Workers": "/api/workers{/id}{?skip,take,ids,name,partialName,workerPoolIds,healthStatuses,isDisabled}",
            "WorkerPools": "/api/workerpools{/id}{?skip,take,ids,partialName,name}",
            "MachinePolicies": "/api/machinepolicies{/id}{?skip,take,ids,partialName,name}",
            "Subscriptions": "/api/subscriptions{/id}{?skip,take,ids,partialName}",
            "OctopusServerNodes": "/api/octopusservernodes{/id}{?skip,take}",
            "CreateReleaseCommandV1": "/api/{spaceId}/releases/create/v1",
            "CreateUntenantedDeploymentCommandV1": "/api/{spaceId}/deployments/create/untenanted/v1",
        }
    }))
}

/// The requests this server answers, by Octopus's names.
async fn capabilities() -> Json<Value> {
    Json(json!({"Capabilities": crate::capabilities::names()}))
}

async fn me(Caller(user): Caller) -> Json<Value> {
    Json(resource(&user.user))
}

async fn users(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let all = cuttle_service::users::visible(&inst.store, &caller, &perms).await?;
    Ok(Json(page_of(all, &params, "/api/users")))
}

/// A new user, as Octopus clients send it; active unless told otherwise.
#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct NewUserBody {
    username: String,
    display_name: String,
    email_address: String,
    password: Option<String>,
    is_service: bool,
    is_active: Option<bool>,
}

async fn create_user(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    OctoJson(body): OctoJson<NewUserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let new = cuttle_service::users::NewUser {
        username: body.username,
        display_name: body.display_name,
        email_address: body.email_address,
        password: body.password.unwrap_or_default(),
        is_service: body.is_service,
        is_active: body.is_active.unwrap_or(true),
    };
    let user = cuttle_service::users::create(&inst.store, &inst.passwords, &caller, &new).await?;
    Ok((StatusCode::CREATED, Json(resource(&user))))
}

async fn user(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let u = cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    Ok(Json(resource(&u)))
}

/// A change to a user; fields left out stay as they are.
#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct UserChangeBody {
    username: Option<String>,
    display_name: Option<String>,
    email_address: Option<String>,
    is_active: Option<bool>,
    /// A new password; ends the user's portal sessions.
    password: Option<String>,
}

async fn update_user(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path(id): Path<String>,
    OctoJson(body): OctoJson<UserChangeBody>,
) -> ApiResult<Json<Value>> {
    let change = cuttle_service::users::UserChange {
        username: body.username,
        display_name: body.display_name,
        email_address: body.email_address,
        is_active: body.is_active,
        password: body.password,
    };
    let u =
        cuttle_service::users::update(&inst.store, &inst.passwords, &caller, &perms, &id, change)
            .await?;
    Ok(Json(resource(&u)))
}

async fn delete_user(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cuttle_service::users::delete(&inst.store, &caller, &perms, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn api_keys(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    cuttle_service::users::require_self_or_editor(&caller, &perms, &id)?;
    let keys = inst.store.api_keys(&id).await?;
    let params = ListParams {
        take: Some(cuttle_service::paging::TAKE_ALL),
        ..Default::default()
    };
    Ok(Json(page(
        &keys,
        keys.len() as i64,
        &params,
        &format!("/api/users/{id}/apikeys"),
    )))
}

async fn api_key(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    cuttle_service::users::require_self_or_editor(&caller, &perms, &id)?;
    let k = inst
        .store
        .api_keys(&id)
        .await?
        .into_iter()
        .find(|k| k.id == key);
    let k = k.ok_or_else(|| ApiError::not_found(format!("The API key '{key}' was not found")))?;
    Ok(Json(resource(&k)))
}

#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct NewApiKey {
    purpose: String,
    /// When the key stops working; never, when left out.
    expires: Option<String>,
}

async fn create_api_key(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path(id): Path<String>,
    OctoJson(body): OctoJson<NewApiKey>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let expires = match body
        .expires
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        None => None,
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Expires '{text}' is not a date and time (2026-12-31T00:00:00Z)"
            ))
        })?),
    };
    cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    let key =
        auth::create_api_key(&inst.store, &caller, &perms, &id, &body.purpose, expires).await?;
    // The body holds the key's secret, shown this once: no cache may keep it.
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(resource(&key)),
    ))
}

async fn revoke_api_key(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Perms(perms): Perms,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    cuttle_service::users::get(&inst.store, &caller, &perms, &id).await?;
    auth::revoke_api_key(&inst.store, &caller, &perms, &id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn spaces(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<Value>> {
    let q = DocumentQuery {
        space_id: None,
        ids: visible_space_ids(&perms, params.ids()),
        ..document_query("", &params)
    };
    if perms.spaces().is_some() && q.ids.is_empty() {
        return Ok(Json(page::<Space>(&[], 0, &params, "/api/spaces")));
    }
    let p = resources::list::<Space>(&inst.store, &q).await?;
    Ok(Json(page(&p.items, p.total, &params, "/api/spaces")))
}

/// The ids a space list may answer: those asked for (all, when none are),
/// narrowed to the spaces the caller holds anything in.
fn visible_space_ids(perms: &cuttle_model::Permissions, asked: Vec<String>) -> Vec<String> {
    match perms.spaces() {
        None => asked,
        Some(mine) if asked.is_empty() => mine.into_iter().collect(),
        Some(mine) => asked.into_iter().filter(|a| mine.contains(a)).collect(),
    }
}

async fn all_spaces(State(inst): State<AppState>, Perms(perms): Perms) -> ApiResult<Json<Value>> {
    let p = resources::list::<Space>(&inst.store, &DocumentQuery::default()).await?;
    Ok(Json(Value::Array(
        p.items
            .iter()
            .filter(|s| perms.sees_space(&s.id))
            .map(resource)
            .collect(),
    )))
}

async fn space(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s: Space = inst
        .store
        .get(&id)
        .await?
        .filter(|s: &Space| perms.sees_space(&s.id))
        .ok_or_else(|| ApiError::not_found(format!("The space '{id}' was not found")))?;
    Ok(Json(resource(&s)))
}

async fn create_space(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    OctoJson(body): OctoJson<Space>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = resources::create_space(&inst.store, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(resource(&s))))
}

async fn update_space(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    OctoJson(body): OctoJson<Space>,
) -> ApiResult<Json<Value>> {
    let s = cuttle_service::spaces::update_space(&inst, &caller, &id, body).await?;
    Ok(Json(resource(&s)))
}

async fn delete_space(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cuttle_service::spaces::delete_space(&inst, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The space's own root document, with links to its collections.
async fn space_home(_: Caller, SpaceId(space): SpaceId) -> Json<Value> {
    let link = |area: &str| format!("/api/{space}/{area}");
    Json(json!({"Links": {
        "Self": format!("/api/{space}"),
        "Environments": link("environments"),
        "ProjectGroups": link("projectgroups"),
        "Lifecycles": link("lifecycles"),
        "Projects": link("projects"),
        "LibraryVariableSets": link("libraryvariablesets"),
        "Channels": link("channels"),
        "Releases": link("releases"),
        "Deployments": link("deployments"),
        "Tasks": link("tasks"),
        "Interruptions": link("interruptions"),
        "Feeds": link("feeds"),
        "Machines": link("machines"),
        "Workers": link("workers"),
        "WorkerPools": link("workerpools"),
        "MachinePolicies": link("machinepolicies"),
        "Subscriptions": link("subscriptions"),
    }}))
}

/// A time as clients send it: RFC 3339, or a date alone (midnight UTC).
fn parse_time(text: &str) -> Option<cuttle_model::Timestamp> {
    cuttle_model::Timestamp::parse(text).or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|t| {
                cuttle_model::Timestamp::parse(&format!("{}Z", t.format("%Y-%m-%dT%H:%M:%S")))
            })
    })
}

/// The built-in package feed; the same in every space, and always first.
fn builtin_feed(space: &str) -> Value {
    let id = cuttle_model::ids::BUILTIN_FEED_ID;
    json!(Feed {
        id: id.into(),
        space_id: space.into(),
        name: "Octopus Server (built-in)".into(),
        feed_type: "BuiltIn".into(),
        is_built_in_repo_sync_enabled: false,
        delete_unreleased_packages_after_days: 30,
        package_acquisition_location_options: vec!["Server".into(), "ExecutionTarget".into()],
        links: [("Self".to_owned(), format!("/api/{space}/feeds/{id}"))].into(),
    })
}

async fn feeds(_: Caller, SpaceId(space): SpaceId, Q(params): Q<ListParams>) -> Json<Value> {
    let feed = builtin_feed(&space);
    let ids = params.ids();
    let items: Vec<Value> =
        if ids.is_empty() || ids.iter().any(|i| i == cuttle_model::ids::BUILTIN_FEED_ID) {
            vec![feed]
        } else {
            vec![]
        };
    let total = items.len() as i64;
    Json(json!({
        "ItemType": "Feed",
        "TotalResults": total,
        "ItemsPerPage": params.take(),
        "NumberOfPages": total.min(1),
        "LastPageNumber": 0,
        "Items": items.into_iter().skip(params.skip() as usize).take(params.take() as usize).collect::<Vec<_>>(),
        "Links": {"Self": format!("/api/{space}/feeds")},
    }))
}

async fn feed(
    _: Caller,
    SpaceId(space): SpaceId,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let id = params.get("id").cloned().unwrap_or_default();
    if id == cuttle_model::ids::BUILTIN_FEED_ID {
        Ok(Json(builtin_feed(&space)))
    } else {
        Err(ApiError::not_found(format!(
            "The feed '{id}' was not found"
        )))
    }
}

/// The `{id}` segment of a route (which may also carry `{space}`).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        params
            .0
            .get("id")
            .cloned()
            .map(Id)
            .ok_or_else(|| ApiError::bad_request("The route has no id"))
    }
}
