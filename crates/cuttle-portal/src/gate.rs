//! The permission each portal page and form needs, checked before its
//! handler: a page the person may not see answers 403 naming what is
//! missing, and so does a form they may not submit (the page hides its
//! button, but a form can be posted by hand). Finer checks (one project,
//! one environment) are the services', which hold the person's
//! permissions through their actor.

use crate::session::Viewer;
use crate::AppState;
use axum::extract::{FromRequestParts, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use cuttle_model::Permission;

/// What `method` on `path` needs; `None` for pages anyone signed in may
/// use (their own API keys, signing out) or that sign in.
pub fn needs(method: &Method, path: &str) -> Option<Permission> {
    use Permission::*;
    let read = *method == Method::GET || *method == Method::HEAD;
    let has = |part: &str| path.contains(part);
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/signin") || under("/signout") || under("/assets") {
        return None;
    }
    if path == "/" || under("/fragments/dashboard") {
        return Some(ProjectView);
    }
    if under("/tasks") {
        return Some(match () {
            _ if read => TaskView,
            _ if has("/interruptions/") => InterruptionViewSubmitResponsible,
            _ => TaskCancel,
        });
    }
    if under("/audit") {
        return Some(EventView);
    }
    if under("/projects") {
        return Some(match () {
            _ if has("/deploy") => DeploymentCreate,
            _ if read && has("/process") => ProcessView,
            _ if read && has("/variables") => VariableView,
            _ if read && has("/releases") => ReleaseView,
            _ if read => ProjectView,
            _ if has("/process") => ProcessEdit,
            _ if has("/variables") => VariableEdit,
            _ if has("/releases") => ReleaseCreate,
            _ if path == "/projects" => ProjectCreate,
            _ => ProjectEdit,
        });
    }
    if under("/infrastructure") {
        let area = |view, edit| if read { view } else { edit };
        return Some(match () {
            _ if has("/targets") => area(MachineView, MachineEdit),
            _ if has("/workers") || has("/worker-pools") => area(WorkerView, WorkerEdit),
            _ if has("/machine-policies") => area(MachinePolicyView, MachinePolicyEdit),
            _ => area(EnvironmentView, EnvironmentEdit),
        });
    }
    if under("/library") {
        return Some(match () {
            _ if has("/variable-sets") && read => LibraryVariableSetView,
            _ if has("/variable-sets") => LibraryVariableSetEdit,
            _ if read => FeedView,
            _ if has("/delete") => BuiltInFeedAdminister,
            _ => BuiltInFeedPush,
        });
    }
    if under("/configuration/users") {
        return Some(if read { UserView } else { UserEdit });
    }
    if under("/configuration/teams") {
        return Some(TeamView);
    }
    if under("/configuration/nodes") {
        return Some(ConfigureServer);
    }
    None
}

/// Runs the check for the person signed in; without a session the page
/// itself sends them to sign in.
pub async fn check(request: Request, next: Next) -> Response {
    let Some(p) = needs(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let Some(state) = request.extensions().get::<AppState>().cloned() else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &state).await {
        Ok(v) => v,
        // Not signed in: the handler's own extractor answers.
        Err(_) => return next.run(Request::from_parts(parts, body)).await,
    };
    if let Err(e) = viewer.require(p) {
        return e.page_for(&viewer);
    }
    parts.extensions.insert(viewer);
    next.run(Request::from_parts(parts, body)).await
}
