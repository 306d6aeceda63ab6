//! Every route of the API, from the router's own table, against a fixture
//! of users: an administrator, the space manager of another space, a
//! project deployer scoped to one project and Dev, a viewer, a disabled
//! user, an expired API key, and no key. Each route's answer for each user
//! is written down below; a route without one fails the test, so a new
//! route cannot be added without deciding who may call it.

use crate::common;

use common::{on_both, Reply, Server, ADMIN_KEY};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;

/// What one user gets from one route.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// Let through and answered: anything but 401, 403 and 404.
    Allowed,
    /// Let through by the permission check; the handler may still say the
    /// (made-up) id is not there: anything but 401 and 403.
    Through,
    Forbidden,
    /// As if it did not exist.
    Hidden,
    Unauthorized,
}

fn answer(code: char) -> Answer {
    match code {
        'A' => Answer::Allowed,
        'a' => Answer::Through,
        'F' => Answer::Forbidden,
        'H' => Answer::Hidden,
        'U' => Answer::Unauthorized,
        other => panic!("unknown answer code {other}"),
    }
}

fn matches(expected: Answer, status: StatusCode) -> bool {
    let s = status.as_u16();
    match expected {
        Answer::Allowed => !matches!(s, 401 | 403 | 404),
        Answer::Through => !matches!(s, 401 | 403),
        Answer::Forbidden => s == 403,
        Answer::Hidden => s == 404,
        Answer::Unauthorized => s == 401,
    }
}

/// One route's call and its answers. `path` fills the template's ids;
/// `{space}` stays, to be filled per form. `who` is four codes: the
/// administrator; the manager of another space on the route without
/// `{space}` (on `/api/Spaces-1/…` that manager always gets 404: they hold
/// nothing there); the deployer; the viewer.
struct Expect {
    path: &'static str,
    body: Option<&'static str>,
    who: &'static str,
}

fn expectations() -> BTreeMap<(&'static str, &'static str), Expect> {
    let mut m = BTreeMap::new();
    let mut e = |method: &'static str,
                 template: &'static str,
                 path: &'static str,
                 body: Option<&'static str>,
                 who: &'static str| {
        assert_eq!(who.len(), 4, "{method} {template}");
        let old = m.insert((method, template), Expect { path, body, who });
        assert!(old.is_none(), "{method} {template} written twice");
    };
    let b = Some("{}");
    // Public.
    e("GET", "/api", "/api", None, "AAAA");
    e("GET", "/api/", "/api/", None, "AAAA");
    e(
        "GET",
        "/api/capabilities",
        "/api/capabilities",
        None,
        "AAAA",
    );
    e(
        "GET",
        "/api/openapi.json",
        "/api/openapi.json",
        None,
        "AAAA",
    );
    e("GET", "/healthz", "/healthz", None, "AAAA");
    e("GET", "/readyz", "/readyz", None, "AAAA");
    // Installation-wide.
    e("GET", "/metrics", "/metrics", None, "AFFF");
    e("GET", "/api/backup", "/api/backup", None, "AFFF");
    e("POST", "/api/backup", "/api/backup", b, "aFFF");
    e(
        "GET",
        "/api/octopusservernodes",
        "/api/octopusservernodes",
        None,
        "AFFF",
    );
    e(
        "GET",
        "/api/octopusservernodes/ping",
        "/api/octopusservernodes/ping",
        None,
        "AAAA",
    );
    e(
        "GET",
        "/api/octopusservernodes/{id}",
        "/api/octopusservernodes/OctopusServerNodes-none",
        None,
        "aFFF",
    );
    e(
        "PUT",
        "/api/octopusservernodes/{id}",
        "/api/octopusservernodes/OctopusServerNodes-none",
        b,
        "aFFF",
    );
    e(
        "DELETE",
        "/api/octopusservernodes/{id}",
        "/api/octopusservernodes/OctopusServerNodes-none",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/agents/server-thumbprint",
        "/api/agents/server-thumbprint",
        None,
        "AAAA",
    );
    e("GET", "/api/users/me", "/api/users/me", None, "AAAA");
    e("GET", "/api/users", "/api/users", None, "AAAA");
    e("POST", "/api/users", "/api/users", b, "AFFF");
    e("GET", "/api/users/{id}", "/api/users/Users-1", None, "AHHH");
    e("PUT", "/api/users/{id}", "/api/users/Users-1", b, "AHHH");
    e(
        "DELETE",
        "/api/users/{id}",
        "/api/users/Users-999",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/users/{id}/apikeys",
        "/api/users/Users-1/apikeys",
        None,
        "AHHH",
    );
    e(
        "POST",
        "/api/users/{id}/apikeys",
        "/api/users/Users-1/apikeys",
        b,
        "AHHH",
    );
    e(
        "GET",
        "/api/users/{id}/apikeys/{key}",
        "/api/users/Users-1/apikeys/APIKeys-1",
        None,
        "AHHH",
    );
    e(
        "DELETE",
        "/api/users/{id}/apikeys/{key}",
        "/api/users/Users-1/apikeys/APIKeys-999",
        None,
        "aHHH",
    );
    e(
        "GET",
        "/api/users/{id}/permissions",
        "/api/users/Users-1/permissions",
        None,
        "AHHH",
    );
    e("GET", "/api/spaces", "/api/spaces", None, "AAAA");
    e("POST", "/api/spaces", "/api/spaces", b, "AFFF");
    e("GET", "/api/spaces/all", "/api/spaces/all", None, "AAAA");
    e(
        "GET",
        "/api/spaces/{id}",
        "/api/spaces/Spaces-1",
        None,
        "AHAA",
    );
    e("PUT", "/api/spaces/{id}", "/api/spaces/Spaces-1", b, "AHFF");
    e(
        "DELETE",
        "/api/spaces/{id}",
        "/api/spaces/Spaces-1",
        None,
        "aHFF",
    );
    e("GET", "/api/{space}", "/api/{space}", None, "AHAA");
    e(
        "GET",
        "/api/events/categories",
        "/api/events/categories",
        None,
        "AAAA",
    );
    e(
        "GET",
        "/api/events/groups",
        "/api/events/groups",
        None,
        "AAAA",
    );
    e(
        "GET",
        "/api/events/documenttypes",
        "/api/events/documenttypes",
        None,
        "AAAA",
    );
    e("GET", "/api/teams", "/api/teams", None, "AAFF");
    e("POST", "/api/teams", "/api/teams", b, "AFFF");
    e(
        "GET",
        "/api/teams/{id}",
        "/api/teams/teams-everyone",
        None,
        "AHFF",
    );
    e(
        "PUT",
        "/api/teams/{id}",
        "/api/teams/teams-everyone",
        b,
        "AHHH",
    );
    e(
        "DELETE",
        "/api/teams/{id}",
        "/api/teams/teams-999",
        None,
        "aaaa",
    );
    e(
        "GET",
        "/api/teams/{id}/scopeduserroles",
        "/api/teams/teams-everyone/scopeduserroles",
        None,
        "AHFF",
    );
    e("GET", "/api/userroles", "/api/userroles", None, "AFFF");
    e("POST", "/api/userroles", "/api/userroles", b, "AFFF");
    e(
        "GET",
        "/api/userroles/{id}",
        "/api/userroles/userroles-projectviewer",
        None,
        "AFFF",
    );
    e(
        "PUT",
        "/api/userroles/{id}",
        "/api/userroles/userroles-projectviewer",
        b,
        "AFFF",
    );
    e(
        "DELETE",
        "/api/userroles/{id}",
        "/api/userroles/userroles-999",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/scopeduserroles",
        "/api/scopeduserroles",
        None,
        "AAFF",
    );
    // No team named: a 400 for everyone, before any permission applies.
    e(
        "POST",
        "/api/scopeduserroles",
        "/api/scopeduserroles",
        b,
        "AAAA",
    );
    e(
        "GET",
        "/api/scopeduserroles/{id}",
        "/api/scopeduserroles/scopeduserroles-administrators",
        None,
        "AHFF",
    );
    e(
        "PUT",
        "/api/scopeduserroles/{id}",
        "/api/scopeduserroles/scopeduserroles-administrators",
        b,
        "AHHH",
    );
    e(
        "DELETE",
        "/api/scopeduserroles/{id}",
        "/api/scopeduserroles/scopeduserroles-999",
        None,
        "aaaa",
    );
    e(
        "GET",
        "/api/permissions/all",
        "/api/permissions/all",
        None,
        "AAAA",
    );
    // The space's resources (each also on the route without `{space}`).
    e(
        "GET",
        "/api/{space}/feeds",
        "/api/{space}/feeds",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/feeds/{id}",
        "/api/{space}/feeds/feeds-builtin",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/feeds/{id}/packages/versions",
        "/api/{space}/feeds/feeds-builtin/packages/versions?packageId=web",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/environments",
        "/api/{space}/environments",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/environments",
        "/api/{space}/environments",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/environments/all",
        "/api/{space}/environments/all",
        None,
        "AFAA",
    );
    // The deployer sees Dev only.
    e(
        "GET",
        "/api/{space}/environments/{id}",
        "/api/{space}/environments/Environments-2",
        None,
        "AFHA",
    );
    e(
        "PUT",
        "/api/{space}/environments/{id}",
        "/api/{space}/environments/Environments-1",
        b,
        "AFFF",
    );
    e(
        "DELETE",
        "/api/{space}/environments/{id}",
        "/api/{space}/environments/Environments-999",
        None,
        "aFFF",
    );
    e(
        "PUT",
        "/api/{space}/environments/sortorder",
        "/api/{space}/environments/sortorder",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/environments/{id}/machines",
        "/api/{space}/environments/Environments-1/machines",
        None,
        "AFFF",
    );
    for (coll, id) in [
        ("projectgroups", "ProjectGroups-1"),
        ("lifecycles", "Lifecycles-1"),
        ("libraryvariablesets", "LibraryVariableSets-999"),
    ] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let list = leak(format!("/api/{{space}}/{coll}"));
        let all = leak(format!("/api/{{space}}/{coll}/all"));
        let item_t = leak(format!("/api/{{space}}/{coll}/{{id}}"));
        let item = leak(format!("/api/{{space}}/{coll}/{id}"));
        let gone = leak(format!("/api/{{space}}/{coll}/{coll}-999"));
        let view = if id.ends_with("999") { "aFaa" } else { "AFAA" };
        let edit = if id.ends_with("999") { "aFFF" } else { "AFFF" };
        e("GET", list, list, None, "AFAA");
        e("POST", list, list, b, "AFFF");
        e("GET", all, all, None, "AFAA");
        e("GET", item_t, item, None, view);
        e("PUT", item_t, item, b, edit);
        e("DELETE", item_t, gone, None, "aFFF");
    }
    e(
        "GET",
        "/api/{space}/projectgroups/{id}/projects",
        "/api/{space}/projectgroups/ProjectGroups-1/projects",
        None,
        "AFAA",
    );
    for (coll, id) in [
        ("machines", "Machines-999"),
        ("workers", "Workers-999"),
        ("workerpools", "WorkerPools-1"),
        ("machinepolicies", "MachinePolicies-1"),
    ] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let list = leak(format!("/api/{{space}}/{coll}"));
        let all = leak(format!("/api/{{space}}/{coll}/all"));
        let item_t = leak(format!("/api/{{space}}/{coll}/{{id}}"));
        let item = leak(format!("/api/{{space}}/{coll}/{id}"));
        let gone = leak(format!("/api/{{space}}/{coll}/{coll}-999"));
        let one = if id.ends_with("999") { "aFFF" } else { "AFFF" };
        e("GET", list, list, None, "AFFF");
        e("POST", list, list, b, "AFFF");
        e("GET", all, all, None, "AFFF");
        e("GET", item_t, item, None, one);
        e("PUT", item_t, item, b, one);
        e("DELETE", item_t, gone, None, "aFFF");
    }
    e(
        "GET",
        "/api/{space}/workerpools/{id}/workers",
        "/api/{space}/workerpools/WorkerPools-1/workers",
        None,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/projects",
        "/api/{space}/projects",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/projects",
        "/api/{space}/projects",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/projects/all",
        "/api/{space}/projects/all",
        None,
        "AFAA",
    );
    // Api is outside the deployer's scope: as if it did not exist.
    e(
        "GET",
        "/api/{space}/projects/{id}",
        "/api/{space}/projects/Projects-2",
        None,
        "AFHA",
    );
    e(
        "PUT",
        "/api/{space}/projects/{id}",
        "/api/{space}/projects/Projects-1",
        b,
        "AFAF",
    );
    e(
        "DELETE",
        "/api/{space}/projects/{id}",
        "/api/{space}/projects/Projects-999",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/{space}/projects/{id}/channels",
        "/api/{space}/projects/Projects-1/channels",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/projects/{id}/releases",
        "/api/{space}/projects/Projects-1/releases",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/projects/{id}/releases/{version}",
        "/api/{space}/projects/Projects-1/releases/1.0.0",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/projects/{id}/deploymentprocesses",
        "/api/{space}/projects/Projects-2/deploymentprocesses",
        None,
        "AFHA",
    );
    e(
        "PUT",
        "/api/{space}/projects/{id}/deploymentprocesses",
        "/api/{space}/projects/Projects-1/deploymentprocesses",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/channels",
        "/api/{space}/channels",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/channels",
        "/api/{space}/channels",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/channels/{id}",
        "/api/{space}/channels/Channels-1",
        None,
        "AFAA",
    );
    e(
        "PUT",
        "/api/{space}/channels/{id}",
        "/api/{space}/channels/Channels-1",
        b,
        "AFAF",
    );
    e(
        "DELETE",
        "/api/{space}/channels/{id}",
        "/api/{space}/channels/Channels-999",
        None,
        "aFaF",
    );
    e(
        "GET",
        "/api/{space}/deploymentprocesses/{id}",
        "/api/{space}/deploymentprocesses/deploymentprocess-Projects-2",
        None,
        "AFHA",
    );
    e(
        "PUT",
        "/api/{space}/deploymentprocesses/{id}",
        "/api/{space}/deploymentprocesses/deploymentprocess-Projects-1",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/releases",
        "/api/{space}/releases",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/releases",
        "/api/{space}/releases",
        b,
        "AFAF",
    );
    e(
        "POST",
        "/api/{space}/releases/create/v1",
        "/api/{space}/releases/create/v1",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/releases/{id}",
        "/api/{space}/releases/Releases-1",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/releases/{id}/deployments",
        "/api/{space}/releases/Releases-1/deployments",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/releases/{id}/progression",
        "/api/{space}/releases/Releases-1/progression",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/releases/{id}/deployments/preview/{environment}",
        "/api/{space}/releases/Releases-1/deployments/preview/Environments-1",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/deployments",
        "/api/{space}/deployments",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/deployments",
        "/api/{space}/deployments",
        b,
        "AFAF",
    );
    e(
        "POST",
        "/api/{space}/deployments/create/untenanted/v1",
        "/api/{space}/deployments/create/untenanted/v1",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/deployments/{id}",
        "/api/{space}/deployments/Deployments-1",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/variables/{id}",
        "/api/{space}/variables/variableset-Projects-2",
        None,
        "AFHA",
    );
    e(
        "PUT",
        "/api/{space}/variables/{id}",
        "/api/{space}/variables/variableset-Projects-1",
        b,
        "AFAF",
    );
    e(
        "GET",
        "/api/{space}/interruptions",
        "/api/{space}/interruptions",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/interruptions/{id}",
        "/api/{space}/interruptions/Interruptions-999",
        None,
        "aFaa",
    );
    e(
        "GET",
        "/api/{space}/interruptions/{id}/responsible",
        "/api/{space}/interruptions/Interruptions-999/responsible",
        None,
        "aFaa",
    );
    e(
        "PUT",
        "/api/{space}/interruptions/{id}/responsible",
        "/api/{space}/interruptions/Interruptions-999/responsible",
        b,
        "aFaF",
    );
    e(
        "POST",
        "/api/{space}/interruptions/{id}/submit",
        "/api/{space}/interruptions/Interruptions-999/submit",
        b,
        "aFaF",
    );
    e(
        "POST",
        "/api/{space}/packages/raw",
        "/api/{space}/packages/raw",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/packages",
        "/api/{space}/packages",
        None,
        "AFAA",
    );
    e(
        "GET",
        "/api/{space}/packages/{id}",
        "/api/{space}/packages/packages-web.9.9.9",
        None,
        "aFaa",
    );
    e(
        "DELETE",
        "/api/{space}/packages/{id}",
        "/api/{space}/packages/packages-web.9.9.9",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/{space}/packages/{id}/raw",
        "/api/{space}/packages/packages-web.9.9.9/raw",
        None,
        "aFaF",
    );
    e(
        "GET",
        "/api/{space}/build-information",
        "/api/{space}/build-information",
        None,
        "AFAA",
    );
    e(
        "POST",
        "/api/{space}/build-information",
        "/api/{space}/build-information",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/build-information/{id}",
        "/api/{space}/build-information/BuildInformation-999",
        None,
        "aFaa",
    );
    e(
        "DELETE",
        "/api/{space}/build-information/{id}",
        "/api/{space}/build-information/BuildInformation-999",
        None,
        "aFFF",
    );
    // The audit log and tasks span every space on their routes without
    // `{space}`: there the manager sees their own space's.
    e(
        "GET",
        "/api/{space}/events",
        "/api/{space}/events",
        None,
        "AAAA",
    );
    e(
        "GET",
        "/api/{space}/events/{id}",
        "/api/{space}/events/Events-999",
        None,
        "aaaa",
    );
    e(
        "GET",
        "/api/{space}/subscriptions",
        "/api/{space}/subscriptions",
        None,
        "AFFF",
    );
    e(
        "POST",
        "/api/{space}/subscriptions",
        "/api/{space}/subscriptions",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/subscriptions/all",
        "/api/{space}/subscriptions/all",
        None,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/subscriptions/{id}",
        "/api/{space}/subscriptions/Subscriptions-999",
        None,
        "aFFF",
    );
    e(
        "PUT",
        "/api/{space}/subscriptions/{id}",
        "/api/{space}/subscriptions/Subscriptions-999",
        b,
        "aFFF",
    );
    e(
        "DELETE",
        "/api/{space}/subscriptions/{id}",
        "/api/{space}/subscriptions/Subscriptions-999",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/{space}/subscriptions/{id}/deliveries",
        "/api/{space}/subscriptions/Subscriptions-999/deliveries",
        None,
        "aFFF",
    );
    e(
        "GET",
        "/api/{space}/tasks",
        "/api/{space}/tasks",
        None,
        "AAAA",
    );
    e(
        "POST",
        "/api/{space}/tasks",
        "/api/{space}/tasks",
        b,
        "AFFF",
    );
    e(
        "GET",
        "/api/{space}/tasks/{id}",
        "/api/{space}/tasks/ServerTasks-1",
        None,
        "AHAA",
    );
    e(
        "GET",
        "/api/{space}/tasks/{id}/details",
        "/api/{space}/tasks/ServerTasks-1/details",
        None,
        "AHAA",
    );
    e(
        "GET",
        "/api/{space}/tasks/{id}/raw",
        "/api/{space}/tasks/ServerTasks-1/raw",
        None,
        "AHAA",
    );
    e(
        "GET",
        "/api/{space}/tasks/{id}/stream",
        "/api/{space}/tasks/ServerTasks-1/stream",
        None,
        "AHAA",
    );
    e(
        "POST",
        "/api/{space}/tasks/{id}/cancel",
        "/api/{space}/tasks/ServerTasks-1/cancel",
        None,
        "aHaF",
    );
    m
}

/// The users of the fixture, by the API key each calls with.
struct Fixture {
    admin: String,
    manager: String,
    deployer: String,
    viewer: String,
    disabled: String,
    expired: String,
}

async fn fixture(s: &Server) -> Fixture {
    s.create("/api/environments", json!({"Name": "Dev"})).await;
    s.create("/api/environments", json!({"Name": "Production"}))
        .await;
    let web = s.project_with_script("Web", "echo web", json!({})).await;
    assert_eq!(web["Id"], "Projects-1");
    let api = s.project_with_script("Api", "echo api", json!({})).await;
    assert_eq!(api["Id"], "Projects-2");
    let task = s.release_and_deploy("Web", "1.0.0").await;
    assert_eq!(task, "ServerTasks-1");
    s.wait_for_task(&task).await;

    let (manager_id, manager) = s.service_account("manager").await;
    s.create(
        "/api/spaces",
        json!({"Name": "Other", "SpaceManagersTeamMembers": [manager_id]}),
    )
    .await;
    let (deployer_id, deployer) = s.service_account("deployer").await;
    s.team_with_role(
        "developers",
        &[&deployer_id],
        "userroles-projectdeployer",
        &["Projects-1"],
        &["Environments-1"],
    )
    .await;
    let (viewer_id, viewer) = s.service_account("viewer").await;
    s.team_with_role(
        "viewers",
        &[&viewer_id],
        "userroles-projectviewer",
        &[],
        &[],
    )
    .await;
    let (disabled_id, disabled) = s.service_account("disabled").await;
    s.team_with_role(
        "disabled ones",
        &[&disabled_id],
        "userroles-projectviewer",
        &[],
        &[],
    )
    .await;
    let r = s
        .send(
            Method::PUT,
            &format!("/api/users/{disabled_id}"),
            &json!({"IsActive": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // A key that has expired: written through the store, as the API
    // refuses to make one that expires in the past.
    let (expired_id, _) = s.service_account("expired").await;
    let secret = cuttle_service::auth::generate_api_key();
    let mut tx = s.inst.store.begin().await.unwrap();
    let key = cuttle_model::ApiKey {
        id: tx
            .next_id(cuttle_model::ids::Collection::ApiKeys)
            .await
            .unwrap(),
        user_id: expired_id,
        purpose: "expired".into(),
        created: Some(cuttle_model::Timestamp::now().add_millis(-7_200_000)),
        expires: Some(cuttle_model::Timestamp::now().add_millis(-3_600_000)),
        api_key: None,
    };
    tx.insert_api_key(&key, &cuttle_service::auth::hash_api_key(&secret))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    Fixture {
        admin: ADMIN_KEY.into(),
        manager,
        deployer,
        viewer,
        disabled,
        expired: secret,
    }
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    s.call_with(method, path, body, key).await
}

#[tokio::test]
async fn every_route_answers_each_user_as_written_down() {
    on_both("authorization_every_route", |s| async move {
        let f = fixture(&s).await;
        let table = cuttle_api::route_table();
        let expected = expectations();
        let mut missing = vec![];
        let mut wrong = vec![];
        let mut seen: std::collections::BTreeSet<(&'static str, &'static str)> =
            std::collections::BTreeSet::new();
        for route in &table {
            let spaced = format!("/api/{{space}}{}", route.path.trim_start_matches("/api"));
            let find = |path: &str| {
                expected
                    .iter()
                    .find(|((m, p), _)| *m == route.method && *p == path)
                    .map(|(k, x)| (*k, x))
            };
            let (key, expect, form_has_space) = match find(&route.path) {
                Some((k, x)) => (k, x, route.path.contains("{space}")),
                // The same route in the default space.
                None => match find(&spaced) {
                    Some((k, x)) => (k, x, false),
                    None => {
                        missing.push(format!("{} {}", route.method, route.path));
                        continue;
                    }
                },
            };
            seen.insert(key);
            let path = if form_has_space {
                expect.path.replace("{space}", "Spaces-1")
            } else {
                expect.path.replacen("/{space}", "", 1)
            };
            let codes: Vec<char> = expect.who.chars().collect();
            let manager = if form_has_space && route.path.starts_with("/api/{space}") {
                'H'
            } else {
                codes[1]
            };
            let public = route.access == cuttle_api::route_table::Access::Public;
            let users: [(&str, Option<&str>, char); 7] = [
                ("viewer", Some(&f.viewer), codes[3]),
                ("deployer", Some(&f.deployer), codes[2]),
                ("manager", Some(&f.manager), manager),
                (
                    "disabled",
                    Some(&f.disabled),
                    if public { 'A' } else { 'U' },
                ),
                (
                    "expired key",
                    Some(&f.expired),
                    if public { 'A' } else { 'U' },
                ),
                ("no key", None, if public { 'A' } else { 'U' }),
                ("admin", Some(&f.admin), codes[0]),
            ];
            for (who, key, code) in users {
                let r = call(&s, route.method, &path, expect.body, key).await;
                if !matches(answer(code), r.status) {
                    wrong.push(format!(
                        "{} {path} as {who}: expected {:?}, got {} {}",
                        route.method,
                        answer(code),
                        r.status,
                        r.body.to_string().chars().take(200).collect::<String>()
                    ));
                }
            }
        }
        let unused: Vec<_> = expected.keys().filter(|k| !seen.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "{}: routes without a written expectation: {missing:#?}",
            s.backend
        );
        assert!(
            unused.is_empty(),
            "{}: expectations for routes that do not exist: {unused:?}",
            s.backend
        );
        assert!(wrong.is_empty(), "{}: {wrong:#?}", s.backend);
    })
    .await;
}
