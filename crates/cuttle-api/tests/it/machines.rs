//! Deployment targets, workers, worker pools and machine policies over HTTP,
//! on both databases: the defaults every space starts with, CRUD, list
//! filters, every kind of bad input (refused, and nothing changed), and links
//! that resolve.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn thumbprint(c: char) -> String {
    c.to_string().repeat(64)
}

fn listening(host: &str, thumb: &str) -> Value {
    json!({"CommunicationStyle": "TentaclePassive", "Uri": format!("https://{host}:10933/"), "Thumbprint": thumb})
}

async fn env(s: &Server, name: &str) -> String {
    let e = s.create("/api/environments", json!({"Name": name})).await;
    e["Id"].as_str().unwrap().to_owned()
}

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap().to_owned()
}

fn names(page: &Value) -> Vec<String> {
    page["Items"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|m| m["Name"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn total(s: &Server, path: &str) -> i64 {
    let r = s.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "{} {path}: {}", s.backend, r.body);
    r.body["TotalResults"].as_i64().unwrap()
}

/// Follows every link of a resource; each must answer 200.
async fn links_resolve(s: &Server, resource: &Value) {
    for (name, link) in resource["Links"].as_object().unwrap() {
        let link = link.as_str().unwrap();
        let r = s.get(link).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}: link {name} {link}: {}",
            s.backend,
            r.body
        );
    }
}

#[tokio::test]
async fn every_space_starts_with_a_default_pool_and_policy() {
    on_both("mach-defaults", |s| async move {
        let pools = s.get("/api/Spaces-1/workerpools").await.body;
        assert_eq!(pools["TotalResults"], 1, "{}: {pools}", s.backend);
        let pool = &pools["Items"][0];
        assert_eq!(pool["Name"], "Default Worker Pool");
        assert_eq!(pool["IsDefault"], true);
        assert_eq!(pool["WorkerPoolType"], "StaticWorkerPool");
        assert_eq!(pool["CanAddWorkers"], true);
        links_resolve(&s, pool).await;

        let policies = s.get("/api/Spaces-1/machinepolicies").await.body;
        assert_eq!(policies["TotalResults"], 1, "{}: {policies}", s.backend);
        let policy = &policies["Items"][0];
        assert_eq!(policy["Name"], "Default Machine Policy");
        assert_eq!(policy["IsDefault"], true);
        assert_eq!(
            policy["MachineHealthCheckPolicy"]["HealthCheckInterval"],
            "01:00:00"
        );
        assert_eq!(
            policy["MachineHealthCheckPolicy"]["HealthCheckType"],
            "RunScript"
        );
        assert_eq!(
            policy["MachineConnectivityPolicy"]["MachineConnectivityBehavior"],
            "ExpectedToBeOnline"
        );
        assert_eq!(policy["ConnectionConnectTimeout"], "00:01:00");
        assert_eq!(policy["PollingRequestQueueTimeout"], "00:02:00");
        links_resolve(&s, policy).await;

        // A new space gets its own.
        let space = s.create("/api/spaces", json!({"Name": "Second"})).await;
        let sid = id(&space);
        let pools = s.get(&format!("/api/{sid}/workerpools")).await.body;
        assert_eq!(names(&pools), ["Default Worker Pool"], "{}", s.backend);
        assert_eq!(pools["Items"][0]["SpaceId"], sid.as_str());
        let policies = s.get(&format!("/api/{sid}/machinepolicies")).await.body;
        assert_eq!(names(&policies), ["Default Machine Policy"]);
        assert_ne!(policies["Items"][0]["Id"], policy["Id"]);

        // Starting again (as every start does) adds nothing.
        cuttle_service::bootstrap::ensure_space_defaults(&s.inst.store)
            .await
            .unwrap();
        assert_eq!(total(&s, "/api/Spaces-1/workerpools").await, 1);
        assert_eq!(total(&s, &format!("/api/{sid}/machinepolicies")).await, 1);

        // The root document and the space home link to the new collections.
        let root = s.get("/api").await.body;
        let home = s.get("/api/Spaces-1").await.body;
        for area in ["Machines", "Workers", "WorkerPools", "MachinePolicies"] {
            assert!(root["Links"][area].is_string(), "root lacks {area}");
            let link = home["Links"][area].as_str().unwrap();
            assert_eq!(s.get(link).await.status, StatusCode::OK, "{link}");
        }
    })
    .await;
}

#[tokio::test]
async fn deployment_targets_crud() {
    on_both("mach-crud", |s| async move {
        let dev = env(&s, "Dev").await;
        let m = s
            .create(
                "/api/Spaces-1/machines",
                json!({"Name": " web01 ", "Roles": ["web", " api "], "EnvironmentIds": [dev],
                       "Endpoint": listening("web01", &thumbprint('a')),
                       "HealthStatus": "Healthy", "AgentVersion": "forged"}),
            )
            .await;
        let mid = id(&m);
        assert!(mid.starts_with("Machines-"), "{m}");
        assert_eq!(m["Name"], "web01");
        assert_eq!(m["SpaceId"], "Spaces-1");
        assert_eq!(m["Roles"], json!(["web", "api"]));
        assert_eq!(m["IsDisabled"], false);
        assert_eq!(m["Endpoint"]["CommunicationStyle"], "TentaclePassive");
        assert_eq!(m["Endpoint"]["Thumbprint"], thumbprint('A'));
        assert_eq!(m["Thumbprint"], thumbprint('A'));
        assert_eq!(m["Uri"], "https://web01:10933/");
        // Health is the server's to say, not the request's.
        assert_eq!(m["HealthStatus"], "Unknown");
        assert_eq!(m["AgentVersion"], "");
        assert!(m["StatusSummary"].as_str().unwrap().contains("not been health-checked"));
        let default_policy = s.get("/api/machinepolicies").await.body["Items"][0]["Id"].clone();
        assert_eq!(m["MachinePolicyId"], default_policy);
        links_resolve(&s, &m).await;

        let got = s.get(&format!("/api/Spaces-1/machines/{mid}")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body["Name"], "web01");
        // The unscoped route reads the default space.
        assert_eq!(s.get(&format!("/api/machines/{mid}")).await.body["Id"], mid.as_str());

        // A polling agent.
        let p = s
            .create(
                "/api/machines",
                json!({"Name": "db01", "EnvironmentIds": [dev], "Roles": ["db"],
                       "Endpoint": {"communicationStyle": "TentacleActive", "uri": "poll://abcdefghij", "thumbprint": thumbprint('b')}}),
            )
            .await;
        assert_eq!(p["Endpoint"]["Uri"], "poll://abcdefghij/");
        assert_eq!(p["Endpoint"]["CommunicationStyle"], "TentacleActive");

        // Modify: new roles and disabled; health stays the server's.
        let mut body = got.body.clone();
        body["Roles"] = json!(["web"]);
        body["IsDisabled"] = json!(true);
        body["HealthStatus"] = json!("Healthy");
        let r = s.send(Method::PUT, &format!("/api/Spaces-1/machines/{mid}"), &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        assert_eq!(r.body["Roles"], json!(["web"]));
        assert_eq!(r.body["IsDisabled"], true);
        assert_eq!(r.body["HealthStatus"], "Unknown");
        let again = s.get(&format!("/api/machines/{mid}")).await.body;
        assert_eq!(again["IsDisabled"], true);

        // Deployment targets for the engine: enabled machines in the environment.
        let targets = s.inst.store.deployment_targets("Spaces-1", &dev).await.unwrap();
        let target_names: Vec<&str> = targets.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(target_names, ["db01"], "{}", s.backend);

        // Delete.
        let r = s.call_with(Method::DELETE, &format!("/api/machines/{mid}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert_eq!(s.get(&format!("/api/machines/{mid}")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(total(&s, "/api/machines").await, 1);
        let r = s.call_with(Method::DELETE, &format!("/api/machines/{mid}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn machine_lists_filter() {
    on_both("mach-filters", |s| async move {
        let dev = env(&s, "Dev").await;
        let test = env(&s, "Test").await;
        for (name, roles, envs, disabled, t) in [
            ("web-dev", vec!["web"], vec![&dev], false, 'a'),
            ("web-test", vec!["web"], vec![&test], false, 'b'),
            ("db-both", vec!["db"], vec![&dev, &test], false, 'c'),
            ("old-web", vec!["web", "legacy"], vec![&dev], true, 'd'),
        ] {
            s.create(
                "/api/machines",
                json!({"Name": name, "Roles": roles, "EnvironmentIds": envs, "IsDisabled": disabled,
                       "Endpoint": listening(name, &thumbprint(t))}),
            )
            .await;
        }
        let list = |q: String| {
            let s = &s;
            async move {
                let r = s.get(&format!("/api/Spaces-1/machines?{q}")).await;
                assert_eq!(r.status, StatusCode::OK, "{}: {q}: {}", s.backend, r.body);
                names(&r.body)
            }
        };
        assert_eq!(
            list("roles=web".into()).await,
            ["web-dev", "web-test", "old-web"]
        );
        assert_eq!(list("roles=db,legacy".into()).await, ["db-both", "old-web"]);
        assert_eq!(
            list(format!("environmentIds={test}")).await,
            ["web-test", "db-both"]
        );
        assert_eq!(
            list(format!("environmentIds={dev}&roles=web&isDisabled=false")).await,
            ["web-dev"]
        );
        assert_eq!(
            list("partialName=WEB".into()).await,
            ["web-dev", "web-test", "old-web"]
        );
        assert_eq!(list("name=db-both".into()).await, ["db-both"]);
        assert_eq!(list("isDisabled=true".into()).await, ["old-web"]);
        assert_eq!(list("healthStatuses=Unknown".into()).await.len(), 4);
        assert!(list("healthStatuses=Healthy,Unhealthy".into())
            .await
            .is_empty());
        assert_eq!(list("skip=1&take=2".into()).await, ["web-test", "db-both"]);
        let paged = s.get("/api/machines?skip=1&take=2").await.body;
        assert_eq!(paged["TotalResults"], 4);
        assert_eq!(paged["ItemType"], "DeploymentTarget");

        let r = s.get("/api/machines?healthStatuses=Sick").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("Sick"), "{}", r.error_text());

        // An environment's machines.
        let in_test = s
            .get(&format!("/api/Spaces-1/environments/{test}/machines"))
            .await;
        assert_eq!(in_test.status, StatusCode::OK, "{}", in_test.body);
        assert_eq!(names(&in_test.body), ["web-test", "db-both"]);
        let e = s.get(&format!("/api/environments/{test}")).await.body;
        links_resolve(&s, &e).await;
        let r = s.get("/api/environments/Environments-999/machines").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // An environment with machines cannot be deleted from under them.
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/environments/{test}"),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.error_text().contains("web-test"), "{}", r.error_text());
        assert_eq!(
            s.get(&format!("/api/environments/{test}")).await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn bad_machines_are_refused_and_change_nothing() {
    on_both("mach-bad", |s| async move {
        let dev = env(&s, "Dev").await;
        let good = s
            .create(
                "/api/machines",
                json!({"Name": "web01", "Roles": ["web"], "EnvironmentIds": [dev],
                       "Endpoint": listening("web01", &thumbprint('a'))}),
            )
            .await;
        let ok = |changes: Value| {
            let mut m = json!({"Name": "web02", "Roles": ["web"], "EnvironmentIds": [dev],
                               "Endpoint": listening("web02", &thumbprint('b'))});
            for (k, v) in changes.as_object().unwrap() {
                m[k] = v.clone();
            }
            m
        };
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (ok(json!({"EnvironmentIds": ["Environments-999"]})), StatusCode::BAD_REQUEST, "Environments-999"),
            (ok(json!({"EnvironmentIds": []})), StatusCode::BAD_REQUEST, "at least one environment"),
            (ok(json!({"Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://web02:10933/"}})),
             StatusCode::BAD_REQUEST, "Thumbprint is required"),
            (ok(json!({"Endpoint": listening("web02", &"a".repeat(40))})), StatusCode::BAD_REQUEST, "64 hex"),
            (ok(json!({"Endpoint": listening("web02", &thumbprint('z'))})), StatusCode::BAD_REQUEST, "64 hex"),
            (ok(json!({"Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "poll://abc/", "Thumbprint": thumbprint('b')}})),
             StatusCode::BAD_REQUEST, "https://host:10933/"),
            (ok(json!({"Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": "https://web02:10933/", "Thumbprint": thumbprint('b')}})),
             StatusCode::BAD_REQUEST, "poll://"),
            (ok(json!({"Endpoint": {"CommunicationStyle": "Ssh", "Uri": "ssh://web02/", "Thumbprint": thumbprint('b')}})),
             StatusCode::BAD_REQUEST, "Ssh"),
            (ok(json!({"Endpoint": {"Uri": "https://web02:10933/", "Thumbprint": thumbprint('b')}})),
             StatusCode::BAD_REQUEST, "CommunicationStyle is required"),
            (ok(json!({"Roles": ["web", " "]})), StatusCode::BAD_REQUEST, "role cannot be empty"),
            (ok(json!({"MachinePolicyId": "MachinePolicies-999"})), StatusCode::BAD_REQUEST, "MachinePolicies-999"),
            (ok(json!({"Name": ""})), StatusCode::BAD_REQUEST, "Name is required"),
            (ok(json!({"Name": "WEB01"})), StatusCode::CONFLICT, "already exists"),
        ];
        for (body, status, text) in &cases {
            let r = s.post("/api/machines", body.clone()).await;
            assert_eq!(r.status, *status, "{}: {body}: {}", s.backend, r.body);
            assert!(r.error_text().contains(text), "{}: wanted '{text}' in {}", s.backend, r.error_text());
        }
        assert_eq!(total(&s, "/api/machines").await, 1, "{}: a bad request added a machine", s.backend);

        // The same through PUT leaves the machine as it was.
        let mid = id(&good);
        let before = s.get(&format!("/api/machines/{mid}")).await.body;
        let other = s
            .create(
                "/api/machines",
                json!({"Name": "web03", "EnvironmentIds": [dev], "Endpoint": listening("web03", &thumbprint('c'))}),
            )
            .await;
        for (body, status, text) in cases {
            let mut body = body;
            if status == StatusCode::CONFLICT {
                body["Name"] = other["Name"].clone();
            }
            let r = s.send(Method::PUT, &format!("/api/machines/{mid}"), &body).await;
            assert_eq!(r.status, status, "{}: PUT {body}: {}", s.backend, r.body);
            assert!(r.error_text().contains(text), "{}", r.error_text());
        }
        assert_eq!(s.get(&format!("/api/machines/{mid}")).await.body, before);

        let r = s.post("/api/machines", json!("not an object")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = s.get("/api/machines/Machines-999").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // A machine of one space is not found through another.
        let space = s.create("/api/spaces", json!({"Name": "Other"})).await;
        let r = s.get(&format!("/api/{}/machines/{mid}", id(&space))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn workers_and_pools() {
    on_both("mach-workers", |s| async move {
        let default_pool = s.get("/api/workerpools").await.body["Items"][0].clone();
        let default_id = id(&default_pool);

        // A worker without a pool joins the default one.
        let w = s
            .create("/api/Spaces-1/workers", json!({"Name": "w1", "Endpoint": listening("w1", &thumbprint('a'))}))
            .await;
        let wid = id(&w);
        assert!(wid.starts_with("Workers-"), "{w}");
        assert_eq!(w["WorkerPoolIds"], json!([default_id]));
        assert_eq!(w["HealthStatus"], "Unknown");
        assert!(w.get("EnvironmentIds").is_none(), "{w}");
        links_resolve(&s, &w).await;

        let linux = s
            .create("/api/workerpools", json!({"Name": "Linux", "Description": "Linux boxes"}))
            .await;
        let linux_id = id(&linux);
        assert_eq!(linux["IsDefault"], false);
        assert_eq!(linux["WorkerPoolType"], "StaticWorkerPool");
        assert_eq!(linux["SortOrder"], 2);
        links_resolve(&s, &linux).await;
        let w2 = s
            .create(
                "/api/workers",
                json!({"Name": "w2", "WorkerPoolIds": [linux_id.clone()],
                       "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": "poll://w2poll/", "Thumbprint": thumbprint('b')}}),
            )
            .await;
        let in_linux = s.get(&format!("/api/Spaces-1/workerpools/{linux_id}/workers")).await;
        assert_eq!(in_linux.status, StatusCode::OK);
        assert_eq!(names(&in_linux.body), ["w2"]);
        assert_eq!(names(&s.get(&format!("/api/workers?workerPoolIds={linux_id}")).await.body), ["w2"]);
        assert_eq!(names(&s.get("/api/workers?partialName=W").await.body), ["w1", "w2"]);

        // Bad workers.
        for (body, text) in [
            (json!({"Name": "w3", "WorkerPoolIds": ["WorkerPools-999"], "Endpoint": listening("w3", &thumbprint('c'))}), "WorkerPools-999"),
            (json!({"Name": "w3", "Endpoint": listening("w3", "")}), "Thumbprint is required"),
            (json!({"Name": "w3", "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "ftp://w3/", "Thumbprint": thumbprint('c')}}), "not valid for TentaclePassive"),
        ] {
            let r = s.post("/api/workers", body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            assert!(r.error_text().contains(text), "{}", r.error_text());
        }
        let r = s.post("/api/workers", json!({"Name": "W1", "Endpoint": listening("w1", &thumbprint('c'))})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(total(&s, "/api/workers").await, 2);

        // A pool with workers, or the default pool, cannot be deleted.
        let r = s.call_with(Method::DELETE, &format!("/api/workerpools/{linux_id}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.error_text().contains("w2"), "{}", r.error_text());
        let r = s.call_with(Method::DELETE, &format!("/api/workerpools/{default_id}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("default"), "{}", r.error_text());
        assert_eq!(total(&s, "/api/workerpools").await, 2);

        // Making Linux the default unsets the old default.
        let mut body = linux.clone();
        body["IsDefault"] = json!(true);
        let r = s.send(Method::PUT, &format!("/api/workerpools/{linux_id}"), &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let pools = s.get("/api/workerpools").await.body;
        let defaults: Vec<&str> = pools["Items"].as_array().unwrap().iter()
            .filter(|p| p["IsDefault"] == true).map(|p| p["Id"].as_str().unwrap()).collect();
        assert_eq!(defaults, [linux_id.as_str()], "{}", s.backend);
        // Unsetting the default directly is refused.
        body["IsDefault"] = json!(false);
        let r = s.send(Method::PUT, &format!("/api/workerpools/{linux_id}"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(s.get(&format!("/api/workerpools/{linux_id}")).await.body["IsDefault"], true);
        let r = s.post("/api/workerpools", json!({"Name": "Dyn", "WorkerPoolType": "DynamicWorkerPool"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("DynamicWorkerPool"));

        // Move w1 to Linux, then the old default pool can go.
        let mut w1 = s.get(&format!("/api/workers/{wid}")).await.body;
        w1["WorkerPoolIds"] = json!([linux_id]);
        let r = s.send(Method::PUT, &format!("/api/workers/{wid}"), &w1).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = s.call_with(Method::DELETE, &format!("/api/workerpools/{default_id}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

        let r = s.call_with(Method::DELETE, &format!("/api/workers/{}", id(&w2)), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(names(&s.get("/api/workers").await.body), ["w1"]);
    })
    .await;
}

#[tokio::test]
async fn machine_policies() {
    on_both("mach-policies", |s| async move {
        let default = s.get("/api/machinepolicies").await.body["Items"][0].clone();
        let default_id = id(&default);
        let p = s
            .create(
                "/api/Spaces-1/machinepolicies",
                json!({"Name": "Flaky", "MachineHealthCheckPolicy": {"HealthCheckInterval": "1.00:00:00", "HealthCheckType": "OnlyConnectivity"},
                       "MachineConnectivityPolicy": {"MachineConnectivityBehavior": "MayBeOfflineAndCanBeSkipped"}}),
            )
            .await;
        let pid = id(&p);
        assert!(pid.starts_with("MachinePolicies-"), "{p}");
        assert_eq!(p["IsDefault"], false);
        assert_eq!(p["MachineHealthCheckPolicy"]["HealthCheckType"], "OnlyConnectivity");
        assert_eq!(p["ConnectionConnectTimeout"], "00:01:00");
        links_resolve(&s, &p).await;

        for (body, text) in [
            (json!({"Name": "Bad", "ConnectionConnectTimeout": "a minute"}), "ConnectionConnectTimeout"),
            (json!({"Name": "Bad", "MachineHealthCheckPolicy": {"HealthCheckInterval": "25:00:00"}}), "HealthCheckInterval"),
            (json!({"Name": "Bad", "MachineHealthCheckPolicy": {"HealthCheckType": "Ping"}}), "Ping"),
            (json!({"Name": "flaky"}), "already exists"),
        ] {
            let r = s.post("/api/machinepolicies", body.clone()).await;
            assert!(r.status.is_client_error(), "{body}: {}", r.body);
            assert!(r.error_text().contains(text), "{}", r.error_text());
        }
        assert_eq!(total(&s, "/api/machinepolicies").await, 2);

        // A machine on the policy keeps it from being deleted.
        let dev = env(&s, "Dev").await;
        let m = s
            .create(
                "/api/machines",
                json!({"Name": "m", "EnvironmentIds": [dev], "MachinePolicyId": pid, "Endpoint": listening("m", &thumbprint('e'))}),
            )
            .await;
        assert_eq!(m["MachinePolicyId"], pid.as_str());
        let r = s.call_with(Method::DELETE, &format!("/api/machinepolicies/{pid}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("used by m"), "{}", r.error_text());
        let r = s.call_with(Method::DELETE, &format!("/api/machinepolicies/{default_id}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(total(&s, "/api/machinepolicies").await, 2);

        // Modify, making it the default; the old default is unset.
        let mut body = p.clone();
        body["IsDefault"] = json!(true);
        body["PollingRequestQueueTimeout"] = json!("00:05:00");
        let r = s.send(Method::PUT, &format!("/api/machinepolicies/{pid}"), &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["PollingRequestQueueTimeout"], "00:05:00");
        assert_eq!(s.get(&format!("/api/machinepolicies/{default_id}")).await.body["IsDefault"], false);
        // A bad modification changes nothing.
        body["ConnectionConnectTimeout"] = json!("-00:01:00");
        let r = s.send(Method::PUT, &format!("/api/machinepolicies/{pid}"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(s.get(&format!("/api/machinepolicies/{pid}")).await.body["ConnectionConnectTimeout"], "00:01:00");

        // New machines now get the new default; the old policy can go.
        let m2 = s
            .create("/api/machines", json!({"Name": "m2", "EnvironmentIds": [dev], "Endpoint": listening("m2", &thumbprint('f'))}))
            .await;
        assert_eq!(m2["MachinePolicyId"], pid.as_str());
        let r = s.call_with(Method::DELETE, &format!("/api/machinepolicies/{default_id}"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert_eq!(total(&s, "/api/machinepolicies").await, 1);
    })
    .await;
}

#[tokio::test]
async fn health_tasks_are_queued_and_record_an_unreachable_agent() {
    on_both("mach-health", |s| async move {
        let server = s.get("/api/agents/server-thumbprint").await;
        assert_eq!(server.status, StatusCode::OK, "{}", server.body);
        assert_eq!(server.body["Thumbprint"].as_str().unwrap().len(), 64);

        let r = s.post("/api/tasks", json!({"Name": "Deploy"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let r = s
            .post(
                "/api/tasks",
                json!({"Name": "Health", "Arguments": {"MachineIds": ["Machines-999"]}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dev = env(&s, "Dev").await;
        let m = s
            .create(
                "/api/machines",
                json!({"Name": "gone", "EnvironmentIds": [dev], "Roles": ["web"],
                       "Endpoint": {"CommunicationStyle": "TentaclePassive",
                                    "Uri": format!("https://127.0.0.1:{port}/"),
                                    "Thumbprint": thumbprint('A')}}),
            )
            .await;
        let task = s
            .create(
                "/api/tasks",
                json!({"Name": "Health", "Arguments": {"MachineIds": [id(&m)]}}),
            )
            .await;
        let done = s.wait_for_task(task["Id"].as_str().unwrap()).await;
        assert_eq!(done["State"], "Failed", "{}: {done}", s.backend);
        let after = s.get(&format!("/api/machines/{}", id(&m))).await.body;
        assert_eq!(after["HealthStatus"], "Unavailable", "{after}");
        let summary = after["StatusSummary"].as_str().unwrap();
        assert!(summary.contains("could not connect"), "{summary}");
    })
    .await;
}
