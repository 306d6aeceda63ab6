//! The infrastructure pages over HTTP, on both databases: environments
//! created, reordered and deleted through the forms (and refused when the
//! name is taken or the environment still has targets), deployment targets
//! and workers listed with their health, health checks queued from the
//! page, worker pools and machine policies. Every refusal is checked to
//! have changed nothing, through the REST API.

use crate::common;

use common::{on_both, Server, ADMIN_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ENVIRONMENTS: &str = "/infrastructure/environments";

/// The environments' names in their order, as the API gives them.
async fn environment_names(s: &Server) -> Vec<String> {
    let (status, page) = s
        .api(Method::GET, "/api/environments?take=1000", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut items = page["Items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|e| e["SortOrder"].as_i64());
    items
        .iter()
        .map(|e| e["Name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn environment_id(s: &Server, name: &str) -> String {
    let (_, page) = s
        .api(Method::GET, &format!("/api/environments?name={name}"), None)
        .await;
    page["Items"][0]["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no environment {name}: {page}"))
        .to_owned()
}

/// A listening target on a port nothing listens on.
async fn target(s: &Server, name: &str, environment_ids: &[&str], roles: &[&str]) -> Value {
    s.create(
        "/api/machines",
        json!({
            "Name": name,
            "Roles": roles,
            "EnvironmentIds": environment_ids,
            "Endpoint": {
                "CommunicationStyle": "TentaclePassive",
                "Uri": "https://127.0.0.1:1/",
                "Thumbprint": "AB".repeat(32),
            },
        }),
    )
    .await
}

async fn task_count(s: &Server) -> i64 {
    let (_, page) = s.api(Method::GET, "/api/tasks?take=1", None).await;
    page["TotalResults"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn environments_are_created_and_reordered() {
    on_both("infra-environments", |s| async move {
        let b = s.sign_in().await;
        let overview = b.get("/infrastructure").await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
        assert!(
            overview
                .body
                .contains(r#"<span class="number">0</span> environments"#),
            "{}",
            overview.body
        );

        let page = b.get(ENVIRONMENTS).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for needle in [
            r#"<label for="environment-name">Name</label>"#,
            r#"id="environment-name" type="text" name="Name""#,
            r#"id="create-environment""#,
            r#"aria-current="page">Environments</a>"#,
        ] {
            assert!(page.body.contains(needle), "{needle} in\n{}", page.body);
        }

        for name in ["Development", "Production"] {
            let done = b
                .post(
                    ENVIRONMENTS,
                    &[("csrf", &b.csrf), ("Name", name), ("Description", "")],
                )
                .await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
            assert_eq!(done.location(), Some(ENVIRONMENTS));
        }
        assert_eq!(environment_names(&s).await, ["Development", "Production"]);

        let prod = environment_id(&s, "Production").await;
        let moved = b
            .post(
                &format!("{ENVIRONMENTS}/{prod}/move"),
                &[("csrf", &b.csrf), ("direction", "up")],
            )
            .await;
        assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
        assert_eq!(environment_names(&s).await, ["Production", "Development"]);

        // Already first: moving up again changes nothing.
        b.post(
            &format!("{ENVIRONMENTS}/{prod}/move"),
            &[("csrf", &b.csrf), ("direction", "up")],
        )
        .await;
        assert_eq!(environment_names(&s).await, ["Production", "Development"]);
        let down = b
            .post(
                &format!("{ENVIRONMENTS}/{prod}/move"),
                &[("csrf", &b.csrf), ("direction", "down")],
            )
            .await;
        assert_eq!(down.status, StatusCode::SEE_OTHER);
        assert_eq!(environment_names(&s).await, ["Development", "Production"]);

        // The page lists them in that order.
        let page = b.get(ENVIRONMENTS).await;
        let dev_at = page.body.find(">Development<").expect("Development listed");
        let prod_at = page.body.find(">Production<").expect("Production listed");
        assert!(dev_at < prod_at, "{}", page.body);

        // An unused environment is deleted.
        let deleted = b
            .post(
                &format!("{ENVIRONMENTS}/{prod}/delete"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
        assert_eq!(environment_names(&s).await, ["Development"]);
    })
    .await;
}

#[tokio::test]
async fn a_taken_or_empty_name_is_refused_and_nothing_is_created() {
    on_both("infra-env-names", |s| async move {
        s.environment("Staging").await;
        let b = s.sign_in().await;

        let taken = b
            .post(
                ENVIRONMENTS,
                &[
                    ("csrf", &b.csrf),
                    ("Name", "staging"),
                    ("Description", "again"),
                ],
            )
            .await;
        assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
        assert!(
            taken
                .body
                .contains(r#"<p class="field-error" id="environment-name-error">"#),
            "{}",
            taken.body
        );
        assert!(taken.body.contains("already exists"), "{}", taken.body);
        // What was typed is kept.
        assert!(taken.body.contains(r#"value="staging""#), "{}", taken.body);
        assert!(taken.body.contains(">again</textarea>"), "{}", taken.body);

        let empty = b
            .post(ENVIRONMENTS, &[("csrf", &b.csrf), ("Name", "  ")])
            .await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
        assert!(
            empty.body.contains(r#"id="environment-name-error""#)
                && empty.body.contains("Name is required"),
            "{}",
            empty.body
        );
        assert_eq!(environment_names(&s).await, ["Staging"]);
    })
    .await;
}

#[tokio::test]
async fn an_environment_is_changed_on_its_page() {
    on_both("infra-env-edit", |s| async move {
        s.environment("Dev").await;
        s.environment("Prod").await;
        let dev = environment_id(&s, "Dev").await;
        target(&s, "web01", &[&dev], &["web"]).await;
        let b = s.sign_in().await;
        let path = format!("{ENVIRONMENTS}/{dev}");

        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for needle in [
            r#"id="edit-environment-name" type="text" name="Name" value="Dev""#,
            r#"id="save-environment""#,
            r#"<td class="machine-name">web01</td>"#,
        ] {
            assert!(page.body.contains(needle), "{needle} in\n{}", page.body);
        }

        // A name another environment has: refused beside the field.
        let taken = b
            .post(
                &path,
                &[("csrf", &b.csrf), ("Name", "prod"), ("Description", "x")],
            )
            .await;
        assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
        assert!(
            taken.body.contains(r#"id="edit-environment-name-error""#),
            "{}",
            taken.body
        );
        assert_eq!(environment_names(&s).await, ["Dev", "Prod"]);

        let saved = b
            .post(
                &path,
                &[
                    ("csrf", &b.csrf),
                    ("Name", "Development"),
                    ("Description", "Where it starts"),
                    ("UseGuidedFailure", "true"),
                ],
            )
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let (_, env) = s
            .api(Method::GET, &format!("/api/environments/{dev}"), None)
            .await;
        assert_eq!(env["Name"], "Development", "{env}");
        assert_eq!(env["Description"], "Where it starts");
        assert_eq!(env["UseGuidedFailure"], true);
        // Its place in the order is kept.
        assert_eq!(environment_names(&s).await, ["Development", "Prod"]);
    })
    .await;
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    on_both("infra-csrf", |s| async move {
        s.environment("Dev").await;
        s.environment("Test").await;
        let dev = environment_id(&s, "Dev").await;
        target(&s, "web01", &[&dev], &["web"]).await;
        let b = s.sign_in().await;
        let tasks_before = task_count(&s).await;

        let posts: [(String, Vec<(&str, &str)>); 7] = [
            (ENVIRONMENTS.into(), vec![("Name", "Prod")]),
            (format!("{ENVIRONMENTS}/{dev}"), vec![("Name", "Renamed")]),
            (
                format!("{ENVIRONMENTS}/{dev}/move"),
                vec![("direction", "down")],
            ),
            (format!("{ENVIRONMENTS}/{dev}/delete"), vec![]),
            ("/infrastructure/targets/check-health".into(), vec![]),
            (
                "/infrastructure/worker-pools".into(),
                vec![("Name", "Builders")],
            ),
            (
                "/infrastructure/machine-policies/MachinePolicies-1".into(),
                vec![("Name", "Renamed"), ("HealthCheckInterval", "00:10:00")],
            ),
        ];
        for (path, form) in &posts {
            for csrf in [None, Some("forged")] {
                let mut fields = form.clone();
                if let Some(c) = csrf {
                    fields.push(("csrf", c));
                }
                let refused = b.post(path, &fields).await;
                assert_eq!(
                    refused.status,
                    StatusCode::FORBIDDEN,
                    "{path} with {csrf:?}: {}",
                    refused.body
                );
            }
        }
        assert_eq!(environment_names(&s).await, ["Dev", "Test"]);
        assert_eq!(task_count(&s).await, tasks_before);
        let (_, pools) = s.api(Method::GET, "/api/workerpools", None).await;
        assert_eq!(pools["TotalResults"], 1, "{pools}");
        let (_, policy) = s
            .api(Method::GET, "/api/machinepolicies/MachinePolicies-1", None)
            .await;
        assert_eq!(policy["Name"], "Default Machine Policy", "{policy}");
    })
    .await;
}

#[tokio::test]
async fn an_environment_with_targets_is_not_deleted() {
    on_both("infra-env-in-use", |s| async move {
        s.environment("Production").await;
        let prod = environment_id(&s, "Production").await;
        target(&s, "web01", &[&prod], &["web"]).await;
        let b = s.sign_in().await;

        let refused = b
            .post(
                &format!("{ENVIRONMENTS}/{prod}/delete"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(
            refused.body.contains(r#"<div class="alert" role="alert">"#)
                && refused.body.contains("has the deployment targets web01"),
            "{}",
            refused.body
        );
        assert_eq!(environment_names(&s).await, ["Production"]);
        // Its row shows the target it still has.
        let page = b.get(ENVIRONMENTS).await;
        assert!(
            page.body.contains(r#"<td class="count">1</td>"#),
            "{}",
            page.body
        );
    })
    .await;
}

#[tokio::test]
async fn names_are_escaped() {
    on_both("infra-escaping", |s| async move {
        let evil = "<script>alert(1)</script>";
        s.create(
            "/api/environments",
            json!({ "Name": evil, "Description": "<b>bold</b>" }),
        )
        .await;
        let env = s
            .api(Method::GET, "/api/environments?take=10", None)
            .await
            .1["Items"][0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        target(
            &s,
            "<img src=x onerror=alert(1)>",
            &[&env],
            &["<i>role</i>"],
        )
        .await;
        s.create("/api/workerpools", json!({ "Name": evil })).await;
        let b = s.sign_in().await;

        for path in [
            ENVIRONMENTS.to_owned(),
            format!("{ENVIRONMENTS}/{env}"),
            "/infrastructure/targets".into(),
            "/infrastructure/workers".into(),
            "/infrastructure/worker-pools".into(),
        ] {
            let page = b.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            for raw in [evil, "<b>bold</b>", "<img src=x", "<i>role</i>"] {
                assert!(!page.body.contains(raw), "{path} has {raw}:\n{}", page.body);
            }
            assert!(
                page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{path}: {}",
                page.body
            );
        }
        let targets = b.get("/infrastructure/targets").await;
        assert!(targets.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(targets.body.contains("&lt;i&gt;role&lt;/i&gt;"));
        // In the command the name is one quoted shell word.
        assert!(
            targets
                .body
                .contains("--environment '&lt;script&gt;alert(1)&lt;/script&gt;'"),
            "{}",
            targets.body
        );
        // A taken name typed back into the form is escaped too.
        let again = b
            .post(ENVIRONMENTS, &[("csrf", &b.csrf), ("Name", evil)])
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert!(!again.body.contains(evil), "{}", again.body);
    })
    .await;
}

#[tokio::test]
async fn targets_are_listed_and_health_checked() {
    on_both("infra-targets", |s| async move {
        s.environment("Test").await;
        s.environment("Production").await;
        let test = environment_id(&s, "Test").await;
        let prod = environment_id(&s, "Production").await;
        let web = target(&s, "web01", &[&test, &prod], &["web", "api"]).await;
        let web_id = web["Id"].as_str().unwrap().to_owned();
        let b = s.sign_in().await;

        let page = b.get("/infrastructure/targets").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let row_at = page
            .body
            .find(&format!(r#"data-id="{web_id}""#))
            .expect("a row for the target");
        let row = &page.body[row_at..];
        let row = &row[..row.find("</tr>").unwrap()];
        for needle in [
            r#"<span class="machine-name">web01</span>"#,
            r#"data-health="Unknown""#,
            "Test, Production",
            r#"<li class="chip">web</li><li class="chip">api</li>"#,
            "Listening",
            "https://127.0.0.1:1/",
            "Never",
        ] {
            assert!(row.contains(needle), "{needle} in\n{row}");
        }

        let overview = b.get("/infrastructure").await;
        for needle in [
            r#"<span class="number">1</span> deployment target</p>"#,
            r#"<span class="number">2</span> environments</p>"#,
            "<span>1 Unknown</span>",
        ] {
            assert!(
                overview.body.contains(needle),
                "{needle} in\n{}",
                overview.body
            );
        }

        // The commands name this server, the environment and a role, and
        // never a real API key.
        for needle in [
            &format!("cuttle agent register --server {}", s.url),
            "--api-key API-YOUR-API-KEY",
            "--environment Test --role web-server",
            "--listen 0.0.0.0:10933 --public-host",
            "--polling",
            "cuttle agent init",
            "cuttle agent run",
            r#"href="/configuration""#,
        ] {
            assert!(page.body.contains(needle), "{needle} in\n{}", page.body);
        }
        assert!(!page.body.contains(ADMIN_KEY));
        let chosen = b
            .get(&format!(
                "/infrastructure/targets?environment={prod}&role=db"
            ))
            .await;
        assert!(
            chosen.body.contains("--environment Production --role db"),
            "{}",
            chosen.body
        );

        // Check health: a Health task, and its page.
        let checked = b
            .post("/infrastructure/targets/check-health", &[("csrf", &b.csrf)])
            .await;
        assert_eq!(checked.status, StatusCode::SEE_OTHER, "{}", checked.body);
        let location = checked.location().unwrap().to_owned();
        let task_id = location.strip_prefix("/tasks/").expect("a task page");
        let task = s.task(task_id).await;
        assert_eq!(task["Name"], "Health", "{task}");
        assert_eq!(task["Arguments"]["MachineIds"], json!([web_id]), "{task}");
        assert_eq!(b.get(&location).await.status, StatusCode::OK);

        let one = b
            .post(
                &format!("/infrastructure/targets/{web_id}/check-health"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(one.status, StatusCode::SEE_OTHER, "{}", one.body);
        let one_id = one.location().unwrap().strip_prefix("/tasks/").unwrap();
        assert_eq!(
            s.task(one_id).await["Description"],
            "Check the health of web01"
        );

        // An unknown target: an error page, and no task.
        let before = task_count(&s).await;
        let unknown = b
            .post(
                "/infrastructure/targets/Machines-999/check-health",
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(task_count(&s).await, before);
    })
    .await;
}

#[tokio::test]
async fn workers_and_pools() {
    on_both("infra-workers", |s| async move {
        let b = s.sign_in().await;
        let empty = b.get("/infrastructure/workers").await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
        assert!(empty.body.contains("No workers yet"));
        assert!(
            empty.body.contains("--worker --pool 'Default Worker Pool'"),
            "{}",
            empty.body
        );

        let created = b
            .post(
                "/infrastructure/worker-pools",
                &[("csrf", &b.csrf), ("Name", "Builders"), ("Description", "")],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let (_, pools) = s.api(Method::GET, "/api/workerpools", None).await;
        assert_eq!(pools["TotalResults"], 2, "{pools}");
        let builders = pools["Items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Name"] == "Builders")
            .expect("the new pool")["Id"]
            .as_str()
            .unwrap()
            .to_owned();

        let taken = b
            .post(
                "/infrastructure/worker-pools",
                &[("csrf", &b.csrf), ("Name", "builders")],
            )
            .await;
        assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
        assert!(
            taken.body.contains(r#"id="pool-name-error""#),
            "{}",
            taken.body
        );
        let (_, pools) = s.api(Method::GET, "/api/workerpools", None).await;
        assert_eq!(pools["TotalResults"], 2);

        s.create(
            "/api/workers",
            json!({
                "Name": "build01",
                "WorkerPoolIds": [builders],
                "Endpoint": {
                    "CommunicationStyle": "TentacleActive",
                    "Uri": "poll://abcdefghij/",
                    "Thumbprint": "CD".repeat(32),
                },
            }),
        )
        .await;
        let page = b.get("/infrastructure/workers").await;
        for needle in [
            r#"<span class="machine-name">build01</span>"#,
            r#"<td class="pool-names">Builders</td>"#,
            "Polling",
            r#"data-health="Unknown""#,
        ] {
            assert!(page.body.contains(needle), "{needle} in\n{}", page.body);
        }
        let pools_page = b.get("/infrastructure/worker-pools").await;
        assert!(
            pools_page
                .body
                .contains(r#"<span class="tag default">default</span>"#),
            "{}",
            pools_page.body
        );
        assert!(pools_page.body.contains(r#"<td class="count">1</td>"#));

        // A pool with workers, or the default one, is not deleted.
        let refused = b
            .post(
                &format!("/infrastructure/worker-pools/{builders}/delete"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(
            refused.body.contains("has the workers build01"),
            "{}",
            refused.body
        );
        let default = b
            .post(
                "/infrastructure/worker-pools/WorkerPools-1/delete",
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(default.status, StatusCode::BAD_REQUEST, "{}", default.body);
        assert!(default.body.contains("is the default"), "{}", default.body);
        let (_, pools) = s.api(Method::GET, "/api/workerpools", None).await;
        assert_eq!(pools["TotalResults"], 2);
        // An empty one is.
        let spare = s
            .create("/api/workerpools", json!({ "Name": "Spare" }))
            .await;
        let deleted = b
            .post(
                &format!(
                    "/infrastructure/worker-pools/{}/delete",
                    spare["Id"].as_str().unwrap()
                ),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
        let (_, pools) = s.api(Method::GET, "/api/workerpools", None).await;
        assert_eq!(pools["TotalResults"], 2);

        let checked = b
            .post("/infrastructure/workers/check-health", &[("csrf", &b.csrf)])
            .await;
        assert_eq!(checked.status, StatusCode::SEE_OTHER, "{}", checked.body);
        let id = checked.location().unwrap().strip_prefix("/tasks/").unwrap();
        assert_eq!(s.task(id).await["Name"], "Health");
    })
    .await;
}

#[tokio::test]
async fn machine_policies_are_shown_and_changed() {
    on_both("infra-policies", |s| async move {
        let b = s.sign_in().await;
        let list = b.get("/infrastructure/machine-policies").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(
            list.body
                .contains(r#"href="/infrastructure/machine-policies/MachinePolicies-1">Default Machine Policy</a>"#),
            "{}",
            list.body
        );
        assert!(list.body.contains("1 hour"), "{}", list.body);

        let path = "/infrastructure/machine-policies/MachinePolicies-1";
        let detail = b.get(path).await;
        assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
        assert!(detail.body.contains(r#"id="policy-health-check-interval""#));
        assert!(detail.body.contains(r#"value="01:00:00""#));

        let form = |interval: &'static str, retries: &'static str| {
            vec![
                ("Name", "Default Machine Policy"),
                ("Description", "Checked often"),
                ("HealthCheckInterval", interval),
                ("HealthCheckType", "OnlyConnectivity"),
                ("MachineConnectivityBehavior", "ExpectedToBeOnline"),
                ("ConnectionConnectTimeout", "00:00:30"),
                ("ConnectionRetryCountLimit", retries),
                ("ConnectionRetryTimeLimit", "00:05:00"),
            ]
        };
        let mut bad = form("an hour", "5");
        bad.push(("csrf", &b.csrf));
        let refused = b.post(path, &bad).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(
            refused.body.contains(r#"id="policy-health-check-interval-error""#)
                && refused.body.contains("is not a duration"),
            "{}",
            refused.body
        );
        assert!(refused.body.contains(r#"value="an hour""#));
        let mut not_a_number = form("00:10:00", "many");
        not_a_number.push(("csrf", &b.csrf));
        let refused = b.post(path, &not_a_number).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.body.contains(r#"id="policy-retry-count-error""#));
        let (_, policy) = s
            .api(Method::GET, "/api/machinepolicies/MachinePolicies-1", None)
            .await;
        assert_eq!(
            policy["MachineHealthCheckPolicy"]["HealthCheckInterval"],
            "01:00:00"
        );
        assert_ne!(policy["Description"], "Checked often", "{policy}");

        let mut good = form("00:10:00", "3");
        good.push(("csrf", &b.csrf));
        let saved = b.post(path, &good).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        assert_eq!(saved.location(), Some(path));
        let (_, policy) = s
            .api(Method::GET, "/api/machinepolicies/MachinePolicies-1", None)
            .await;
        assert_eq!(
            policy["MachineHealthCheckPolicy"]["HealthCheckInterval"],
            "00:10:00",
            "{policy}"
        );
        assert_eq!(
            policy["MachineHealthCheckPolicy"]["HealthCheckType"],
            "OnlyConnectivity"
        );
        assert_eq!(policy["ConnectionRetryCountLimit"], 3);
        assert_eq!(policy["IsDefault"], true);
        let shown = b.get(path).await;
        assert!(shown.body.contains("10 minutes"), "{}", shown.body);
    })
    .await;
}
