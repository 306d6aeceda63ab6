//! Sensitive values substituted into what a deployment shows people: a
//! manual intervention's instructions name a project secret, a prompted
//! secret and a sensitive output variable of an earlier step. Each must be
//! masked wherever the text goes: the interruption (API and database), the
//! task log (details, raw, live stream, database) and the portal's page.

use crate::common;

use common::{manual_step, on_both, script_step};
use reqwest::{Method, StatusCode};
use serde_json::json;

const PROJECT_SECRET: &str = "pr0ject-s3cret-4711";
const PROMPTED_SECRET: &str = "pr0mpted-s3cret-0815";
const OUTPUT_SECRET: &str = "0utput-s3cret-1234";
const SECRETS: [&str; 3] = [PROJECT_SECRET, PROMPTED_SECRET, OUTPUT_SECRET];

fn assert_masked(backend: &str, place: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{backend}: {place} shows the secret {secret}:\n{text}"
        );
    }
}

#[tokio::test]
async fn fault_manual_instructions_mask_sensitive_values_everywhere() {
    on_both("masking-instructions", |s| async move {
        s.environment("Dev").await;
        let project = s
            .project(
                "Secretive",
                vec![
                    script_step(
                        "Emit",
                        // Made by the script, so the process itself does not hold it.
                        "set_octopusvariable \"Token\" \"0utput-$(echo s3cret)-1234\" -sensitive\necho emitted",
                    ),
                    manual_step(
                        "Approve",
                        "Check #{ProjectSecret} and #{Asked} and #{Octopus.Action[Emit].Output.Token} before going on",
                    ),
                ],
            )
            .await;
        let (_, p) = s.api(Method::GET, &format!("/api/projects/{project}"), None).await;
        let set_id = p["VariableSetId"].as_str().unwrap().to_owned();
        let (status, saved) = s
            .api(
                Method::PUT,
                &format!("/api/Spaces-1/variables/{set_id}"),
                Some(json!({"Version": 0, "Variables": [
                    {"Name": "ProjectSecret", "Value": PROJECT_SECRET, "Type": "Sensitive"},
                    {"Name": "Asked", "Value": "", "Type": "Sensitive", "Prompt": {"Label": "Asked", "Required": true}},
                ]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Secretive", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let d = s
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Secretive", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"],
                       "Variables": {"Asked": PROMPTED_SECRET}}),
            )
            .await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        s.wait_pending(&task).await;

        // The interruption, as listed and as read.
        let interruption = s.pending_interruptions(&task).await.remove(0);
        let iid = interruption["Id"].as_str().unwrap().to_owned();
        assert_masked(s.backend, "the interruption list", &interruption.to_string());
        let text = interruption["Form"]["Elements"][0]["Control"]["Text"].as_str().unwrap();
        assert_eq!(text, "Check ******** and ******** and ******** before going on", "{}", s.backend);
        let (_, read) = s.api(Method::GET, &format!("/api/Spaces-1/interruptions/{iid}"), None).await;
        assert_masked(s.backend, "the interruption", &read.to_string());

        // The log while the task waits, and the portal's page of the task.
        let (_, details) = s.api(Method::GET, &format!("/api/tasks/{task}/details?verbose=true"), None).await;
        let details = details.to_string();
        assert!(details.contains("Manual intervention required: Check ******** and"), "{}: {details}", s.backend);
        assert_masked(s.backend, "the task's details", &details);
        let b = s.sign_in().await;
        let page = b.get(&format!("/tasks/{task}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Check ******** and ******** and ********"), "{}: {}", s.backend, page.body);
        assert_masked(s.backend, "the portal's task page", &page.body);

        let (status, answered) = s
            .api(
                Method::POST,
                &format!("/api/Spaces-1/interruptions/{iid}/submit"),
                Some(json!({"Notes": "fine", "Result": "Proceed"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        assert_masked(s.backend, "the answered interruption", &answered.to_string());
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{}: {done}", s.backend);

        let (_, details) = s.api(Method::GET, &format!("/api/tasks/{task}/details?verbose=true"), None).await;
        assert_masked(s.backend, "the finished task's details", &details.to_string());
        let (_, raw) = s.api(Method::GET, &format!("/api/tasks/{task}/raw"), None).await;
        let raw = raw.as_str().map(str::to_owned).unwrap_or_else(|| raw.to_string());
        assert!(raw.contains("Manual intervention required: Check ********"), "{}: {raw}", s.backend);
        assert_masked(s.backend, "the raw log", &raw);
        let stream = s
            .client
            .get(format!("{}/api/tasks/{task}/stream", s.url))
            .header("X-Octopus-ApiKey", common::ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        // The task has ended: the stream sends the whole log and closes.
        let streamed = stream.text().await.unwrap();
        assert!(streamed.contains("Manual intervention required: Check ********"), "{}: {streamed}", s.backend);
        assert_masked(s.backend, "the live log stream", &streamed);
        let page = b.get(&format!("/tasks/{task}")).await;
        assert_masked(s.backend, "the portal's page of the finished task", &page.body);

        // Nor does the database hold any of them in the clear; the search
        // finds what is stored, such as the masked instructions.
        let masked = s.stored_in_the_clear("Check ******** and ******** and ********").await;
        assert!(!masked.is_empty(), "{}: the search found nothing at all", s.backend);
        for secret in SECRETS {
            let found = s.stored_in_the_clear(secret).await;
            assert!(found.is_empty(), "{}: {secret} is stored in the clear in {found:?}", s.backend);
        }
        let stored: cuttle_model::Interruption = s.inst.store.require(&iid).await.unwrap();
        assert_masked(s.backend, "the stored interruption", &serde_json::to_string(&stored).unwrap());
        let (_, lines) = s.inst.store.task_log(&task).await.unwrap();
        let stored_lines: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_masked(s.backend, "the stored log", &stored_lines.join("\n"));
    })
    .await;
}
