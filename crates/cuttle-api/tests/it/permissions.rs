//! Teams, roles and their scopes at work: a deployer scoped to one project
//! and Dev, and the bad inputs and faults the permission model must
//! survive. Each runs on SQLite and PostgreSQL.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn as_user(
    s: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> common::Reply {
    let body = body.map(|b| b.to_string());
    s.call_with(method, path, body.as_deref(), Some(key)).await
}

#[tokio::test]
async fn a_scoped_deployer_deploys_to_dev_and_is_refused_production_by_name() {
    on_both("perm_scoped_deployer", |s| async move {
        s.create("/api/environments", json!({"Name": "Dev"})).await;
        s.create("/api/environments", json!({"Name": "Production"}))
            .await;
        s.project_with_script("Web", "echo web", json!({})).await;
        s.project_with_script("Api", "echo api", json!({})).await;
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let (id, key) = s.service_account("dev").await;
        s.team_with_role(
            "developers",
            &[&id],
            "userroles-projectdeployer",
            &["Projects-1"],
            &["Environments-1"],
        )
        .await;

        // Allowed in Dev.
        let dev = as_user(
            &s,
            &key,
            Method::POST,
            "/api/Spaces-1/deployments",
            Some(json!({"ReleaseId": "Releases-1", "EnvironmentId": "Environments-1"})),
        )
        .await;
        assert_eq!(dev.status, StatusCode::CREATED, "{}: {}", s.backend, dev.body);
        // Production's phase opens once Dev's deployment is done.
        s.wait_for_task(dev.body["TaskId"].as_str().unwrap()).await;
        // Refused in Production, naming the permission and where.
        let prod = as_user(
            &s,
            &key,
            Method::POST,
            "/api/Spaces-1/deployments",
            Some(json!({"ReleaseId": "Releases-1", "EnvironmentId": "Environments-2"})),
        )
        .await;
        assert_eq!(prod.status, StatusCode::FORBIDDEN, "{}", prod.body);
        let message = prod.body["ErrorMessage"].as_str().unwrap();
        assert!(
            message.contains("DeploymentCreate") && message.contains("environment Environments-2"),
            "{message}"
        );
        // By name, too.
        let by_name = as_user(
            &s,
            &key,
            Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Production"]})),
        )
        .await;
        assert_eq!(by_name.status, StatusCode::FORBIDDEN, "{}", by_name.body);

        // The project list shows only Web; Api answers as a missing id does.
        let list = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        let names: Vec<&str> = list.body["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Web"]);
        assert_eq!(list.body["TotalResults"], 1);
        let hidden = as_user(&s, &key, Method::GET, "/api/projects/Projects-2", None).await;
        let missing = as_user(&s, &key, Method::GET, "/api/projects/Projects-99", None).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            hidden.body["ErrorMessage"].as_str().unwrap().replace("Projects-2", "X"),
            missing.body["ErrorMessage"].as_str().unwrap().replace("Projects-99", "X")
        );
        // A release of the hidden project cannot be made either.
        let r = as_user(
            &s,
            &key,
            Method::POST,
            "/api/Spaces-1/releases",
            Some(json!({"ProjectId": "Projects-2", "Version": "2.0.0"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        // Environments: Dev only.
        let envs = as_user(&s, &key, Method::GET, "/api/environments", None).await;
        assert_eq!(envs.body["TotalResults"], 1, "{}", envs.body);
        // What the user may do, and where.
        let mine = as_user(&s, &key, Method::GET, &format!("/api/users/{id}/permissions"), None).await;
        assert_eq!(mine.status, StatusCode::OK);
        let deploy = &mine.body["SpacePermissions"]["DeploymentCreate"][0];
        assert_eq!(deploy["RestrictedToEnvironmentIds"], json!(["Environments-1"]));
        assert_eq!(deploy["RestrictedToProjectIds"], json!(["Projects-1"]));
        // The deployment list shows the Dev deployment only, and the task too.
        let deployments = as_user(&s, &key, Method::GET, "/api/deployments", None).await;
        assert_eq!(deployments.body["TotalResults"], 1);
    })
    .await;
}

#[tokio::test]
async fn fault_a_role_scoped_to_a_deleted_project_grants_nothing_and_still_reads() {
    on_both("perm_deleted_project", |s| async move {
        s.project_with_script("Web", "echo web", json!({})).await;
        s.project_with_script("Api", "echo api", json!({})).await;
        let (id, key) = s.service_account("viewer").await;
        let t = s.team_with_role( "viewers", &[&id], "userroles-projectviewer", &["Projects-1"], &[]).await;
        let r = s
            .send(Method::DELETE, "/api/projects/Projects-1", &json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        // The role keeps naming the deleted project, and gives nothing.
        let roles = s
            .get(&format!("/api/teams/{}/scopeduserroles", t["Id"].as_str().unwrap()))
            .await;
        assert_eq!(roles.body["Items"][0]["ProjectIds"], json!(["Projects-1"]));
        let list = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["TotalResults"], 0, "{}", list.body);
        let other = as_user(&s, &key, Method::GET, "/api/projects/Projects-2", None).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND);
        // A new role cannot name it.
        let again = s
            .post(
                "/api/scopeduserroles",
                json!({"TeamId": t["Id"], "UserRoleId": "userroles-projectviewer", "SpaceId": "Spaces-1", "ProjectIds": ["Projects-1"]}),
            )
            .await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert!(again.error_text().contains("Projects-1"), "{}", again.body);
    })
    .await;
}

#[tokio::test]
async fn fault_a_disabled_member_of_a_team_can_do_nothing_at_once() {
    on_both("perm_disabled_member", |s| async move {
        s.project_with_script("Web", "echo web", json!({})).await;
        let (id, key) = s.service_account("leaver").await;
        s.team_with_role("viewers", &[&id], "userroles-projectviewer", &[], &[])
            .await;
        let before = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        assert_eq!(before.status, StatusCode::OK);
        let r = s
            .send(
                Method::PUT,
                &format!("/api/users/{id}"),
                &json!({"IsActive": false}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let after = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        // Still a member, still listed, and its permissions say nothing.
        let perms = s.get(&format!("/api/users/{id}/permissions")).await;
        assert_eq!(perms.body["SpacePermissions"], json!({}));
        // Enabled again, the key works again.
        s.send(
            Method::PUT,
            &format!("/api/users/{id}"),
            &json!({"IsActive": true}),
        )
        .await;
        let back = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        assert_eq!(back.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn fault_the_last_administrator_stays_one() {
    on_both("perm_last_admin", |s| async move {
        let admins = s.get("/api/teams/teams-administrators").await.body;
        assert_eq!(admins["MemberUserIds"], json!(["Users-1"]));
        // Taking yourself out of the administrators team is refused.
        let out = s
            .send(
                Method::PUT,
                "/api/teams/teams-administrators",
                &json!({"Name": admins["Name"], "MemberUserIds": [], "Version": admins["Version"]}),
            )
            .await;
        assert_eq!(out.status, StatusCode::BAD_REQUEST, "{}", out.body);
        assert!(out.error_text().contains("administrator"), "{}", out.body);
        // Disabling or deleting yourself is refused too.
        let off = s
            .send(Method::PUT, "/api/users/Users-1", &json!({"IsActive": false}))
            .await;
        assert_eq!(off.status, StatusCode::BAD_REQUEST, "{}", off.body);
        let gone = s.send(Method::DELETE, "/api/users/Users-1", &json!({})).await;
        assert_eq!(gone.status, StatusCode::BAD_REQUEST, "{}", gone.body);
        // The administrators' role cannot be taken from the team.
        let role = s
            .send(
                Method::DELETE,
                "/api/scopeduserroles/scopeduserroles-administrators",
                &json!({}),
            )
            .await;
        assert_eq!(role.status, StatusCode::BAD_REQUEST, "{}", role.body);
        // With a second administrator, the first may be removed by them.
        let (second, second_key) = s.service_account("second-admin").await;
        let admins = s.get("/api/teams/teams-administrators").await.body;
        let r = s
            .send(
                Method::PUT,
                "/api/teams/teams-administrators",
                &json!({"Name": admins["Name"], "MemberUserIds": ["Users-1", second], "Version": admins["Version"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let off = as_user(&s, &second_key, Method::PUT, "/api/users/Users-1", Some(json!({"IsActive": false}))).await;
        assert_eq!(off.status, StatusCode::OK, "{}", off.body);
        let still = s.get("/api/users/me").await;
        assert_eq!(still.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn fault_a_custom_role_with_an_unknown_permission_is_refused_by_name() {
    on_both("perm_unknown_permission", |s| async move {
        let r = s
            .post(
                "/api/userroles",
                json!({"Name": "Shipper", "GrantedSpacePermissions": ["DeploymentCreate", "DeployEverything"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("'DeployEverything' is not a permission"), "{}", r.body);
        let ok = s
            .post(
                "/api/userroles",
                json!({"Name": "Shipper", "GrantedSpacePermissions": ["DeploymentCreate", "ProjectView"]}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
        let all = s.get("/api/permissions/all").await;
        assert!(all.body["DeploymentCreate"]["Description"].is_string());
    })
    .await;
}

#[tokio::test]
async fn fault_a_stale_team_version_is_refused() {
    on_both("perm_team_version", |s| async move {
        let (a, _) = s.service_account("a").await;
        let (b, _) = s.service_account("b").await;
        let t = s
            .create("/api/teams", json!({"Name": "ops", "SpaceId": "Spaces-1"}))
            .await;
        let id = t["Id"].as_str().unwrap();
        let path = format!("/api/teams/{id}");
        // Two people read version 1; both write.
        let first = s
            .send(Method::PUT, &path, &json!({"Name": "ops", "SpaceId": "Spaces-1", "MemberUserIds": [a], "Version": t["Version"]}))
            .await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.body["Version"], 2);
        let second = s
            .send(Method::PUT, &path, &json!({"Name": "ops", "SpaceId": "Spaces-1", "MemberUserIds": [b], "Version": t["Version"]}))
            .await;
        assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
        let now = s.get(&path).await.body;
        assert_eq!(now["MemberUserIds"], json!([a]));
        // Without a version, nothing is written.
        let blind = s
            .send(Method::PUT, &path, &json!({"Name": "ops", "SpaceId": "Spaces-1", "MemberUserIds": [b]}))
            .await;
        assert_eq!(blind.status, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn api_keys_expire_list_without_secrets_and_an_administrator_revokes_them() {
    on_both("perm_api_keys", |s| async move {
        let (id, key) = s.service_account("robot").await;
        let listed = s.get(&format!("/api/users/{id}/apikeys")).await;
        assert_eq!(listed.body["TotalResults"], 1);
        assert!(
            listed.body["Items"][0].get("ApiKey").is_none(),
            "{}",
            listed.body
        );
        let past = s
            .post(
                &format!("/api/users/{id}/apikeys"),
                json!({"Purpose": "x", "Expires": "2020-01-01"}),
            )
            .await;
        assert_eq!(past.status, StatusCode::BAD_REQUEST);
        let later = s
            .post(
                &format!("/api/users/{id}/apikeys"),
                json!({"Purpose": "x", "Expires": "2999-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
        assert!(later.body["Expires"]
            .as_str()
            .unwrap()
            .starts_with("2999-01-01"));
        // The account may not list another's keys; the administrator revokes its own.
        let theirs = as_user(&s, &key, Method::GET, "/api/users/Users-1/apikeys", None).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        let key_id = listed.body["Items"][0]["Id"].as_str().unwrap();
        let r = s
            .send(
                Method::DELETE,
                &format!("/api/users/{id}/apikeys/{key_id}"),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let after = as_user(&s, &key, Method::GET, "/api/users/me", None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn a_space_manager_manages_their_space_and_sees_nothing_of_another() {
    on_both("perm_space_manager", |s| async move {
        s.create("/api/environments", json!({"Name": "Dev"})).await;
        let (id, key) = s.service_account("boss").await;
        let space = s
            .create("/api/spaces", json!({"Name": "Customer", "SpaceManagersTeamMembers": [id]}))
            .await;
        let sid = space["Id"].as_str().unwrap();
        let env = as_user(&s, &key, Method::POST, &format!("/api/{sid}/environments"), Some(json!({"Name": "Prod"}))).await;
        assert_eq!(env.status, StatusCode::CREATED, "{}", env.body);
        let spaces = as_user(&s, &key, Method::GET, "/api/spaces", None).await;
        assert_eq!(spaces.body["TotalResults"], 1);
        assert_eq!(spaces.body["Items"][0]["Id"], sid);
        // The default space does not exist for them, by id or by route.
        let other = as_user(&s, &key, Method::GET, "/api/Spaces-1/environments", None).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND);
        let by_id = as_user(&s, &key, Method::GET, &format!("/api/{sid}/environments/Environments-1"), None).await;
        assert_eq!(by_id.status, StatusCode::NOT_FOUND);
        // They add a team of their space, but may not reach installation-wide teams.
        let t = as_user(&s, &key, Method::POST, "/api/teams", Some(json!({"Name": "devs", "SpaceId": sid}))).await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
        let sys = as_user(&s, &key, Method::POST, "/api/teams", Some(json!({"Name": "devs"}))).await;
        assert_eq!(sys.status, StatusCode::FORBIDDEN, "{}", sys.body);
        // A role given through their space's team applies in their space only.
        let grant = as_user(
            &s,
            &key,
            Method::POST,
            "/api/scopeduserroles",
            Some(json!({"TeamId": t.body["Id"], "UserRoleId": "userroles-systemadministrator", "SpaceId": sid})),
        )
        .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{}", grant.body);
        let users = as_user(&s, &key, Method::POST, "/api/users", Some(json!({"Username": "x", "IsService": true}))).await;
        assert_eq!(users.status, StatusCode::FORBIDDEN);

        // They rename their own space; the default space is not there for them.
        let mut mine = as_user(&s, &key, Method::GET, &format!("/api/spaces/{sid}"), None).await.body;
        mine["Name"] = json!("Customer A");
        let renamed = as_user(&s, &key, Method::PUT, &format!("/api/spaces/{sid}"), Some(mine.clone())).await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
        assert_eq!(s.get(&format!("/api/spaces/{sid}")).await.body["Name"], "Customer A");
        let default = as_user(&s, &key, Method::PUT, "/api/spaces/Spaces-1", Some(json!({"Name": "Mine"}))).await;
        assert_eq!(default.status, StatusCode::NOT_FOUND, "{}", default.body);
        let gone = as_user(&s, &key, Method::DELETE, "/api/spaces/Spaces-1", None).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
        // A member of another team of the space, even one holding every
        // space permission there, does not manage the space itself.
        let (dev, dev_key) = s.service_account("dev-of-customer").await;
        let mut devs = as_user(&s, &key, Method::GET, &format!("/api/teams/{}", t.body["Id"].as_str().unwrap()), None).await.body;
        devs["MemberUserIds"] = json!([dev]);
        let joined = as_user(&s, &key, Method::PUT, &format!("/api/teams/{}", t.body["Id"].as_str().unwrap()), Some(devs)).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
        let refused = as_user(&s, &dev_key, Method::PUT, &format!("/api/spaces/{sid}"), Some(mine.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert!(refused.body["ErrorMessage"].as_str().unwrap().contains("SpaceEdit"), "{}", refused.body);
        let refused = as_user(&s, &dev_key, Method::DELETE, &format!("/api/spaces/{sid}"), None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        // The manager stops its queue and deletes it.
        mine["TaskQueueStopped"] = json!(true);
        let stopped = as_user(&s, &key, Method::PUT, &format!("/api/spaces/{sid}"), Some(mine)).await;
        assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
        let deleted = as_user(&s, &key, Method::DELETE, &format!("/api/spaces/{sid}"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
        assert_eq!(s.get(&format!("/api/spaces/{sid}")).await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

/// A grant narrowed to a project group reaches every project of the group,
/// wherever the check names only the project (a task, its log, the task
/// list), and nothing outside the group.
#[tokio::test]
async fn a_grant_narrowed_to_a_project_group_reaches_its_projects_tasks() {
    on_both("perm_project_group", |s| async move {
        s.project_with_script("Web", "echo web", json!({})).await;
        s.project_with_script("Api", "echo api", json!({})).await;
        let group = s
            .create("/api/projectgroups", json!({"Name": "Shop"}))
            .await;
        let mut web = s.get("/api/projects/Projects-1").await.body;
        web["ProjectGroupId"] = group["Id"].clone();
        let moved = s.send(Method::PUT, "/api/projects/Projects-1", &web).await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        let web_task = s.release_and_deploy("Web", "1.0.0").await;
        let api_task = s.release_and_deploy("Api", "1.0.0").await;
        s.wait_for_task(&web_task).await;
        s.wait_for_task(&api_task).await;

        let (id, key) = s.service_account("shopper").await;
        let team = s
            .create(
                "/api/teams",
                json!({"Name": "shop", "SpaceId": "Spaces-1", "MemberUserIds": [id]}),
            )
            .await;
        s.create(
            "/api/scopeduserroles",
            json!({"TeamId": team["Id"], "UserRoleId": "userroles-projectviewer",
                   "SpaceId": "Spaces-1", "ProjectGroupIds": [group["Id"]]}),
        )
        .await;

        let seen = as_user(
            &s,
            &key,
            Method::GET,
            &format!("/api/tasks/{web_task}"),
            None,
        )
        .await;
        assert_eq!(seen.status, StatusCode::OK, "{}: {}", s.backend, seen.body);
        let log = as_user(
            &s,
            &key,
            Method::GET,
            &format!("/api/tasks/{web_task}/raw"),
            None,
        )
        .await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.body);
        let hidden = as_user(
            &s,
            &key,
            Method::GET,
            &format!("/api/tasks/{api_task}"),
            None,
        )
        .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
        let tasks = as_user(&s, &key, Method::GET, "/api/Spaces-1/tasks", None).await;
        let ids: Vec<&str> = tasks.body["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["Id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [web_task.as_str()], "{}", tasks.body);
        let projects = as_user(&s, &key, Method::GET, "/api/projects", None).await;
        assert_eq!(projects.body["TotalResults"], 1, "{}", projects.body);
    })
    .await;
}

/// A user whose variable permissions are narrowed to Dev sees and changes
/// only what is theirs: Production's variables are neither shown nor lost
/// when they save, and what they may not change is refused by name.
#[tokio::test]
async fn variables_follow_the_environments_a_user_is_narrowed_to() {
    on_both("perm_variables", |s| async move {
        let project = s.project_with_script("Web", "echo web", json!({})).await;
        s.create("/api/environments", json!({"Name": "Production"}))
            .await;
        let set = format!(
            "/api/Spaces-1/variables/{}",
            project["VariableSetId"].as_str().unwrap()
        );
        let mut all = s.get(&set).await.body;
        all["Variables"] = json!([
            {"Name": "A", "Value": "a"},
            {"Name": "D", "Value": "d", "Scope": {"Environment": ["Dev"]}},
            {"Name": "P", "Value": "p", "Scope": {"Environment": ["Production"]}},
            {"Name": "S", "Value": "secret", "Type": "Sensitive", "Scope": {"Environment": ["Production"]}},
        ]);
        let saved = s.send(Method::PUT, &set, &all).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);

        let role = s
            .create(
                "/api/userroles",
                json!({"Name": "Dev variables", "GrantedSpacePermissions":
                    ["ProjectView", "VariableView", "VariableViewUnscoped", "VariableEdit"]}),
            )
            .await;
        let (id, key) = s.service_account("dev-vars").await;
        s.team_with_role("dev vars", &[&id], role["Id"].as_str().unwrap(), &[], &["Environments-1"])
            .await;
        let names = |body: &Value| -> Vec<String> {
            body["Variables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["Name"].as_str().unwrap().to_owned())
                .collect()
        };

        let mine = as_user(&s, &key, Method::GET, &set, None).await;
        assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
        assert_eq!(names(&mine.body), ["A", "D"], "{}: {}", s.backend, mine.body);

        // Changing Dev's variable and adding one in Dev: allowed; what they
        // could not see is kept.
        let mut edit = mine.body.clone();
        edit["Variables"][1]["Value"] = json!("d2");
        edit["Variables"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Name": "N", "Value": "n", "Scope": {"Environment": ["Environments-1"]}}));
        let put = as_user(&s, &key, Method::PUT, &set, Some(edit)).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        assert_eq!(names(&put.body), ["A", "D", "N"]);
        let stored = s.get(&set).await.body;
        let mut stored_names = names(&stored);
        stored_names.sort();
        assert_eq!(stored_names, ["A", "D", "N", "P", "S"]);
        let value = |name: &str| {
            stored["Variables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["Name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(value("P")["Value"], "p");
        assert_eq!(value("D")["Value"], "d2");
        assert_eq!(value("S")["IsSensitive"], true);

        // Refused, each naming what is missing, and nothing changes.
        let version = stored["Version"].clone();
        let current = as_user(&s, &key, Method::GET, &set, None).await.body;
        let mut unscoped = current.clone();
        unscoped["Variables"][0]["Value"] = json!("a2");
        let mut production = current.clone();
        production["Variables"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Name": "Q", "Value": "q", "Scope": {"Environment": ["Production"]}}));
        let mut removed = current.clone();
        removed["Variables"].as_array_mut().unwrap().remove(0);
        for (body, missing) in [
            (unscoped, "VariableEditUnscoped"),
            (production, "VariableEdit"),
            (removed, "VariableEditUnscoped"),
        ] {
            let r = as_user(&s, &key, Method::PUT, &set, Some(body)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
            let message = r.body["ErrorMessage"].as_str().unwrap();
            assert!(message.contains(&format!("Missing permission: {missing} ")), "{message}");
        }
        assert_eq!(s.get(&set).await.body["Version"], version);
    })
    .await;
}

/// The audit log of a user narrowed to one project and Dev holds no event
/// about another project or environment, by list, by space or by id.
#[tokio::test]
async fn events_follow_the_projects_and_environments_a_user_is_narrowed_to() {
    on_both("perm_events", |s| async move {
        s.project_with_script("Web", "echo web", json!({})).await;
        s.project_with_script("Api", "echo api", json!({})).await;
        s.create("/api/environments", json!({"Name": "Production"}))
            .await;
        let (id, key) = s.service_account("web-viewer").await;
        s.team_with_role(
            "web viewers",
            &[&id],
            "userroles-projectviewer",
            &["Projects-1"],
            &["Environments-1"],
        )
        .await;
        let about = |body: &Value, doc: &str| -> usize {
            body["Items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| {
                    e["RelatedDocumentIds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|d| d == doc)
                })
                .count()
        };
        for path in ["/api/events?take=1000", "/api/Spaces-1/events?take=1000"] {
            let all = s.get(path).await.body;
            assert!(
                about(&all, "Projects-2") > 0 && about(&all, "Environments-2") > 0,
                "{all}"
            );
            let mine = as_user(&s, &key, Method::GET, path, None).await;
            assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
            assert!(
                about(&mine.body, "Projects-1") > 0,
                "{}: {}",
                s.backend,
                mine.body
            );
            assert_eq!(about(&mine.body, "Projects-2"), 0, "{}", mine.body);
            assert_eq!(about(&mine.body, "Environments-2"), 0, "{}", mine.body);
            assert!(
                mine.body["Items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["SpaceId"] == "Spaces-1"),
                "{}",
                mine.body
            );
            assert_eq!(
                mine.body["TotalResults"].as_u64().unwrap() as usize,
                mine.body["Items"].as_array().unwrap().len()
            );
        }
        let api_event = s.get("/api/events?regarding=Projects-2&take=1").await.body["Items"][0]
            ["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let hidden = as_user(
            &s,
            &key,
            Method::GET,
            &format!("/api/events/{api_event}"),
            None,
        )
        .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
        let filtered = as_user(
            &s,
            &key,
            Method::GET,
            "/api/events?projects=Projects-2",
            None,
        )
        .await;
        assert_eq!(filtered.body["TotalResults"], 0, "{}", filtered.body);
        assert_eq!(
            s.get(&format!("/api/events/{api_event}")).await.status,
            StatusCode::OK
        );
    })
    .await;
}
