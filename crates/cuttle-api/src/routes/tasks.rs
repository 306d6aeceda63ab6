//! Server tasks: list, read, details with the activity log, raw log, the live
//! log stream, cancel.

use super::{Id, Q};
use crate::answers::{TaskDetails, TaskProgress};
use crate::auth::Caller;
use crate::authorize::{Perms, SpaceView};
use crate::error::{ApiError, ApiResult};
use crate::json::OctoJson;
use crate::links::{page, page_of, resource};
use crate::route_table::{get, op, post, Routes, EVENT_STREAM, TEXT};
use crate::space::{RouteSpace, SpaceId};
use crate::AppState;
use crate::Closing;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use cuttle_model::{Permission, Permissions, Scope};
use cuttle_model::{ServerTask, TaskState};
use cuttle_service::log_stream::{LogStream, StreamEvent};
use cuttle_service::paging::{split_list, ListParams};
use cuttle_service::raw_log::RawLog;
use cuttle_service::tasks as svc;
use cuttle_service::{permissions, ServiceError};
use cuttle_store::TaskQuery;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

pub fn routes(mut r: Routes) -> Routes {
    r = r.space(
        "/tasks",
        get(
            list_tasks,
            op("Lists server tasks, newest first (on /api/tasks, every space's the caller may see)")
                .requires_somewhere(Permission::TaskView)
                .query::<ListParams>()
                .query::<TaskFilters>()
                .page::<ServerTask>(),
        )
        .post(
            create_task,
            op("Queues a task (Health: a health check of machines)")
                .requires(Permission::TaskCreate)
                .body::<NewTaskBody>()
                .created::<ServerTask>(),
        ),
    );
    r = r.space(
        "/tasks/{id}",
        get(
            task,
            op("One task")
                .requires_somewhere(Permission::TaskView)
                .resource::<ServerTask>(),
        ),
    );
    r = r.space(
        "/tasks/{id}/details",
        get(
            details,
            op("A task with its progress and activity log tree")
                .requires_somewhere(Permission::TaskView)
                .query::<DetailParams>()
                .resource::<TaskDetails>(),
        ),
    );
    r = r.space(
        "/tasks/{id}/raw",
        get(
            raw,
            op("A task's log as plain text")
                .requires_somewhere(Permission::TaskView)
                .media(TEXT),
        ),
    );
    r = r.space(
        "/tasks/{id}/stream",
        get(
            stream,
            op("A task's progress and log as Server-Sent Events, until it finishes")
                .requires_somewhere(Permission::TaskView)
                .query::<StreamParams>()
                .media(EVENT_STREAM),
        ),
    );
    r.space(
        "/tasks/{id}/cancel",
        post(
            cancel,
            op("Cancels a task")
                .requires_somewhere(Permission::TaskCancel)
                .resource::<ServerTask>(),
        ),
    )
}

/// `POST /api/tasks` as Octopus clients send it. Only `Health` for now:
/// deployments are queued through `/api/deployments`.
#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct NewTaskBody {
    name: String,
    arguments: NewTaskArguments,
}

#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct NewTaskArguments {
    machine_ids: Vec<String>,
    worker_ids: Vec<String>,
}

async fn create_task(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    SpaceId(s): SpaceId,
    OctoJson(body): OctoJson<NewTaskBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.name != "Health" {
        return Err(ApiError::bad_request(format!(
            "Name: '{}' tasks cannot be queued here; only Health (deployments are created through /api/deployments)",
            body.name
        )));
    }
    let args = body.arguments;
    let task = svc::queue_health(&inst, &caller, &s, args.machine_ids, args.worker_ids).await?;
    Ok((StatusCode::CREATED, Json(resource(&task))))
}

/// Filters beside the paging parameters (read separately: serde's flatten
/// cannot read numbers from a query string).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
struct TaskFilters {
    states: Option<String>,
    #[serde(rename = "name")]
    task_name: Option<String>,
    project: Option<String>,
    environment: Option<String>,
}

/// On `/api/tasks` every space's tasks; on `/api/{space}/tasks` one space's.
/// A task the caller may see, or the same 404 as a missing one.
async fn visible_task(
    inst: &AppState,
    perms: &Permissions,
    space: Option<&str>,
    id: &str,
) -> Result<ServerTask, ApiError> {
    let task = svc::task(inst, space, id).await?;
    if perms.allows_on_task(Permission::TaskView, &task) {
        Ok(task)
    } else {
        Err(ServiceError::not_found("task", id).into())
    }
}

async fn list_tasks(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    Path(params): Path<HashMap<String, String>>,
    Q(list): Q<ListParams>,
    Q(f): Q<TaskFilters>,
) -> ApiResult<Json<Value>> {
    let space = params.get("space").cloned();
    if let Some(s) = &space {
        if inst.store.get::<cuttle_model::Space>(s).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "The space '{s}' was not found"
            )));
        }
    }
    let states = split_list(f.states.as_deref())
        .iter()
        .map(|s| s.parse::<TaskState>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let ids = list.ids();
    let q = TaskQuery {
        space_id: space.clone(),
        ids,
        states,
        name: f.task_name.clone(),
        project_id: f.project.clone(),
        environment_id: f.environment.clone(),
        skip: list.skip(),
        take: Some(list.take()),
    };
    let path = match &space {
        Some(s) => format!("/api/{s}/tasks"),
        None => "/api/tasks".into(),
    };
    let whole = match &space {
        Some(s) => SpaceView::new(perms.clone(), s).whole(Permission::TaskView),
        None => perms.administrator,
    };
    if !whole {
        // Narrowed: read every match and keep those the caller may see.
        let all = TaskQuery {
            skip: 0,
            take: None,
            ..q
        };
        let (tasks, _) = inst.store.list_tasks(&all).await?;
        let mine: Vec<ServerTask> = tasks
            .into_iter()
            .filter(|t| perms.allows_on_task(Permission::TaskView, t))
            .collect();
        return Ok(Json(page_of(mine, &list, &path)));
    }
    let (tasks, total) = inst.store.list_tasks(&q).await?;
    Ok(Json(page(&tasks, total, &list, &path)))
}

async fn task(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    Ok(Json(resource(
        &visible_task(&inst, &perms, space.as_deref(), &id).await?,
    )))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
struct DetailParams {
    /// Verbose lines too (the default).
    verbose: Option<bool>,
    /// Only the last this many lines of each activity. Without it, an
    /// activity shows its last 1,000 lines, after a first line saying how
    /// many earlier ones were left out (the raw log has them all); 1,000 is
    /// also the most `tail` gives.
    #[param(value_type = Option<u32>, minimum = 0)]
    tail: Option<String>,
}

impl DetailParams {
    fn tail(&self) -> ApiResult<Option<i64>> {
        let Some(text) = &self.tail else {
            return Ok(None);
        };
        match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "tail must be a number of lines, 0 or more; '{text}' is not"
            ))),
        }
    }
}

async fn details(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
    Q(p): Q<DetailParams>,
) -> ApiResult<Json<Value>> {
    visible_task(&inst, &perms, space.as_deref(), &id).await?;
    let view = svc::LogView {
        verbose: p.verbose.unwrap_or(true),
        tail: p.tail()?,
    };
    let (task, tree, lines) = svc::details(&inst, space.as_deref(), &id, view).await?;
    let done = task.is_completed;
    let lines = usize::try_from(lines).unwrap_or_default();
    let self_link = format!("/api/tasks/{}/details", task.id);
    Ok(Json(json!(TaskDetails {
        task: resource(&task),
        progress: TaskProgress {
            progress_percentage: cuttle_model::task::task_progress(&tree, done),
            estimated_time_remaining: if done { "" } else { "Unknown" }.into(),
        },
        physical_log_size: lines,
        activity_logs: tree,
        links: [("Self".to_owned(), self_link)].into(),
    })))
}

/// The whole log as text, streamed from the database a page at a time
/// ([`cuttle_service::raw_log`]): a piece is read only once the last one is
/// sent, so neither the log's size nor a slow client grows memory.
async fn raw(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
) -> ApiResult<impl IntoResponse> {
    // Asked first, so an unknown task is a 404 rather than an empty body.
    let task = visible_task(&inst, &perms, space.as_deref(), &id).await?;
    let log = RawLog::open(inst.store.clone(), &task.id).await?;
    let pieces = futures_util::stream::unfold(Some(log), |log| async move {
        let mut log = log?;
        match log.next_piece().await {
            Ok(Some(text)) => Some((Ok(Bytes::from(text)), Some(log))),
            Ok(None) => None,
            Err(e) => {
                // The body ends short of its end, which the client sees.
                tracing::warn!(error = %e, "a task's raw log stopped");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(pieces),
    ))
}

async fn cancel(
    State(inst): State<AppState>,
    Caller(c): Caller,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
) -> ApiResult<Json<Value>> {
    let task = visible_task(&inst, &perms, space.as_deref(), &id).await?;
    if !perms.allows_on_task(Permission::TaskCancel, &task) {
        let scope = Scope::of_task(&task);
        return Err(permissions::missing(Permission::TaskCancel, &scope).into());
    }
    Ok(Json(resource(
        &svc::cancel(&inst, &c, space.as_deref(), &id).await?,
    )))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
struct StreamParams {
    since: Option<i64>,
}

/// The task's progress as Server-Sent Events (`task`, `activity`, `log` with
/// its position as the event id, and a last `end`), from
/// [`cuttle_service::log_stream`]. It resumes after `Last-Event-ID`, which a
/// reconnecting EventSource sends (and which wins over the URL's), or else
/// after `since`.
async fn stream(
    State(inst): State<AppState>,
    Perms(perms): Perms,
    RouteSpace(space): RouteSpace,
    Id(id): Id,
    Q(p): Q<StreamParams>,
    Extension(closing): Extension<Closing>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    visible_task(&inst, &perms, space.as_deref(), &id).await?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").trim())
        .filter(|v| !v.is_empty());
    let after = match last_event_id {
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            ApiError::bad_request("The Last-Event-ID header must be a log position (a number)")
        })?),
        None => p.since,
    };
    let log = LogStream::open(inst, space.as_deref(), &id, after).await?;
    // Read on demand: the next event is read only once the last one is sent,
    // so a slow client holds back its own reads, never fills a buffer.
    let events = futures_util::stream::unfold(log, |mut log| async move {
        match log.next().await {
            Ok(Some(event)) => Some((Ok::<_, Infallible>(sse_event(event)), log)),
            Ok(None) => None,
            Err(e) => {
                // The client reconnects and resumes after its last line.
                tracing::warn!(error = %e, "a task log stream stopped");
                None
            }
        }
    })
    .take_until(closing.0.cancelled_owned());
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    Ok((
        // Asks nginx-style proxies to pass events on at once.
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(events).keep_alive(keep_alive),
    ))
}

fn sse_event(event: StreamEvent) -> Event {
    fn data<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_else(|_| "null".into())
    }
    match event {
        StreamEvent::Log(line) => Event::default()
            .event("log")
            .id(line.position.to_string())
            .data(data(&line)),
        StreamEvent::Activity(a) => Event::default().event("activity").data(data(&a)),
        StreamEvent::Task(t) => Event::default()
            .event("task")
            .data(resource(&t).to_string()),
        StreamEvent::End(t) => Event::default().event("end").data(resource(&t).to_string()),
    }
}
