//! Every kind of change leaves an audit event carrying the document before
//! and after (Octopus's `ChangeDetails`), not only the generic edits:
//! packages, build information, releases, deployments, users, library
//! variable sets, environment order and space deletion; on SQLite and
//! PostgreSQL.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The smallest zip there is: an end-of-central-directory record alone.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
/// Another empty zip, with a one-byte comment, so its hash differs.
const COMMENTED_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0x";

/// The newest event of `category` about `id`.
async fn latest(s: &Server, id: &str, category: &str) -> Value {
    let page = s
        .get(&format!(
            "/api/events?regarding={id}&eventCategories={category}"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let first = page.body["Items"][0].clone();
    assert!(
        first.is_object(),
        "{}: no {category} event about {id}: {}",
        s.backend,
        page.body
    );
    first
}

fn differences(event: &Value) -> Vec<Value> {
    event["ChangeDetails"]["Differences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn changed(event: &Value, path: &str) -> Option<(Value, Value)> {
    differences(event)
        .into_iter()
        .find(|d| d["Path"] == path)
        .map(|d| (d["Before"].clone(), d["After"].clone()))
}

async fn push(s: &Server, data: &[u8], query: &str) -> Value {
    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name("Acme.Audit.1.0.0.zip");
    let resp = s
        .http()
        .post(format!("{}/api/Spaces-1/packages/raw{query}", s.url))
        .header("X-Octopus-ApiKey", &s.key)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", s.backend);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn every_kind_of_change_carries_the_document_before_and_after() {
    on_both("audit-changes", |s| async move {
        // Packages: pushed, replaced (the hash changes), deleted.
        let pushed = push(&s, EMPTY_ZIP, "").await;
        let id = pushed["Id"].as_str().unwrap().to_owned();
        let created = latest(&s, &id, "Created").await;
        assert_eq!(
            created["ChangeDetails"]["DocumentContext"]["PackageId"],
            "Acme.Audit",
            "{}: {created}",
            s.backend
        );
        push(&s, COMMENTED_ZIP, "?overwriteMode=OverwriteExisting").await;
        let replaced = s.get("/api/Spaces-1/packages?filter=Acme.Audit").await.body;
        let new_id = replaced["Items"][0]["Id"].as_str().unwrap().to_owned();
        let modified = latest(&s, &new_id, "Modified").await;
        let (before, after) = changed(&modified, "/Hash").expect("the hash changed");
        assert_ne!(before, after, "{}: {modified}", s.backend);
        assert!(before.is_string() && after.is_string(), "{modified}");
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/Spaces-1/packages/{new_id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        let deleted = latest(&s, &new_id, "Deleted").await;
        assert_eq!(
            deleted["ChangeDetails"]["DocumentContext"]["Version"],
            "1.0.0"
        );
        let (before, after) = changed(&deleted, "").expect("the whole document went");
        assert_eq!((before["PackageId"].as_str(), after), (Some("Acme.Audit"), Value::Null));

        // Build information: recorded, then overwritten, then deleted.
        let build = |number: &str| {
            json!({"PackageId": "Acme.Audit", "Version": "1.0.0",
                "OctopusBuildInformation": {"BuildNumber": number, "Branch": "main"}})
        };
        let info = s.create("/api/Spaces-1/build-information", build("1")).await;
        let info_id = info["Id"].as_str().unwrap().to_owned();
        assert_eq!(
            latest(&s, &info_id, "Created").await["ChangeDetails"]["DocumentContext"]
                ["BuildNumber"],
            "1"
        );
        s.create(
            "/api/Spaces-1/build-information?overwriteMode=OverwriteExisting",
            build("2"),
        )
        .await;
        let rebuilt = latest(&s, &info_id, "Modified").await;
        assert_eq!(
            changed(&rebuilt, "/BuildNumber"),
            Some((json!("1"), json!("2"))),
            "{}: {rebuilt}",
            s.backend
        );
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/Spaces-1/build-information/{info_id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            latest(&s, &info_id, "Deleted").await["ChangeDetails"]["DocumentContext"]
                ["BuildNumber"],
            "2"
        );

        // A release and its deployment.
        s.project_with_script("Audited", "echo hi", json!({})).await;
        let task = s.release_and_deploy("Audited", "1.0.0").await;
        s.wait_for_task(&task).await;
        let release = s
            .get("/api/projects/Projects-1/releases")
            .await
            .body["Items"][0]
            .clone();
        let release_id = release["Id"].as_str().unwrap();
        let cut = latest(&s, release_id, "Created").await;
        assert_eq!(cut["ChangeDetails"]["DocumentContext"]["Version"], "1.0.0");
        let (before, after) = changed(&cut, "").expect("the whole document came");
        assert_eq!((before, after["Version"].as_str()), (Value::Null, Some("1.0.0")));
        let queued = latest(&s, &task, "DeploymentQueued").await;
        assert_eq!(
            queued["ChangeDetails"]["DocumentContext"]["ReleaseId"],
            release_id,
            "{}: {queued}",
            s.backend
        );

        // A user: created, with no password anywhere in the event.
        const PASSWORD: &str = "a long enough password 1234";
        let user = s
            .create(
                "/api/users",
                json!({"Username": "carol", "DisplayName": "Carol", "Password": PASSWORD, "IsActive": true}),
            )
            .await;
        let made = latest(&s, user["Id"].as_str().unwrap(), "Created").await;
        assert_eq!(made["ChangeDetails"]["DocumentContext"]["Username"], "carol");
        assert!(!made.to_string().contains(PASSWORD), "{made}");

        // A library variable set: created, renamed, deleted.
        let set = s
            .create("/api/libraryvariablesets", json!({"Name": "Shared"}))
            .await;
        let set_id = set["Id"].as_str().unwrap().to_owned();
        latest(&s, &set_id, "Created").await;
        let mut renamed = set.clone();
        renamed["Name"] = json!("Shared settings");
        let r = s
            .send(
                Method::PUT,
                &format!("/api/libraryvariablesets/{set_id}"),
                &renamed,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let edit = latest(&s, &set_id, "Modified").await;
        assert_eq!(
            changed(&edit, "/Name"),
            Some((json!("Shared"), json!("Shared settings"))),
            "{}: {edit}",
            s.backend
        );
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/libraryvariablesets/{set_id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        assert_eq!(
            latest(&s, &set_id, "Deleted").await["ChangeDetails"]["DocumentContext"]["Name"],
            "Shared settings"
        );

        // Environments reordered: each one's place before and after.
        let prod = s.create("/api/environments", json!({"Name": "Prod"})).await;
        let prod_id = prod["Id"].as_str().unwrap().to_owned();
        let dev_id = s.get("/api/environments?name=Dev").await.body["Items"][0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s
            .send(
                Method::PUT,
                "/api/environments/sortorder",
                &json!([prod_id, dev_id]),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        let order = latest(&s, &prod_id, "Modified").await;
        assert_eq!(
            changed(&order, &format!("/{prod_id}/SortOrder")),
            Some((json!(2), json!(1))),
            "{}: {order}",
            s.backend
        );

        // A space: deleted, the document as it was.
        let space = s
            .create(
                "/api/spaces",
                json!({"Name": "Leaving", "SpaceManagersTeams": [], "SpaceManagersTeamMembers": ["Users-1"]}),
            )
            .await;
        let space_id = space["Id"].as_str().unwrap().to_owned();
        let mut stopped = space.clone();
        stopped["TaskQueueStopped"] = json!(true);
        let r = s
            .send(Method::PUT, &format!("/api/spaces/{space_id}"), &stopped)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/spaces/{space_id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        assert_eq!(
            latest(&s, &space_id, "Deleted").await["ChangeDetails"]["DocumentContext"]["Name"],
            "Leaving"
        );

        // Every creation in the log carries the document after only, and
        // every deletion the document before only.
        let all = s.get("/api/events?take=2147483647").await.body;
        let all = all["Items"].as_array().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for e in all {
            let (whole_before, whole_after) = match e["Category"].as_str().unwrap() {
                "Created" | "DeploymentQueued" => (false, true),
                "Deleted" => (true, false),
                _ => continue,
            };
            let (before, after) =
                changed(e, "").unwrap_or_else(|| panic!("{}: no whole document in {e}", s.backend));
            assert_eq!(
                (before.is_object(), after.is_object(), before.is_null(), after.is_null()),
                (whole_before, whole_after, !whole_before, !whole_after),
                "{}: {e}",
                s.backend
            );
            assert_eq!(differences(e).len(), 1, "{}: {e}", s.backend);
            for id in e["RelatedDocumentIds"].as_array().unwrap() {
                let id = id.as_str().unwrap();
                seen.insert(id[..id.rfind('-').unwrap_or(id.len())].to_owned());
            }
        }
        for kind in [
            "packages",
            "BuildInformation",
            "Releases",
            "Deployments",
            "Users",
            "LibraryVariableSets",
            "Spaces",
        ] {
            assert!(seen.contains(kind), "{}: no creation or deletion of {kind}: {seen:?}", s.backend);
        }
    })
    .await;
}
