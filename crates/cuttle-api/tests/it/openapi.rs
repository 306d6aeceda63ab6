//! `/api/openapi.json`: served without a key, OpenAPI 3.1, and complete. It
//! is built from the route table, so these tests check the table's two
//! promises from the outside: every described operation is routed (and
//! asks for a key unless it is public), and every link the server hands
//! out, and every route registered in the source, is described.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The fallback's answer for a path no route matches.
const NO_ROUTE: &str = "The resource you requested was not found.";

fn operations(doc: &Value) -> Vec<(String, Method, bool)> {
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                _ => continue,
            };
            let public = op.get("security").is_none();
            ops.push((path.clone(), method, public));
        }
    }
    ops
}

/// A concrete path for a template: the default space, and ids that exist
/// nowhere.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{space}" => "Spaces-1",
            s if s.starts_with('{') => "Nothing-404",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a link matches a template, segment by segment. A link may be a
/// URI template itself: its `{?…}` query expansion is dropped, its `{/id}`
/// is one optional segment, and its `{spaceId}` stands for any one segment.
fn matches(template: &str, link: &str) -> bool {
    let link = link.split("{?").next().unwrap_or(link);
    let link = link.split('?').next().unwrap_or(link);
    match link.split_once("{/") {
        Some((base, _)) => {
            matches_exactly(template, base) || matches_exactly(template, &format!("{base}/x"))
        }
        None => matches_exactly(template, link),
    }
}

fn matches_exactly(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t.starts_with('{') || (!p.starts_with('{') && t.eq_ignore_ascii_case(p)))
}

async fn document(s: &Server) -> Value {
    let r = s
        .call_with(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_served_without_a_key() {
    on_both("openapi_served", |s| async move {
        let doc = document(&s).await;
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Cuttle");
        assert!(doc["components"]["securitySchemes"]["ApiKey"].is_object());
        for schema in ["Project", "Release", "Deployment", "ServerTask", "Error"] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "schema {schema} missing"
            );
        }
        // Every `$ref` resolves to a schema in the document.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "$ref to missing schema {name}"
            );
        }
        // A create links to the created item's operations.
        let links = &doc["paths"]["/api/{space}/projects"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            links["Get"]["operationId"], "get_api_space_projects_id",
            "{links}"
        );
        assert_eq!(links["Get"]["parameters"]["id"], "$response.body#/Id");
        assert_eq!(
            links["Delete"]["parameters"]["space"],
            "$request.path.space"
        );
        // The same as the library builds.
        let built = serde_json::to_value(cuttle_api::openapi_document()).unwrap();
        assert_eq!(built, doc);
    })
    .await;
}

#[tokio::test]
async fn every_described_operation_is_routed_and_keyed_as_described() {
    on_both("openapi_routed", |s| async move {
        let doc = document(&s).await;
        let ops = operations(&doc);
        assert!(ops.len() > 100, "only {} operations", ops.len());
        for (template, method, public) in ops {
            let path = concrete(&template);
            // Streams would wait for a task; a missing one answers at once.
            let body = (method != Method::GET && method != Method::DELETE).then_some("{}");
            let with_key = s.call_with(method.clone(), &path, body, Some(&s.key)).await;
            assert_ne!(
                with_key.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: not routed"
            );
            assert!(
                !(with_key.status == StatusCode::NOT_FOUND
                    && with_key.body["ErrorMessage"] == NO_ROUTE),
                "{method} {path}: no route matched"
            );
            assert!(
                !with_key.status.is_server_error(),
                "{method} {path}: {} {}",
                with_key.status,
                with_key.body
            );
            let without = s.call_with(method.clone(), &path, body, None).await;
            if public {
                assert_ne!(without.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                assert_eq!(
                    without.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} answered without a key: {}",
                    without.body
                );
            }
        }
    })
    .await;
}

/// Collects every string under a `Links` object.
fn links(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "Links" {
                    for link in v.as_object().into_iter().flat_map(|l| l.values()) {
                        if let Some(l) = link.as_str() {
                            out.insert(l.to_owned());
                        }
                    }
                }
                links(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| links(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_link_the_server_hands_out_is_described() {
    on_both("openapi_links", |s| async move {
        let doc = document(&s).await;
        let templates: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        let project = s.project_with_script("Linked", "echo hi", json!({})).await;
        let task = s.release_and_deploy("Linked", "1.0.0").await;
        s.wait_for_task(&task).await;
        s.push_package(
            "Linked.1.0.0.zip",
            b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        )
        .await;
        let pid = project["Id"].as_str().unwrap().to_owned();
        let mut seen = BTreeSet::new();
        for path in [
            "/api".to_owned(),
            "/api/Spaces-1".into(),
            "/api/spaces".into(),
            "/api/users/me".into(),
            "/api/Spaces-1/projects".into(),
            format!("/api/Spaces-1/projects/{pid}"),
            "/api/Spaces-1/releases".into(),
            "/api/Spaces-1/deployments".into(),
            "/api/Spaces-1/tasks".into(),
            format!("/api/Spaces-1/tasks/{task}/details"),
            "/api/Spaces-1/environments".into(),
            "/api/Spaces-1/lifecycles".into(),
            "/api/Spaces-1/projectgroups".into(),
            "/api/Spaces-1/channels".into(),
            "/api/Spaces-1/feeds".into(),
            "/api/Spaces-1/packages".into(),
            "/api/Spaces-1/machinepolicies".into(),
            "/api/Spaces-1/workerpools".into(),
        ] {
            let r = s.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            links(&r.body, &mut seen);
        }
        assert!(seen.len() > 40, "only {} links", seen.len());
        for link in &seen {
            // Links to other sites (none today) would not be routes.
            if !link.starts_with("/api") {
                continue;
            }
            assert!(
                templates.iter().any(|t| matches(t, link)),
                "link {link} is not described"
            );
        }
    })
    .await;
}

/// Routes are added only through the route table, which describes each; a
/// plain `.route(` anywhere else in the API's source would escape it.
#[test]
fn routes_are_registered_only_through_the_route_table() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut offenders = vec![];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("route_table.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains(".route(") || text.contains("axum::routing::") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside the table: {offenders:?}"
    );
}

#[test]
fn the_matching_used_here_is_by_segment() {
    assert!(matches(
        "/api/{space}/projects/{id}",
        "/api/Spaces-1/projects/Projects-1"
    ));
    assert!(matches(
        "/api/{space}/projects/{id}",
        "/api/Spaces-1/projects/Projects-1?x=1"
    ));
    assert!(!matches(
        "/api/{space}/projects/{id}",
        "/api/Spaces-1/projects"
    ));
    assert!(!matches("/api/{space}/projects", "/api/Spaces-1/releases"));
    // URI templates: the query expansion goes, `{/id}` is optional, and a
    // `{spaceId}` in the link is a segment, not the end of it.
    assert!(matches("/api/users", "/api/users{/id}{?skip,take}"));
    assert!(matches("/api/users/{id}", "/api/users{/id}{?skip,take}"));
    assert!(matches(
        "/api/{space}/releases/create/v1",
        "/api/{spaceId}/releases/create/v1"
    ));
    assert!(!matches("/api/", "/api/{spaceId}/releases/create/v1"));
    assert!(!matches(
        "/api/{space}/releases",
        "/api/{spaceId}/releases/create/v1"
    ));
}
