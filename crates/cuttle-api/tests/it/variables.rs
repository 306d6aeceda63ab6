//! Variables over HTTP: project and library variable sets, sensitive values
//! sealed and withheld, scope checks, and what deployments see: scoped
//! values, system variables, output variables between steps, prompted
//! values, and masking in the task log.

use crate::common;

use common::{on_both, Server};
use cuttle_model::VariableSet;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn put_variables(s: &Server, set_id: &str, body: Value) -> common::Reply {
    s.send(
        Method::PUT,
        &format!("/api/Spaces-1/variables/{set_id}"),
        &body,
    )
    .await
}

/// A project whose process has the given steps, each one script action
/// named like its step: `(name, syntax, body, extra step fields)`.
async fn project_with_steps(s: &Server, name: &str, steps: &[(&str, &str, &str, Value)]) -> Value {
    for env in ["Dev", "Prod"] {
        if s.get(&format!("/api/environments?name={env}")).await.body["TotalResults"] == 0 {
            s.create("/api/environments", json!({ "Name": env })).await;
        }
    }
    let project = s
        .create(
            "/api/projects",
            json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        )
        .await;
    let steps: Vec<Value> = steps
        .iter()
        .map(|(step, syntax, body, extra)| {
            let mut v = json!({
                "Name": step,
                "Actions": [{"Name": step, "ActionType": "Octopus.Script", "Properties": {
                    "Octopus.Action.Script.ScriptBody": body,
                    "Octopus.Action.Script.Syntax": syntax,
                }}]
            });
            if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
                o.extend(e.clone());
            }
            v
        })
        .collect();
    let r = s
        .send(
            Method::PUT,
            &format!(
                "/api/projects/{}/deploymentprocesses",
                project["Id"].as_str().unwrap()
            ),
            &json!({"Version": 0, "Steps": steps}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    project
}

async fn deploy(s: &Server, project: &str, version: &str, env: &str, vars: Value) -> common::Reply {
    s.post(
        "/api/Spaces-1/deployments/create/untenanted/v1",
        json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": [env], "Variables": vars}),
    )
    .await
}

async fn deployed_lines(s: &Server, project: &str, version: &str, env: &str) -> Vec<String> {
    let r = deploy(s, project, version, env, json!({})).await;
    assert!(r.status.is_success(), "{}: {}", s.backend, r.body);
    let task = r.body["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = s.wait_for_task(&task).await;
    let lines: Vec<String> = s
        .log_lines(&task)
        .await
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(t["State"], "Success", "{}: {t} {lines:#?}", s.backend);
    lines
}

#[tokio::test]
async fn variable_sets_seal_sensitive_values_and_check_scopes() {
    on_both("vars-sets", |s| async move {
        let project = project_with_steps(&s, "Shop", &[("Run", "Bash", "true", json!({}))]).await;
        let set_id = project["VariableSetId"].as_str().unwrap().to_owned();
        assert_eq!(
            set_id,
            format!("variableset-{}", project["Id"].as_str().unwrap())
        );
        assert_eq!(
            project["Links"]["Variables"],
            format!("/api/Spaces-1/variables/{set_id}")
        );

        let empty = s.get(&format!("/api/Spaces-1/variables/{set_id}")).await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
        assert_eq!(
            (
                empty.body["Version"].as_i64(),
                empty.body["Variables"].as_array().map(Vec::len)
            ),
            (Some(0), Some(0))
        );
        let envs: Vec<&str> = empty.body["ScopeValues"]["Environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap())
            .collect();
        assert_eq!(envs, ["Dev", "Prod"]);
        assert_eq!(empty.body["ScopeValues"]["Actions"][0]["Name"], "Run");
        assert_eq!(
            s.get(empty.body["Links"]["Owner"].as_str().unwrap())
                .await
                .status,
            StatusCode::OK
        );

        let saved = put_variables(&s, &set_id, json!({"Version": 0, "Variables": [
            {"Name": "Greeting", "Value": "hello dev", "Scope": {"Environment": ["Dev"]}},
            {"Name": "Greeting", "Value": "hello anywhere"},
            {"Name": "Password", "Value": "s3cr3t-pw", "Type": "Sensitive"},
            {"Name": "Only in Run", "Value": "x", "Scope": {"Action": ["Run"], "Role": ["web"]}},
        ]})).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
        assert_eq!(saved.body["Version"], 1);
        let vars = saved.body["Variables"].as_array().unwrap().clone();
        let dev_id = s.get("/api/environments?name=Dev").await.body["Items"][0]["Id"].clone();
        assert_eq!(
            vars[0]["Scope"]["Environment"],
            json!([dev_id]),
            "names are stored as ids"
        );
        assert!(vars
            .iter()
            .all(|v| v["Id"].as_str().is_some_and(|i| !i.is_empty())));
        let password = vars
            .iter()
            .find(|v| v["Name"] == "Password")
            .unwrap()
            .clone();
        assert_eq!(
            (password["Value"].clone(), password["IsSensitive"].clone()),
            (Value::Null, json!(true))
        );
        assert!(!saved.body.to_string().contains("s3cr3t"), "{}", saved.body);
        let read = s
            .get(&format!("/api/Spaces-1/variables/{set_id}"))
            .await
            .body;
        assert!(!read.to_string().contains("s3cr3t"), "{read}");
        assert_eq!(read["ScopeValues"]["Roles"][0]["Name"], "web");

        // At rest the value is sealed under the master key.
        let stored: VariableSet = s.inst.store.require(&set_id).await.unwrap();
        let sealed = stored
            .variables
            .iter()
            .find(|v| v.name == "Password")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert!(
            sealed.starts_with("cuttle:v1:") && !sealed.contains("s3cr3t"),
            "{sealed}"
        );
        assert_eq!(s.inst.master_key.open(&sealed).as_deref(), Ok("s3cr3t-pw"));

        // A deployment target is named in scopes by id or name, stored by id.
        let machine = s
            .create(
                "/api/Spaces-1/machines",
                json!({"Name": "web01", "EnvironmentIds": [dev_id.clone()],
            "Roles": ["web"], "Endpoint": {"CommunicationStyle": "TentaclePassive",
            "Uri": "https://127.0.0.1:10933/", "Thumbprint": "AB".repeat(32)}}),
            )
            .await;
        let mut with_machine = read["Variables"].as_array().unwrap().clone();
        with_machine.push(json!({"Name": "OnWeb", "Value": "1", "Scope": {"Machine": ["web01"]}}));
        let r = put_variables(
            &s,
            &set_id,
            json!({"Version": 1, "Variables": with_machine}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let on_web = r.body["Variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["Name"] == "OnWeb")
            .unwrap()
            .clone();
        assert_eq!(on_web["Scope"]["Machine"], json!([machine["Id"]]));
        assert_eq!(r.body["ScopeValues"]["Machines"][0]["Name"], "web01");
        let read = r.body;

        // Sending a sensitive value back as null keeps it.
        let again = put_variables(
            &s,
            &set_id,
            json!({"Version": 2, "Variables": read["Variables"]}),
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        let stored: VariableSet = s.inst.store.require(&set_id).await.unwrap();
        let kept = stored
            .variables
            .iter()
            .find(|v| v.name == "Password")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert_eq!(s.inst.master_key.open(&kept).as_deref(), Ok("s3cr3t-pw"));

        // Bad input is refused and changes nothing.
        let stale = put_variables(&s, &set_id, json!({"Version": 2, "Variables": []})).await;
        assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
        let unknown = put_variables(
            &s,
            &set_id,
            json!({"Version": 3, "Variables": [
                {"Name": "A", "Value": "1", "Scope": {"Environment": ["Environments-999"]}},
                {"Name": "B", "Value": "1", "Scope": {"Channel": ["Nope"]}},
                {"Name": "C", "Value": "1", "Scope": {"Action": ["No such step"]}},
                {"Name": "  ", "Value": "1"},
                {"Name": "D", "Value": "1", "Scope": {"Machine": ["ghost"]}},
            ]}),
        )
        .await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
        let text = unknown.error_text();
        for needle in [
            "Environments-999",
            "'Nope'",
            "No such step",
            "name",
            "'ghost'",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let after = s
            .get(&format!("/api/Spaces-1/variables/{set_id}"))
            .await
            .body;
        assert_eq!(
            (
                after["Version"].as_i64(),
                after["Variables"].as_array().map(Vec::len)
            ),
            (Some(3), Some(5))
        );
        let missing = s
            .get("/api/Spaces-1/variables/variableset-Projects-999")
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn library_variable_sets_are_included_by_projects() {
    on_both("vars-library", |s| async move {
        let lib = s.create("/api/Spaces-1/libraryvariablesets", json!({"Name": "Shared"})).await;
        assert_eq!(lib["ContentType"], "Variables");
        let lib_id = lib["Id"].as_str().unwrap().to_owned();
        let set_id = lib["VariableSetId"].as_str().unwrap().to_owned();
        assert_eq!(s.get(lib["Links"]["Variables"].as_str().unwrap()).await.status, StatusCode::OK);
        let listed = s.get("/api/Spaces-1/libraryvariablesets?partialName=shar").await.body;
        assert_eq!(listed["TotalResults"], 1);
        let dup = s.post("/api/Spaces-1/libraryvariablesets", json!({"Name": "shared"})).await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);

        let channel = put_variables(&s, &set_id, json!({"Version": 0, "Variables": [
            {"Name": "X", "Value": "1", "Scope": {"Channel": ["Channels-1"]}}]})).await;
        assert_eq!(channel.status, StatusCode::BAD_REQUEST, "{}", channel.body);
        let r = put_variables(&s, &set_id, json!({"Version": 0, "Variables": [
            {"Name": "Shared.Url", "Value": "https://lib"},
            {"Name": "Overridden", "Value": "from library"}]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);

        let bad = s.post("/api/projects", json!({"Name": "Nope", "ProjectGroupId": "ProjectGroups-1",
            "LifecycleId": "Lifecycles-1", "IncludedLibraryVariableSetIds": ["LibraryVariableSets-99"]})).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(bad.error_text().contains("LibraryVariableSets-99"));

        let project = project_with_steps(&s, "Uses lib", &[("Show", "Bash",
            "echo \"url=#{Shared.Url} o=#{Overridden}\"", json!({}))]).await;
        let mut p = project.clone();
        p["IncludedLibraryVariableSetIds"] = json!([lib_id]);
        let pid = project["Id"].as_str().unwrap();
        let r = s.send(Method::PUT, &format!("/api/projects/{pid}"), &p).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = put_variables(&s, project["VariableSetId"].as_str().unwrap(), json!({"Version": 0,
            "Variables": [{"Name": "Overridden", "Value": "from project"}]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);

        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Uses lib", "ReleaseVersion": "1.0.0"})).await;
        let lines = deployed_lines(&s, "Uses lib", "1.0.0", "Dev").await;
        assert!(lines.contains(&"url=https://lib o=from project".to_owned()), "{lines:#?}");

        let in_use = s.call_with(Method::DELETE, &format!("/api/Spaces-1/libraryvariablesets/{lib_id}"), None, Some(&s.key)).await;
        assert_eq!(in_use.status, StatusCode::BAD_REQUEST, "{}", in_use.body);
        assert!(in_use.error_text().contains("Uses lib"));
        assert_eq!(s.get(&format!("/api/Spaces-1/libraryvariablesets/{lib_id}")).await.status, StatusCode::OK);
    })
    .await;
}

const PRODUCE: &str = r#"echo "greeting=#{Greeting}"
echo "project=#{Octopus.Project.Name} env=#{Octopus.Environment.Name} release=#{Octopus.Release.Number} step=#{Octopus.Step.Name} machine=#{Octopus.Machine.Name} space=#{Octopus.Space.Name}"
echo "task=#{Octopus.Task.Id} deployment=#{Octopus.Deployment.Id}"
echo "via helper=$(get_octopusvariable "greeting")"
echo "danger=$(get_octopusvariable "Danger")"
echo "password is #{Password}!"
get_octopusvariable "Cert"; echo
set_octopusvariable "Port" "8080"
set_octopusvariable "Token" "tok-123456" -sensitive
echo "token tok-123456"
"#;

const CONSUME: &str = r#"print("port=#{Octopus.Action[Produce].Output.Port}")
print("helper port=" + get_octopusvariable("Octopus.Action[Produce].Output.Port"))
print("token=" + get_octopusvariable("Octopus.Action[Produce].Output.Token"))
print("step=" + get_octopusvariable("Octopus.Step.Name"))
"#;

#[tokio::test]
async fn a_deployment_sees_scoped_system_output_and_masked_values() {
    on_both("vars-deploy", |s| async move {
        let project = project_with_steps(
            &s,
            "Vars",
            &[
                ("Produce", "Bash", PRODUCE, json!({})),
                ("Consume", "Python", CONSUME, json!({})),
            ],
        )
        .await;
        let set_id = project["VariableSetId"].as_str().unwrap().to_owned();
        let r = put_variables(
            &s,
            &set_id,
            json!({"Version": 0, "Variables": [
                {"Name": "Greeting", "Value": "hello dev", "Scope": {"Environment": ["Dev"]}},
                {"Name": "Greeting", "Value": "hello anywhere"},
                {"Name": "Greeting", "Value": "hello prod", "Scope": {"Environment": ["Prod"]}},
                {"Name": "Password", "Value": "s3cr3t-pw", "Type": "Sensitive"},
                {"Name": "Cert", "Value": "line-one-AAAA\nline-two-BBBB", "IsSensitive": true},
                {"Name": "Danger", "Value": "$(touch pwned) `touch pwned2` ; touch pwned3"},
            ]}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Vars", "ReleaseVersion": "1.0.0"}),
        )
        .await;

        let lines = deployed_lines(&s, "Vars", "1.0.0", "Dev").await;
        let has = |l: &str| lines.iter().any(|x| x == l);
        // On a host the step runs on the hosted worker lent to the instance.
        let machine = if crate::common::on_host() {
            "hosted-worker-1"
        } else {
            "Built-in worker"
        };
        let system = format!(
            "project=Vars env=Dev release=1.0.0 step=Produce machine={machine} space=Default"
        );
        for expected in [
            "greeting=hello dev",
            system.as_str(),
            "via helper=hello dev",
            "danger=$(touch pwned) `touch pwned2` ; touch pwned3",
            "password is ********!",
            "token ********",
            "port=8080",
            "helper port=8080",
            "token=********",
            "step=Consume",
        ] {
            assert!(
                has(expected),
                "{}: missing {expected:?} in {lines:#?}",
                s.backend
            );
        }
        assert!(
            lines.iter().any(
                |l| l.starts_with("task=ServerTasks-") && l.contains("deployment=Deployments-")
            ),
            "{lines:#?}"
        );
        // The two-line sensitive value, printed over two lines, is masked on both.
        assert_eq!(
            lines.iter().filter(|l| *l == "********").count(),
            2,
            "{lines:#?}"
        );
        for secret in ["s3cr3t", "tok-123456", "line-one", "line-two"] {
            assert!(
                !lines.iter().any(|l| l.contains(secret)),
                "{secret} leaked: {lines:#?}"
            );
        }

        // The release froze its variables: a later edit changes nothing in it.
        let current = s
            .get(&format!("/api/Spaces-1/variables/{set_id}"))
            .await
            .body;
        let mut vars = current["Variables"].as_array().unwrap().clone();
        vars[0]["Value"] = json!("changed dev");
        let r = put_variables(&s, &set_id, json!({"Version": 1, "Variables": vars})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let lines = deployed_lines(&s, "Vars", "1.0.0", "Dev").await;
        assert!(
            lines.contains(&"greeting=hello dev".to_owned()),
            "{lines:#?}"
        );
        let lines = deployed_lines(&s, "Vars", "1.0.0", "Prod").await;
        assert!(
            lines.contains(&"greeting=hello prod".to_owned()),
            "{lines:#?}"
        );
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Vars", "ReleaseVersion": "1.0.1"}),
        )
        .await;
        let lines = deployed_lines(&s, "Vars", "1.0.1", "Dev").await;
        assert!(
            lines.contains(&"greeting=changed dev".to_owned()),
            "{lines:#?}"
        );
        let release = s.get("/api/projects/Vars/releases/1.0.0").await.body;
        let snapshot = s
            .get(
                release["Links"]["ProjectVariableSnapshot"]
                    .as_str()
                    .unwrap(),
            )
            .await;
        assert_eq!(snapshot.status, StatusCode::OK, "{}", snapshot.body);
        assert!(
            snapshot.body.to_string().contains("hello dev")
                && !snapshot.body.to_string().contains("s3cr3t")
        );
        let frozen = put_variables(
            &s,
            snapshot.body["Id"].as_str().unwrap(),
            json!({"Version": 0, "Variables": []}),
        )
        .await;
        assert_eq!(frozen.status, StatusCode::BAD_REQUEST, "{}", frozen.body);
    })
    .await;
}

#[tokio::test]
async fn prompted_variables_and_variable_run_conditions() {
    on_both("vars-prompt", |s| async move {
        let project = project_with_steps(&s, "Asks", &[
            ("Ask", "Bash", "echo \"approved by #{Approver} with #{Token}\"", json!({})),
            ("Maybe", "Bash", "echo maybe ran", json!({"Condition": "Variable",
                "Properties": {"Octopus.Step.ConditionVariableExpression": "#{RunMaybe}"}})),
            ("Surely", "Bash", "echo surely ran", json!({"Condition": "Variable",
                "Properties": {"Octopus.Step.ConditionVariableExpression": "#{if Octopus.Environment.Name == \"Dev\"}true#{/if}"}})),
        ]).await;
        let r = put_variables(&s, project["VariableSetId"].as_str().unwrap(), json!({"Version": 0, "Variables": [
            {"Name": "Approver", "Value": "", "Prompt": {"Label": "Who approves?", "Required": true}},
            {"Name": "RunMaybe", "Value": "False"},
            {"Name": "Token", "Type": "Sensitive", "Value": "default-t0ken", "Prompt": {"Label": "Token"}},
        ]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Asks", "ReleaseVersion": "1.0.0"})).await;

        let missing = deploy(&s, "Asks", "1.0.0", "Dev", json!({})).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
        assert!(missing.error_text().contains("Approver"), "{}", missing.body);
        let unknown = deploy(&s, "Asks", "1.0.0", "Dev", json!({"Approver": "a", "Nobody": "x"})).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
        assert!(unknown.error_text().contains("Nobody"));
        assert_eq!(s.get("/api/deployments").await.body["TotalResults"], 0, "nothing was queued");

        let ok = deploy(&s, "Asks", "1.0.0", "Dev", json!({"Approver": "alice", "Token": "pr0mpted-t0ken"})).await;
        assert!(ok.status.is_success(), "{}", ok.body);
        let task = ok.body["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let t = s.wait_for_task(&task).await;
        let lines: Vec<String> = s.log_lines(&task).await.into_iter().map(|(_, m)| m).collect();
        assert_eq!(t["State"], "Success", "{t} {lines:#?}");
        assert!(lines.contains(&"approved by alice with ********".to_owned()), "{lines:#?}");
        assert!(!lines.contains(&"maybe ran".to_owned()), "{lines:#?}");
        assert!(lines.contains(&"surely ran".to_owned()), "{lines:#?}");

        // FormValues name prompted variables by id; sensitive ones never come back.
        let vars = r.body["Variables"].as_array().unwrap().clone();
        let id_of = |name: &str| vars.iter().find(|v| v["Name"] == name).unwrap()["Id"].as_str().unwrap().to_owned();
        let release = s.get("/api/projects/Asks/releases/1.0.0").await.body;
        let dev = s.get("/api/environments?name=Dev").await.body["Items"][0]["Id"].clone();
        let created = s.post("/api/Spaces-1/deployments", json!({"ReleaseId": release["Id"], "EnvironmentId": dev,
            "FormValues": {id_of("Approver"): "bob", id_of("Token"): "f0rm-t0ken"}})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["FormValues"], json!({id_of("Approver"): "bob"}), "{}", created.body);
        let task = created.body["TaskId"].as_str().unwrap().to_owned();
        assert_eq!(s.wait_for_task(&task).await["State"], "Success");
        let lines: Vec<String> = s.log_lines(&task).await.into_iter().map(|(_, m)| m).collect();
        assert!(lines.contains(&"approved by bob with ********".to_owned()), "{lines:#?}");
        let listed = s.get(&format!("/api/deployments/{}", created.body["Id"].as_str().unwrap())).await.body;
        assert!(!listed.to_string().contains("cuttle:v1:"), "{listed}");
    })
    .await;
}

/// A variable's `Type` is matched without regard to case and stored in its
/// canonical spelling, so `sensitive` seals the value like `Sensitive`; an
/// unknown type is refused naming it, and nothing is saved. Project and
/// library sets alike.
#[tokio::test]
async fn fault_variable_type_is_case_insensitive_and_unknown_types_are_refused() {
    on_both("vars-type-case", |s| async move {
        let project =
            project_with_steps(&s, "Typed", &[("Run", "Bash", "echo hi", json!({}))]).await;
        let lib = s
            .create(
                "/api/Spaces-1/libraryvariablesets",
                json!({"Name": "Typed lib"}),
            )
            .await;
        for set_id in [
            project["VariableSetId"].as_str().unwrap().to_owned(),
            lib["VariableSetId"].as_str().unwrap().to_owned(),
        ] {
            for bad in ["Sensitve", "Bogus"] {
                let r = put_variables(
                    &s,
                    &set_id,
                    json!({"Version": 0, "Variables": [
                    {"Name": "Fine", "Value": "plain"},
                    {"Name": "Oops", "Value": "typo-s3cret", "Type": bad}]}),
                )
                .await;
                assert_eq!(
                    r.status,
                    StatusCode::BAD_REQUEST,
                    "{}: {}",
                    s.backend,
                    r.body
                );
                let text = r.error_text();
                assert!(
                    text.contains(&format!("'{bad}'")) && text.contains("Oops"),
                    "{text}"
                );
                let after = s
                    .get(&format!("/api/Spaces-1/variables/{set_id}"))
                    .await
                    .body;
                assert_eq!(
                    (
                        after["Version"].as_i64(),
                        after["Variables"].as_array().map(Vec::len)
                    ),
                    (Some(0), Some(0)),
                    "{after}"
                );
            }

            let saved = put_variables(
                &s,
                &set_id,
                json!({"Version": 0, "Variables": [
                {"Name": "Lower", "Value": "lower-s3cret", "Type": "sensitive"},
                {"Name": "Upper", "Value": "upper-s3cret", "Type": "SENSITIVE"},
                {"Name": "Text", "Value": "plain", "Type": "string"},
                {"Name": "Cert", "Value": "Certificates-1", "Type": "certificate"},
                {"Name": "Pool", "Value": "WorkerPools-1", "Type": "workerpool"}]}),
            )
            .await;
            assert_eq!(
                saved.status,
                StatusCode::OK,
                "{}: {}",
                s.backend,
                saved.body
            );
            assert!(!saved.body.to_string().contains("s3cret"), "{}", saved.body);
            let types: Vec<(&str, &str, bool)> = saved.body["Variables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["Name"].as_str().unwrap(),
                        v["Type"].as_str().unwrap(),
                        v["IsSensitive"].as_bool().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                types,
                [
                    ("Lower", "Sensitive", true),
                    ("Upper", "Sensitive", true),
                    ("Text", "String", false),
                    ("Cert", "Certificate", false),
                    ("Pool", "WorkerPool", false),
                ]
            );
            // At rest the values are sealed, not plain text.
            let stored: VariableSet = s.inst.store.require(&set_id).await.unwrap();
            for v in stored
                .variables
                .iter()
                .filter(|v| v.name == "Lower" || v.name == "Upper")
            {
                let value = v.value.as_deref().unwrap();
                assert!(
                    v.sensitive() && !value.contains("s3cret"),
                    "{}: {v:?}",
                    s.backend
                );
            }
        }
    })
    .await;
}

/// Lines longer than 64 KiB reach the log in pieces; a sensitive value
/// that a cut divides must still be masked, not shown in two halves. On
/// stdout and stderr, a value just across a cut, one ending exactly at a
/// cut, and several values across successive cuts of one line.
#[tokio::test]
async fn fault_a_secret_across_a_long_line_cut_is_masked() {
    const CUT: usize = 64 * 1024;
    const SECRET: &str = "cut-s3cret-value-XYZ";
    let fill = |c: char, n: usize| format!("head -c {n} /dev/zero | tr '\\0' {c}");
    let n = SECRET.len();
    let body = [
        // Across the cut; ending exactly at it.
        format!("{}; echo \"#{{Secret}}-tail\"", fill('k', CUT - 7)),
        format!("{}; echo \"#{{Secret}}-end\"", fill('m', CUT - n)),
        // Across the first and the second cut of one line.
        format!(
            "{}; printf '%s' \"#{{Secret}}\"; {}; echo \"#{{Secret}}-fin\"",
            fill('o', CUT - 3),
            fill('p', CUT - n - 2)
        ),
        format!("({}; echo \"#{{Secret}}-err\") >&2", fill('w', CUT - 11)),
    ]
    .join("\n");
    on_both("vars-mask-cut", |s| {
        let body = body.clone();
        async move {
            let project =
                project_with_steps(&s, "Long lines", &[("Print", "Bash", &body, json!({}))]).await;
            let r = put_variables(
                &s,
                project["VariableSetId"].as_str().unwrap(),
                json!({"Version": 0, "Variables": [
                {"Name": "Secret", "Value": SECRET, "Type": "Sensitive"}]}),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            s.create(
                "/api/Spaces-1/releases/create/v1",
                json!({"ProjectName": "Long lines", "ReleaseVersion": "1.0.0"}),
            )
            .await;
            let lines = deployed_lines(&s, "Long lines", "1.0.0", "Dev").await;
            // The pieces read in order, as someone scrolling the log would.
            let joined = lines.concat();
            assert!(
                !joined.contains(SECRET),
                "{}: the secret is shown",
                s.backend
            );
            for half in [&SECRET[..n / 2], &SECRET[n / 2..]] {
                assert!(
                    !joined.contains(half),
                    "{}: half of the secret ({half}) is shown",
                    s.backend
                );
            }
            for end in [
                "********-tail",
                "********-end",
                "********-fin",
                "********-err",
            ] {
                assert!(joined.contains(end), "{}: no {end}", s.backend);
            }
            assert_eq!(joined.matches("********").count(), 5, "{}", s.backend);
            // Nothing printed was lost: every filler byte is there.
            for (c, count) in [
                ('k', CUT - 7),
                ('m', CUT - n),
                ('o', CUT - 3),
                ('p', CUT - n - 2),
                ('w', CUT - 11),
            ] {
                let run = c.to_string().repeat(3);
                let shown: usize = lines
                    .iter()
                    .filter(|l| l.contains(&run))
                    .map(|l| l.matches(c).count())
                    .sum();
                assert_eq!(shown, count, "{}: {c}", s.backend);
            }
        }
    })
    .await;
}

/// A sensitive output variable larger than a line's 64 KiB cut: its service
/// message arrives in pieces, and must still set the variable, never reach
/// the log (not even base64-encoded), and be masked where later steps print it.
#[tokio::test]
async fn fault_a_large_sensitive_output_variable_is_set_and_never_shown() {
    on_both("vars-large-output", |s| async move {
        project_with_steps(&s, "Large output", &[
            ("Make", "Bash", "big=\"$(head -c 100000 /dev/zero | tr '\\0' q)-tail\"\nset_octopusvariable \"Big\" \"$big\" -sensitive\necho made", json!({})),
            ("Use", "Bash", "v=\"#{Octopus.Action[Make].Output.Big}\"\necho \"length ${#v}\"\necho \"value $v\"", json!({})),
        ]).await;
        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Large output", "ReleaseVersion": "1.0.0"})).await;
        let lines = deployed_lines(&s, "Large output", "1.0.0", "Dev").await;
        assert!(lines.contains(&"length 100005".to_owned()), "{}: {:?}", s.backend, lines.iter().map(|l| &l[..l.len().min(80)]).collect::<Vec<_>>());
        assert!(lines.contains(&"value ********".to_owned()), "{}", s.backend);
        assert!(lines.contains(&"Output variable Big was set".to_owned()), "{}", s.backend);
        let joined = lines.concat();
        // Neither the value nor its base64 ("qqq" encodes as "cXFx").
        for shown in ["qqqqqqqq", "cXFxcXFx", "##octopus"] {
            assert!(!joined.contains(shown), "{}: the log shows {shown}", s.backend);
        }
    })
    .await;
}
