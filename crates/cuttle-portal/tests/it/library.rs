//! Library pages on both databases: uploading packages to the built-in feed
//! through the portal's form (streamed, checked, refused beside the file
//! input with nothing stored), listing them, a package's versions, and
//! deleting a version.

use crate::common;

use common::{on_both, Page, Server};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// CRC-32 (IEEE), as zip records it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A real zip archive holding one stored (uncompressed) file.
fn zip_of(name: &str, content: &[u8]) -> Vec<u8> {
    let (crc, size, name_len) = (crc32(content), content.len() as u32, name.len() as u16);
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, bytes: &[u8]| out.extend_from_slice(bytes);
    // Local file header: version 2.0, no flags, stored, 1980-01-01.
    put(&mut out, &0x0403_4b50u32.to_le_bytes());
    for v in [20u16, 0, 0, 0, 0x21] {
        put(&mut out, &v.to_le_bytes());
    }
    for v in [crc, size, size] {
        put(&mut out, &v.to_le_bytes());
    }
    put(&mut out, &name_len.to_le_bytes());
    put(&mut out, &0u16.to_le_bytes());
    put(&mut out, name.as_bytes());
    put(&mut out, content);
    // Central directory: the one entry, its local header at offset 0.
    let directory = out.len() as u32;
    put(&mut out, &0x0201_4b50u32.to_le_bytes());
    for v in [20u16, 20, 0, 0, 0, 0x21] {
        put(&mut out, &v.to_le_bytes());
    }
    for v in [crc, size, size] {
        put(&mut out, &v.to_le_bytes());
    }
    for v in [name_len, 0, 0, 0, 0] {
        put(&mut out, &v.to_le_bytes());
    }
    for v in [0u32, 0] {
        put(&mut out, &v.to_le_bytes());
    }
    put(&mut out, name.as_bytes());
    let directory_size = out.len() as u32 - directory;
    // End of central directory.
    put(&mut out, &0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        put(&mut out, &v.to_le_bytes());
    }
    for v in [directory_size, directory] {
        put(&mut out, &v.to_le_bytes());
    }
    put(&mut out, &0u16.to_le_bytes());
    out
}

fn package(content: &str) -> Vec<u8> {
    zip_of("index.html", content.as_bytes())
}

/// Posts the upload form as a browser does: `parts` in document order.
async fn post_upload(s: &Server, cookie: &str, form: Form) -> Page {
    let resp = s
        .client
        .post(format!("{}/library/packages/upload", s.url))
        .header("Cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    Page {
        status,
        headers,
        body,
    }
}

/// The upload form with a token, the file, and Replace if `replace`.
fn upload_form(csrf: &str, file_name: &str, bytes: Vec<u8>, replace: bool) -> Form {
    let form = Form::new().text("csrf", csrf.to_owned()).part(
        "file",
        Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str("application/zip")
            .unwrap(),
    );
    match replace {
        true => form.text("replace", "true"),
        false => form,
    }
}

async fn feed(s: &Server) -> Vec<Value> {
    let (status, list) = s.api(Method::GET, "/api/packages?take=100", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["Items"].as_array().unwrap().clone()
}

/// Files left in the feed's directory for pushes in progress.
fn leftover_uploads(s: &Server) -> usize {
    let tmp = s.inst.config.data_dir.join("packages").join("tmp");
    std::fs::read_dir(tmp).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn packages_are_uploaded_listed_and_deleted() {
    on_both("portal-library-upload", |s| async move {
        let b = s.sign_in().await;
        let page = b.get("/library").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("No packages yet"));
        assert!(page.body.contains(r#"href="/library/variable-sets""#));
        assert!(page.body.contains(r#"<label for="package-file">"#));
        assert!(page.body.contains(r#"enctype="multipart/form-data""#));
        assert!(page.body.contains(r#"id="upload-package""#));
        let moved = b.get("/library/packages").await;
        assert_eq!(moved.location(), Some("/library"));

        let first = package("<h1>one</h1>");
        let done = post_upload(
            &s,
            &b.cookie,
            upload_form(&b.csrf, "Acme.Web.1.0.0.zip", first.clone(), false),
        )
        .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), Some("/library/packages/Acme.Web"));
        let items = feed(&s).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["PackageId"], "Acme.Web");
        assert_eq!(items[0]["Version"], "1.0.0");
        assert_eq!(items[0]["PackageSizeBytes"], first.len());

        let second = package("<h1>two</h1>");
        let done = post_upload(
            &s,
            &b.cookie,
            upload_form(&b.csrf, "Acme.Web.1.1.0.zip", second, false),
        )
        .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

        // The list: one row per package, its newest version and the count.
        let list = b.get("/library").await;
        assert!(list
            .body
            .contains(r#"<a href="/library/packages/Acme.Web">Acme.Web</a>"#));
        assert!(
            list.body.contains("<td>1.1.0</td><td>2</td>"),
            "{}",
            list.body
        );
        let filtered = b.get("/library?filter=nothing-like-it").await;
        assert!(!filtered.body.contains("/library/packages/Acme.Web"));
        assert!(b
            .get("/library?filter=acme")
            .await
            .body
            .contains("Acme.Web"));

        // The package's page: both versions, unused, so deletable.
        let versions = b.get("/library/packages/Acme.Web").await;
        assert_eq!(versions.status, StatusCode::OK, "{}", versions.body);
        assert!(versions.body.contains("1.0.0") && versions.body.contains("1.1.0"));
        assert!(versions.body.contains("No releases"));
        let delete_1_1 = "/library/packages/Acme.Web/versions/1.1.0/delete";
        assert!(versions.body.contains(&format!(r#"action="{delete_1_1}""#)));
        assert!(versions.body.contains("data-confirm="));
        // Its download link serves the file uploaded.
        let raw = s
            .client
            .get(format!(
                "{}/api/packages/packages-Acme.Web.1.0.0/raw",
                s.url
            ))
            .header("Cookie", &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(raw.bytes().await.unwrap().to_vec(), first);

        // Replace ticked: the same version takes the new content.
        let replacement = package("<h1>one, again</h1>");
        let done = post_upload(
            &s,
            &b.cookie,
            upload_form(&b.csrf, "Acme.Web.1.0.0.zip", replacement.clone(), true),
        )
        .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let items = feed(&s).await;
        let v1 = items.iter().find(|p| p["Version"] == "1.0.0").unwrap();
        assert_eq!(v1["PackageSizeBytes"], replacement.len());

        // Deleting without the token changes nothing.
        let forged = b.post(delete_1_1, &[("csrf", "forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(feed(&s).await.len(), 2);

        let deleted = b.post(delete_1_1, &[("csrf", &b.csrf)]).await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
        assert_eq!(deleted.location(), Some("/library/packages/Acme.Web"));
        assert_eq!(feed(&s).await.len(), 1);
        let last = b
            .post(
                "/library/packages/Acme.Web/versions/1.0.0/delete",
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(last.location(), Some("/library"));
        assert!(feed(&s).await.is_empty());
        let gone = b.get("/library/packages/Acme.Web").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn bad_uploads_are_refused_beside_the_file_input() {
    on_both("portal-library-bad-uploads", |s| async move {
        let b = s.sign_in().await;
        let refused = |file_name: &'static str, bytes: Vec<u8>| {
            let form = upload_form(&b.csrf, file_name, bytes, false);
            let (s, cookie) = (&s, b.cookie.clone());
            async move { post_upload(s, &cookie, form).await }
        };

        // A name that is not `<id>.<version>.<ext>`.
        let bad_name = refused("website.zip", package("x")).await;
        assert_eq!(
            bad_name.status,
            StatusCode::BAD_REQUEST,
            "{}",
            bad_name.body
        );
        assert!(!bad_name.error_under("package-file").is_empty());
        assert!(bad_name.body.contains(r#"aria-invalid="true""#));

        // A format the feed does not take.
        let rar = refused("Acme.Web.1.0.0.rar", b"Rar!\x1a\x07\x00".to_vec()).await;
        assert_eq!(rar.status, StatusCode::BAD_REQUEST, "{}", rar.body);
        assert!(!rar.error_under("package-file").is_empty());

        // A zip that is not one.
        let corrupt = refused("Acme.Web.1.0.0.zip", b"PK\x03\x04 not really".to_vec()).await;
        assert_eq!(corrupt.status, StatusCode::BAD_REQUEST, "{}", corrupt.body);
        assert!(corrupt.error_under("package-file").contains("was refused"));

        // A name carrying markup is shown as text.
        let markup = refused("<img src=x onerror=alert(1)>.zip", package("x")).await;
        assert_eq!(markup.status, StatusCode::BAD_REQUEST, "{}", markup.body);
        assert!(!markup.body.contains("<img src=x"));
        assert!(markup
            .error_under("package-file")
            .contains("&lt;img src=x onerror=alert(1)&gt;.zip"));

        // No file chosen: browsers send an empty part without a name.
        let none = refused("", vec![]).await;
        assert_eq!(none.status, StatusCode::BAD_REQUEST, "{}", none.body);
        assert_eq!(
            none.error_under("package-file"),
            "Choose a package file to upload"
        );

        assert!(feed(&s).await.is_empty());
        assert_eq!(leftover_uploads(&s), 0);

        // The same version twice without Replace: the first stays.
        let first = package("first");
        let ok = refused("Acme.Web.2.0.0.zip", first.clone()).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
        let before = feed(&s).await;
        let again = refused("Acme.Web.2.0.0.zip", package("second, longer")).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        let reason = again.error_under("package-file");
        assert!(reason.contains("already exists"), "{reason}");
        assert!(
            reason.contains("Replace the version if it exists"),
            "{reason}"
        );
        let after = feed(&s).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0]["Hash"], before[0]["Hash"]);
        assert_eq!(after[0]["PackageSizeBytes"], first.len());
        assert_eq!(leftover_uploads(&s), 0);
    })
    .await;
}

#[tokio::test]
async fn uploads_without_the_token_first_are_refused_unread() {
    on_both("portal-library-csrf", |s| async move {
        let b = s.sign_in().await;
        let file = || {
            Part::bytes(package("x"))
                .file_name("Acme.Web.1.0.0.zip")
                .mime_str("application/zip")
                .unwrap()
        };

        let missing = post_upload(&s, &b.cookie, Form::new().part("file", file())).await;
        assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);

        let wrong = post_upload(
            &s,
            &b.cookie,
            Form::new().text("csrf", "forged").part("file", file()),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);

        // The right token, but after the file: the file would be read first.
        let late = post_upload(
            &s,
            &b.cookie,
            Form::new()
                .part("file", file())
                .text("csrf", b.csrf.clone()),
        )
        .await;
        assert_eq!(late.status, StatusCode::FORBIDDEN, "{}", late.body);

        // Not a multipart form at all.
        let plain = b
            .post("/library/packages/upload", &[("csrf", &b.csrf)])
            .await;
        assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{}", plain.body);

        assert!(feed(&s).await.is_empty());
        assert_eq!(leftover_uploads(&s), 0);
    })
    .await;
}

#[tokio::test]
async fn a_version_a_release_deploys_is_kept() {
    on_both("portal-library-used", |s| async move {
        let b = s.sign_in().await;
        for v in ["1.0.0", "1.1.0"] {
            let done = post_upload(
                &s,
                &b.cookie,
                upload_form(&b.csrf, &format!("Acme.Web.{v}.zip"), package(v), false),
            )
            .await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        }
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Web <b>site</b>", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let project_id = project["Id"].as_str().unwrap();
        let (status, reply) = s
            .api(
                Method::PUT,
                &format!("/api/projects/{project_id}/deploymentprocesses"),
                Some(json!({"Version": 0, "Steps": [{"Name": "Deploy web", "Actions": [{
                    "Name": "Deploy web",
                    "ActionType": "Octopus.TentaclePackage",
                    "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}]
                }]}]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        s.create(
            "/api/Spaces-1/releases",
            json!({"ProjectId": project_id, "Version": "5.0.0",
                   "SelectedPackages": [{"ActionName": "Deploy web", "Version": "1.0.0"}]}),
        )
        .await;

        // 1.0.0 names its release and offers no Delete; 1.1.0 does.
        let page = b.get("/library/packages/Acme.Web").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&format!(
            r#"<a href="/projects/{project_id}">Web &lt;b&gt;site&lt;/b&gt;</a> 5.0.0"#
        )), "{}", page.body);
        assert!(!page
            .body
            .contains("/library/packages/Acme.Web/versions/1.0.0/delete"));
        assert!(page
            .body
            .contains("/library/packages/Acme.Web/versions/1.1.0/delete"));

        // Posted anyway (a page from before the release): the service's reason.
        let refused = b
            .post(
                "/library/packages/Acme.Web/versions/1.0.0/delete",
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(refused.body.contains("cannot be deleted"), "{}", refused.body);
        assert!(refused.body.contains(r#"href="/library/packages/Acme.Web""#));
        assert_eq!(feed(&s).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_package_larger_than_a_form_is_accepted() {
    on_both("portal-library-large", |s| async move {
        let b = s.sign_in().await;
        // Beyond axum's default 2 MB body limit, which this route lifts.
        let content: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let big = zip_of("blob.bin", &content);
        let done = post_upload(
            &s,
            &b.cookie,
            upload_form(&b.csrf, "Acme.Big.1.0.0.zip", big.clone(), false),
        )
        .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let items = feed(&s).await;
        assert_eq!(items[0]["PackageSizeBytes"], big.len());
        let list = b.get("/library").await;
        assert!(list.body.contains("3.0 MB"), "{}", list.body);
    })
    .await;
}
