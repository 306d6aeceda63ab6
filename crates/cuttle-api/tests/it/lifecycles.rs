//! Lifecycles end to end: phases deployed in order, automatic and optional
//! phases, minimum environments, the progression resource, and channels with
//! their own lifecycle and version rules. Scripts are real Bash.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Creates the environments (in this order) and returns their ids.
async fn environments(s: &Server, names: &[&str]) -> Vec<String> {
    let mut ids = vec![];
    for n in names {
        let e = s.create("/api/environments", json!({"Name": n})).await;
        ids.push(e["Id"].as_str().unwrap().to_owned());
    }
    ids
}

fn phase(name: &str, automatic: &[&String], manual: &[&String]) -> Value {
    json!({"Name": name, "AutomaticDeploymentTargets": automatic, "OptionalDeploymentTargets": manual})
}

async fn lifecycle(s: &Server, name: &str, phases: Vec<Value>) -> String {
    let lc = s
        .create("/api/lifecycles", json!({"Name": name, "Phases": phases}))
        .await;
    lc["Id"].as_str().unwrap().to_owned()
}

/// A project on the lifecycle whose one step echoes.
async fn project(s: &Server, name: &str, lifecycle_id: &str) -> String {
    let p = s
        .create(
            "/api/projects",
            json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": lifecycle_id}),
        )
        .await;
    let id = p["Id"].as_str().unwrap().to_owned();
    let process = json!({"Version": 0, "Steps": [{"Name": "Say ok", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": "echo ok", "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    let r = s
        .send(
            Method::PUT,
            &format!("/api/projects/{id}/deploymentprocesses"),
            &process,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    id
}

async fn release(s: &Server, project_id: &str, version: &str) -> String {
    let r = s
        .create(
            "/api/releases",
            json!({"ProjectId": project_id, "Version": version}),
        )
        .await;
    r["Id"].as_str().unwrap().to_owned()
}

async fn deploy(s: &Server, release_id: &str, env_id: &str) -> common::Reply {
    s.post(
        "/api/deployments",
        json!({"ReleaseId": release_id, "EnvironmentId": env_id}),
    )
    .await
}

/// Deploys and waits for success.
async fn deploy_ok(s: &Server, release_id: &str, env_id: &str) {
    let r = deploy(s, release_id, env_id).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}: {}", s.backend, r.body);
    let t = s.wait_for_task(r.body["TaskId"].as_str().unwrap()).await;
    assert_eq!(t["State"], "Success", "{}: {t}", s.backend);
}

async fn deployments_of(s: &Server, release_id: &str) -> Vec<Value> {
    s.get(&format!("/api/releases/{release_id}/deployments?take=100"))
        .await
        .body["Items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the release has a deployment to the environment, and for its
/// task to finish; returns the deployment.
async fn wait_for_deployment(s: &Server, release_id: &str, env_id: &str) -> Value {
    for _ in 0..500 {
        if let Some(d) = deployments_of(s, release_id)
            .await
            .into_iter()
            .find(|d| d["EnvironmentId"] == env_id)
        {
            s.wait_for_task(d["TaskId"].as_str().unwrap()).await;
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{}: no deployment of {release_id} to {env_id} appeared",
        s.backend
    );
}

async fn progression(s: &Server, release_id: &str) -> Value {
    let r = s
        .get(&format!("/api/Spaces-1/releases/{release_id}/progression"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test]
async fn phases_are_deployed_in_order() {
    on_both("lc-order", |s| async move {
        let e = environments(&s, &["Dev", "Test", "Production", "Sandbox"]).await;
        let (dev, test, prod, sandbox) = (&e[0], &e[1], &e[2], &e[3]);
        let lc = lifecycle(
            &s,
            "Standard",
            vec![
                phase("Dev", &[], &[dev]),
                phase("Test", &[], &[test]),
                phase("Production", &[], &[prod]),
            ],
        )
        .await;
        let p = project(&s, "Ordered", &lc).await;
        let r = release(&s, &p, "1.0.0").await;

        let refused = deploy(&s, &r, prod).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.error_text().contains("Release 1.0.0 cannot be deployed to Production yet: the phase 'Dev' must be complete first (deploy to Dev)"),
            "{}",
            refused.error_text()
        );
        assert_eq!(deploy(&s, &r, test).await.status, StatusCode::BAD_REQUEST);
        let outside = deploy(&s, &r, sandbox).await;
        assert_eq!(outside.status, StatusCode::BAD_REQUEST);
        assert!(
            outside.error_text().contains("does not include the environment 'Sandbox'"),
            "{}",
            outside.error_text()
        );
        // Nothing was queued by the refusals.
        assert!(deployments_of(&s, &r).await.is_empty());

        deploy_ok(&s, &r, dev).await;
        // Now Test, but still not Production; the executions API agrees.
        let by_name = s
            .post(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Ordered", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Production"]}),
            )
            .await;
        assert_eq!(by_name.status, StatusCode::BAD_REQUEST);
        assert!(
            by_name.error_text().contains("the phase 'Test' must be complete first (deploy to Test)"),
            "{}",
            by_name.error_text()
        );

        let prog = progression(&s, &r).await;
        let progress: Vec<&str> = prog["Phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Progress"].as_str().unwrap())
            .collect();
        assert_eq!(progress, ["Complete", "Current", "Pending"], "{prog}");
        assert_eq!(prog["NextDeployments"], json!([test]));
        assert_eq!(prog["NextDeploymentsMinimumRequired"], 1);
        assert_eq!(prog["Phases"][0]["Name"], "Dev");
        assert_eq!(prog["Phases"][0]["OptionalDeploymentTargets"], json!([dev]));
        assert_eq!(prog["Phases"][0]["Blocked"], false);
        assert_eq!(prog["Phases"][0]["IsOptionalPhase"], false);
        let done = &prog["Phases"][0]["Deployments"][0];
        assert_eq!(done["Deployment"]["EnvironmentId"], json!(dev));
        assert_eq!(done["Task"]["State"], "Success");
        assert!(prog["Phases"][1]["Deployments"].as_array().unwrap().is_empty());
        // The release links to its progression, and the link resolves.
        let rel = s.get(&format!("/api/releases/{r}")).await.body;
        let link = rel["Links"]["Progression"].as_str().unwrap();
        assert_eq!(s.get(link).await.status, StatusCode::OK);
        assert_eq!(
            s.get(&format!("/api/releases/{r}/progression")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            s.get("/api/releases/Releases-999/progression").await.status,
            StatusCode::NOT_FOUND
        );

        deploy_ok(&s, &r, test).await;
        deploy_ok(&s, &r, prod).await;
        // Going back to an earlier environment is always allowed.
        deploy_ok(&s, &r, dev).await;
        let prog = progression(&s, &r).await;
        assert!(prog["Phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["Progress"] == "Complete"));
        assert_eq!(prog["NextDeployments"], json!([]));
        assert_eq!(prog["Phases"][0]["Deployments"].as_array().unwrap().len(), 2);
        // Each release progresses on its own.
        let r2 = release(&s, &p, "1.0.1").await;
        assert_eq!(deploy(&s, &r2, prod).await.status, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn a_failed_deployment_does_not_complete_a_phase() {
    on_both("lc-failed", |s| async move {
        let e = environments(&s, &["Dev", "Test"]).await;
        let lc = lifecycle(
            &s,
            "Two",
            vec![phase("Dev", &[], &[&e[0]]), phase("Test", &[], &[&e[1]])],
        )
        .await;
        let p = project(&s, "Flaky", &lc).await;
        let process = json!({"Version": 1, "Steps": [{"Name": "Fail", "Actions": [{"ActionType": "Octopus.Script",
            "Properties": {"Octopus.Action.Script.ScriptBody": "exit 3", "Octopus.Action.Script.Syntax": "Bash"}}]}]});
        let put = s
            .send(
                Method::PUT,
                &format!("/api/projects/{p}/deploymentprocesses"),
                &process,
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        let r = release(&s, &p, "1.0.0").await;
        let d = deploy(&s, &r, &e[0]).await;
        let t = s.wait_for_task(d.body["TaskId"].as_str().unwrap()).await;
        assert_eq!(t["State"], "Failed");
        let refused = deploy(&s, &r, &e[1]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.error_text().contains("the phase 'Dev' must be complete first"),
            "{}",
            refused.error_text()
        );
    })
    .await;
}

#[tokio::test]
async fn automatic_phases_deploy_by_themselves() {
    on_both("lc-auto", |s| async move {
        let e = environments(&s, &["Dev", "Test", "Production"]).await;
        let (dev, test, prod) = (&e[0], &e[1], &e[2]);
        let lc = lifecycle(
            &s,
            "Automatic",
            vec![
                phase("Dev", &[dev], &[]),
                phase("Test", &[test], &[]),
                phase("Production", &[], &[prod]),
            ],
        )
        .await;
        let p = project(&s, "Auto", &lc).await;
        // Creating the release deploys it to Dev; Dev's success sends it to Test.
        let r = release(&s, &p, "1.0.0").await;
        let d = wait_for_deployment(&s, &r, dev).await;
        assert_eq!(d["DeployedBy"], "admin");
        assert!(
            d["Comments"]
                .as_str()
                .unwrap_or("")
                .contains("Deployed automatically"),
            "{d}"
        );
        let t = wait_for_deployment(&s, &r, test).await;
        let task = s
            .get(&format!("/api/tasks/{}", t["TaskId"].as_str().unwrap()))
            .await
            .body;
        assert_eq!(task["State"], "Success", "{task}");
        // Production is manual: nothing more happens by itself.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = deployments_of(&s, &r).await;
        assert_eq!(all.len(), 2, "{all:?}");
        let prog = progression(&s, &r).await;
        assert_eq!(
            prog["Phases"][0]["AutomaticDeploymentTargets"],
            json!([dev])
        );
        assert_eq!(prog["Phases"][1]["Progress"], "Complete");
        assert_eq!(prog["Phases"][2]["Progress"], "Current");
        deploy_ok(&s, &r, prod).await;
        // A manual redeploy to Dev does not queue Test again.
        deploy_ok(&s, &r, dev).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(deployments_of(&s, &r).await.len(), 4);
    })
    .await;
}

#[tokio::test]
async fn optional_phases_and_minimum_environments() {
    on_both("lc-optional", |s| async move {
        let e = environments(&s, &["Dev", "QA1", "QA2", "Production"]).await;
        let (dev, qa1, qa2, prod) = (&e[0], &e[1], &e[2], &e[3]);
        let mut dev_phase = phase("Dev", &[], &[dev]);
        dev_phase["IsOptionalPhase"] = json!(true);
        let mut testing = phase("Testing", &[], &[qa1, qa2]);
        testing["MinimumEnvironmentsBeforePromotion"] = json!(1);
        let lc = lifecycle(
            &s,
            "Flexible",
            vec![dev_phase, testing, phase("Production", &[], &[prod])],
        )
        .await;
        let p = project(&s, "Flex", &lc).await;
        let r = release(&s, &p, "2.0.0").await;

        let refused = deploy(&s, &r, prod).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.error_text().contains(
                "the phase 'Testing' must be complete first (deploy to 1 more of QA1, QA2)"
            ),
            "{}",
            refused.error_text()
        );
        // The optional Dev phase is skipped.
        deploy_ok(&s, &r, qa2).await;
        let prog = progression(&s, &r).await;
        assert_eq!(prog["Phases"][0]["IsOptionalPhase"], true);
        assert_eq!(prog["Phases"][0]["Progress"], "Current");
        assert_eq!(prog["Phases"][1]["Progress"], "Complete");
        assert_eq!(prog["Phases"][1]["MinimumEnvironmentsBeforePromotion"], 1);
        assert_eq!(prog["Phases"][2]["Progress"], "Current");
        assert_eq!(prog["NextDeployments"], json!([dev, prod]));
        deploy_ok(&s, &r, prod).await;
        // The rest of a complete phase, and the skipped phase, stay open.
        deploy_ok(&s, &r, qa1).await;
        deploy_ok(&s, &r, dev).await;
    })
    .await;
}

#[tokio::test]
async fn the_default_lifecycle_follows_environment_order() {
    on_both("lc-default", |s| async move {
        let e = environments(&s, &["Dev", "Test"]).await;
        let p = project(&s, "Plain", "Lifecycles-1").await;
        let r = release(&s, &p, "0.1.0").await;
        let refused = deploy(&s, &r, &e[1]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused
                .error_text()
                .contains("the phase 'Dev' must be complete first"),
            "{}",
            refused.error_text()
        );
        let prog = progression(&s, &r).await;
        let names: Vec<&str> = prog["Phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Dev", "Test"]);
        deploy_ok(&s, &r, &e[0]).await;
        deploy_ok(&s, &r, &e[1]).await;
    })
    .await;
}

#[tokio::test]
async fn channels_can_have_their_own_lifecycle() {
    on_both("lc-channel", |s| async move {
        let e = environments(&s, &["Dev", "Production"]).await;
        let (dev, prod) = (&e[0], &e[1]);
        let standard = lifecycle(
            &s,
            "Standard",
            vec![phase("Dev", &[], &[dev]), phase("Production", &[], &[prod])],
        )
        .await;
        let hotfix_lc = lifecycle(&s, "Hotfix", vec![phase("Production", &[], &[prod])]).await;
        let p = project(&s, "Shop", &standard).await;
        let hotfix = s
            .create(
                "/api/channels",
                json!({"ProjectId": p, "Name": "Hotfix", "LifecycleId": hotfix_lc}),
            )
            .await;
        let hotfix_id = hotfix["Id"].as_str().unwrap();
        assert_eq!(hotfix["IsDefault"], false);
        assert_eq!(
            s.get(&format!("/api/channels/{hotfix_id}")).await.body["LifecycleId"],
            json!(hotfix_lc)
        );
        let listed = s.get(&format!("/api/projects/{p}/channels")).await.body;
        assert_eq!(listed["TotalResults"], 2);

        let fix = s
            .create(
                "/api/releases",
                json!({"ProjectId": p, "Version": "1.0.1", "ChannelId": hotfix_id}),
            )
            .await;
        let fix_id = fix["Id"].as_str().unwrap();
        // Straight to Production in the hotfix channel; Dev is not in its lifecycle.
        deploy_ok(&s, fix_id, prod).await;
        assert_eq!(deploy(&s, fix_id, dev).await.status, StatusCode::BAD_REQUEST);
        let prog = progression(&s, fix_id).await;
        assert_eq!(prog["Phases"].as_array().unwrap().len(), 1);
        // The default channel follows the project's lifecycle.
        let normal = release(&s, &p, "1.0.2").await;
        assert_eq!(deploy(&s, &normal, prod).await.status, StatusCode::BAD_REQUEST);

        // Making Hotfix the default takes it from the old default.
        let mut body = hotfix.clone();
        body["IsDefault"] = json!(true);
        body["Description"] = json!("urgent fixes");
        let r = s
            .send(Method::PUT, &format!("/api/channels/{hotfix_id}"), &body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["Description"], "urgent fixes");
        let channels = s.get(&format!("/api/projects/{p}/channels")).await.body;
        let defaults: Vec<&Value> = channels["Items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["IsDefault"] == true)
            .collect();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0]["Id"], json!(hotfix_id));
        // The default cannot be deleted; one with releases cannot either.
        let r = s
            .call_with(Method::DELETE, &format!("/api/channels/{hotfix_id}"), None, Some(&s.key))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let old_default = channels["Items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["IsDefault"] == false)
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s
            .call_with(Method::DELETE, &format!("/api/channels/{old_default}"), None, Some(&s.key))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        let empty = s
            .create("/api/channels", json!({"ProjectId": p, "Name": "Spare"}))
            .await;
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/channels/{}", empty["Id"].as_str().unwrap()),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        // Bad input changes nothing.
        for bad in [
            json!({"ProjectId": p, "Name": ""}),
            json!({"ProjectId": "Projects-999", "Name": "X"}),
            json!({"ProjectId": p, "Name": "X", "LifecycleId": "Lifecycles-999"}),
            json!({"ProjectId": p, "Name": "X", "Rules": [{"VersionRange": "[2.0,1.0]"}]}),
            json!({"ProjectId": p, "Name": "X", "Rules": [{"VersionRange": "1.0", "Tag": "(unclosed"}]}),
        ] {
            let r = s.post("/api/channels", bad.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        }
        let dup = s.post("/api/channels", json!({"ProjectId": p, "Name": "hotfix"})).await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
        assert_eq!(
            s.get(&format!("/api/projects/{p}/channels")).await.body["TotalResults"],
            2
        );
    })
    .await;
}

#[tokio::test]
async fn channel_version_rules_are_checked_at_release_creation() {
    on_both("lc-rules", |s| async move {
        environments(&s, &["Dev"]).await;
        let p = project(&s, "Ruled", "Lifecycles-1").await;
        let stable = s
            .create(
                "/api/channels",
                json!({"ProjectId": p, "Name": "Stable",
                       "Rules": [{"VersionRange": "[1.0,2.0)", "Tag": "^$", "ActionPackages": []}]}),
            )
            .await;
        let stable_id = stable["Id"].as_str().unwrap();
        assert!(!stable["Rules"][0]["Id"].as_str().unwrap().is_empty());
        let count = || async {
            s.get(&format!("/api/projects/{p}/releases")).await.body["TotalResults"].clone()
        };

        for version in ["2.1.0", "0.9", "1.5.0-beta"] {
            let r = s
                .post(
                    "/api/releases",
                    json!({"ProjectId": p, "Version": version, "ChannelId": stable_id}),
                )
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{version}: {}", r.body);
            let text = r.error_text();
            assert!(
                text.contains(&format!("The release version {version} does not satisfy the version rule (range [1.0,2.0), tag ^$) of the channel 'Stable'")),
                "{text}"
            );
        }
        assert_eq!(count().await, 0);
        s.create(
            "/api/releases",
            json!({"ProjectId": p, "Version": "1.5.0", "ChannelId": stable_id}),
        )
        .await;
        // Four-part versions compare too.
        s.create(
            "/api/releases",
            json!({"ProjectId": p, "Version": "1.9.9.9", "ChannelId": stable_id}),
        )
        .await;
        let ignored = s
            .create(
                "/api/releases",
                json!({"ProjectId": p, "Version": "3.0.0", "ChannelId": stable_id, "IgnoreChannelRules": true}),
            )
            .await;
        assert_eq!(ignored["IgnoreChannelRules"], true);
        // The executions API, by channel name.
        let r = s
            .post(
                "/api/Spaces-1/releases/create/v1",
                json!({"ProjectName": "Ruled", "ChannelName": "Stable", "ReleaseVersion": "4.0.0"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("IgnoreChannelRules"), "{}", r.error_text());
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Ruled", "ChannelName": "Stable", "ReleaseVersion": "4.0.0", "IgnoreChannelRules": true}),
        )
        .await;
        // The default channel has no rules.
        release(&s, &p, "9.0.0-anything").await;
        assert_eq!(count().await, 5);
    })
    .await;
}

#[tokio::test]
async fn an_environment_a_phase_names_is_not_deleted() {
    on_both("lifecycles_env_in_phase", |s| async move {
        let envs = environments(&s, &["Dev", "Test"]).await;
        lifecycle(&s, "Two step", vec![phase("First", &[], &[&envs[0]])]).await;
        let r = s
            .send(
                Method::DELETE,
                &format!("/api/environments/{}", envs[0]),
                &Value::Null,
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(
            r.error_text().contains("lifecycles Two step"),
            "{}",
            r.error_text()
        );
        let still = s.get(&format!("/api/environments/{}", envs[0])).await;
        assert_eq!(still.status, StatusCode::OK);
        // One no phase names goes.
        let r = s
            .send(
                Method::DELETE,
                &format!("/api/environments/{}", envs[1]),
                &Value::Null,
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    })
    .await;
}
