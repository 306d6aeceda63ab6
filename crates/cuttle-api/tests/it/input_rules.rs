//! Input the API refuses the same way on both databases, and the small
//! rules of its envelope: NUL bytes, control and bidi characters in names,
//! the `Authorization` scheme's case, and responses carrying a secret.

use crate::common;

use common::on_both;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn fault_nul_in_a_name_or_filter_is_a_400_on_both_databases() {
    on_both("nul-bytes", |s| async move {
        s.project_with_script("Looked up", "echo hi", json!({})).await;
        let before = s.get("/api/environments").await.body["TotalResults"].clone();
        let lifecycles = s.get("/api/lifecycles").await.body["TotalResults"].clone();
        for (path, body) in [
            ("/api/environments", json!({"Name": "Dev\u{0}elopment"})),
            ("/api/Spaces-1/projectgroups", json!({"Name": "\u{0}"})),
            ("/api/spaces", json!({"Name": "Team\u{0}"})),
        ] {
            let r = s.post(path, body).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{} POST {path}: {}",
                s.backend,
                r.body
            );
            assert!(r.error_text().contains("Name"), "{}: {}", s.backend, r.body);
        }
        for path in [
            "/api/environments?partialName=a%00b",
            "/api/environments?name=%00",
            "/api/environments?ids=Environments-1%00",
            "/api/Spaces-1/projects?partialName=%00",
            "/api/tasks?name=%00",
            "/api/Spaces-1/tasks?project=Projects-1%00",
            "/api/Spaces-1/deployments?projects=%00",
            "/api/Spaces-1/packages?filter=%00",
            "/api/Spaces-1/interruptions?regarding=%00",
            "/api/environments/Environments-1%00",
            "/api/tasks/ServerTasks-1%00",
            "/api/Spaces-1%00/environments",
        ] {
            let r = s.get(path).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{} GET {path}: {}",
                s.backend,
                r.body
            );
            assert!(
                r.error_text().contains("NUL") || r.error_text().contains("control"),
                "{} GET {path}: {}",
                s.backend,
                r.body
            );
        }
        // Names and ids in bodies that are looked up, not stored.
        for (path, body, field) in [
            (
                "/api/Spaces-1/releases/create/v1",
                json!({"ProjectName": "Looked up\u{0}", "ReleaseVersion": "1.0.0"}),
                "ProjectName",
            ),
            (
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Looked up", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev\u{0}"]}),
                "EnvironmentNames[0]",
            ),
            (
                "/api/Spaces-1/tasks",
                json!({"Name": "Health", "Arguments": {"MachineIds": ["Machines-1\u{0}"]}}),
                "Arguments.MachineIds[0]",
            ),
            (
                "/api/lifecycles",
                json!({"Name": "Kept", "Description": "d\u{0}"}),
                "Description",
            ),
        ] {
            let r = s.post(path, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{} POST {path}: {}", s.backend, r.body);
            assert!(
                r.error_text().contains(&format!("{field} contains a NUL")),
                "{} POST {path}: {}",
                s.backend,
                r.body
            );
        }
        let after = s.get("/api/environments").await.body["TotalResults"].clone();
        assert_eq!(
            before, after,
            "{}: a refused request changed something",
            s.backend
        );
        let now = s.get("/api/lifecycles").await.body["TotalResults"].clone();
        assert_eq!(lifecycles, now, "{}", s.backend);
        let releases = s.get("/api/releases").await.body["TotalResults"].clone();
        assert_eq!(releases, 0, "{}", s.backend);
    })
    .await;
}

#[tokio::test]
async fn fault_bidi_and_zero_width_characters_in_names_are_refused() {
    on_both("bidi-names", |s| async move {
        for name in [
            "Prod\u{202E}noitcudorP",
            "Prod\u{200B}uction",
            "Line\nbreak",
            "Tab\there",
            "Iso\u{2066}late",
            "\u{FEFF}Bom",
        ] {
            let r = s.post("/api/environments", json!({"Name": name})).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{} {name:?}: {}", s.backend, r.body);
            assert!(r.error_text().contains("Name"), "{}: {}", s.backend, r.body);
            let project = s
                .post(
                    "/api/projects",
                    json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
                )
                .await;
            assert_eq!(project.status, StatusCode::BAD_REQUEST, "{} {name:?}: {}", s.backend, project.body);
        }
        // Letters of every script still are names.
        for name in ["Produção", "本番", "إنتاج"] {
            s.create("/api/environments", json!({"Name": name})).await;
        }
        assert_eq!(s.get("/api/environments").await.body["TotalResults"], 3);
    })
    .await;
}

#[tokio::test]
async fn fault_bearer_scheme_is_case_insensitive() {
    on_both("bearer-case", |s| async move {
        let client = s.http();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let r = client
                .get(format!("{}/api/users/me", s.url))
                .header("Authorization", format!("{scheme} {}", s.key))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{} scheme {scheme}", s.backend);
        }
        let r = client
            .get(format!("{}/api/users/me", s.url))
            .header("Authorization", format!("Basic {}", s.key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", s.backend);
    })
    .await;
}

#[tokio::test]
async fn fault_a_new_api_key_is_not_cached() {
    on_both("no-store", |s| async move {
        let client = s.http();
        let r = client
            .request(Method::POST, format!("{}/api/users/Users-1/apikeys", s.url))
            .header("X-Octopus-ApiKey", &s.key)
            .json(&json!({"Purpose": "ci"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", s.backend);
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{}",
            s.backend
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["ApiKey"]
            .as_str()
            .is_some_and(|k| k.starts_with("API-")));
    })
    .await;
}

#[tokio::test]
async fn fault_a_skip_near_the_largest_integer_pages_past_the_end() {
    on_both("huge-skip", |s| async move {
        for path in [
            "/api/users?skip=9223372036854775806",
            "/api/Spaces-1/projects?skip=9223372036854775807&take=2147483647",
            "/api/spaces?skip=9223372036854775000",
        ] {
            let r = s.get(path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            assert_eq!(r.body["Items"], json!([]), "{path}");
            assert!(r.body["Links"]["Page.Next"].is_null(), "{path}");
        }
    })
    .await;
}
