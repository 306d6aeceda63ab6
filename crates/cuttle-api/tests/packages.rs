//! The built-in package feed over HTTP, on both databases: pushing each
//! archive format (real archives, built here), listing in SemVer order,
//! downloading, deleting, the overwrite modes, every kind of bad package
//! (refused, with nothing left on disk), an upload cut off half way, and the
//! server's memory while a large package streams in.

#[path = "it/common/mod.rs"]
mod common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

// ---- archives, built by hand ----

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// A zip archive with stored (uncompressed) entries.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let stored: Vec<ZipEntry<'_>> = entries
        .iter()
        .map(|(name, data)| ZipEntry {
            name,
            method: 0,
            data,
            crc: crc32(data),
            size: data.len() as u32,
        })
        .collect();
    zip_raw(&stored)
}

/// One entry of a zip made by hand: `data` as stored, compressed by `method`
/// (0 stored, 8 deflated) from `size` bytes whose CRC-32 is `crc`.
struct ZipEntry<'a> {
    name: &'a str,
    method: u16,
    data: &'a [u8],
    crc: u32,
    size: u32,
}

fn zip_raw(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    let mut out = vec![];
    let mut central = vec![];
    for entry in entries {
        let (name, data) = (entry.name, entry.data);
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&entry.method.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&entry.crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&entry.size.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0u8; 6]); // comment, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A ustar header for a regular file of `size` bytes.
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![];
    for (name, data) in entries {
        out.extend_from_slice(&tar_header(name, data.len() as u64));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// `tar --format=ustar -cf - hello.txt | bzip2 -9` of a file holding
/// "hello\n" (there is no bzip2 encoder among the dependencies).
const TAR_BZ2_HEX: &str = "425a6839314159265359f8e9fb7600007d7b90c910004440017f80008062449e400400000820007412926d4000d3d40d36a092532640c800d0287cd73dc8410ad2122f7cd8a4736820432295034dc945811abd208470668aa916b8c6a5695b5409783f3e9306189f12a28ef47d764440fc5dc914e14243e3a7edd8";

fn tar_bz2() -> Vec<u8> {
    (0..TAR_BZ2_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&TAR_BZ2_HEX[i..i + 2], 16).unwrap())
        .collect()
}

fn nupkg(id: &str, version: &str) -> Vec<u8> {
    let nuspec = format!(
        "<?xml version=\"1.0\"?><package><metadata><id>{id}</id><version>{version}</version><authors>t</authors><description>d</description></metadata></package>"
    );
    zip_of(&[
        (&format!("{id}.nuspec"), nuspec.as_bytes()),
        ("lib/readme.txt", b"hi"),
    ])
}

fn web_zip(text: &str) -> Vec<u8> {
    zip_of(&[("index.html", text.as_bytes()), ("app/config.json", b"{}")])
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

// ---- talking to the feed ----

const BOUNDARY: &str = "cuttle-test-boundary-7d1f";

fn multipart(file_name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"fileToUpload\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_raw(s: &Server, query: &str, content_type: &str, body: Vec<u8>) -> common::Reply {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/Spaces-1/packages/raw{query}", s.url))
        .header("X-Octopus-ApiKey", &s.key)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    common::Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

async fn push_with(s: &Server, file_name: &str, data: &[u8], query: &str) -> common::Reply {
    post_raw(
        s,
        query,
        &format!("multipart/form-data; boundary={BOUNDARY}"),
        multipart(file_name, data),
    )
    .await
}

/// Pushes a package that must be accepted; returns the resource.
async fn push(s: &Server, file_name: &str, data: &[u8]) -> Value {
    let r = push_with(s, file_name, data, "").await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}: push {file_name}: {}",
        s.backend,
        r.body
    );
    r.body
}

async fn download(s: &Server, id: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/Spaces-1/packages/{id}/raw", s.url))
        .header("X-Octopus-ApiKey", &s.key)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let disposition = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, disposition, resp.bytes().await.unwrap().to_vec())
}

fn packages_dir(s: &Server) -> PathBuf {
    s.inst.config.data_dir.join("packages")
}

/// The names of the files in a directory (none if it does not exist).
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn versions_of(page: &Value) -> Vec<String> {
    page["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["PackageId"].as_str().unwrap(),
                p["Version"].as_str().unwrap()
            )
        })
        .collect()
}

// ---- the scenarios ----

/// The memory test measures this whole process, where the other tests run
/// their servers too; it runs alone, the others side by side.
static MEMORY_MEASURED: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn every_format_pushes_lists_downloads_and_deletes() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-formats", |s| async move {
        let zip = web_zip("<h1>hello</h1>");
        let p = push(&s, "Acme.Web.1.2.3-beta.1.zip", &zip).await;
        assert_eq!(
            p["Id"], "packages-Acme.Web.1.2.3-beta.1",
            "{}: {p}",
            s.backend
        );
        assert_eq!(p["PackageId"], "Acme.Web");
        assert_eq!(p["Version"], "1.2.3-beta.1");
        assert_eq!(p["FeedId"], "feeds-builtin");
        assert_eq!(p["FileExtension"], ".zip");
        assert_eq!(p["Hash"], sha256(&zip));
        assert_eq!(p["PackageSizeBytes"], zip.len() as i64);
        assert!(
            p["Published"].as_str().is_some_and(|t| t.contains('T')),
            "{p}"
        );
        for (name, link) in p["Links"].as_object().unwrap() {
            let r = s.get(link.as_str().unwrap()).await;
            assert_eq!(r.status, StatusCode::OK, "{}: link {name}", s.backend);
        }

        let tar = tar_of(&[
            ("hello.txt", b"hello\n"),
            ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ]);
        let formats: Vec<(&str, Vec<u8>, &str)> = vec![
            ("Acme.Api.2.0.0.tar.gz", gzip(&tar), ".tar.gz"),
            ("Acme.Cli.2.0.0.tgz", gzip(&tar), ".tgz"),
            ("Acme.Lib.1.0.0.nupkg", nupkg("Acme.Lib", "1.0.0"), ".nupkg"),
            ("Acme.Db.3.1.tar", tar.clone(), ".tar"),
            ("Acme.Bz.1.0.0.0.tar.bz2", tar_bz2(), ".tar.bz2"),
            // An empty zip (only its end record, 22 bytes) is a package.
            ("Acme.Empty.0.0.1.zip", zip_of(&[]), ".zip"),
            // So is an empty tar (its two zero blocks).
            ("Acme.EmptyTar.0.0.1.tar", vec![0u8; 1024], ".tar"),
        ];
        for (name, data, ext) in &formats {
            let p = push(&s, name, data).await;
            assert_eq!(p["FileExtension"], *ext, "{}: {name}", s.backend);
            assert_eq!(p["Hash"], sha256(data), "{name}");
            let (status, disposition, bytes) = download(&s, p["Id"].as_str().unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(&bytes, data, "{}: {name} downloads as pushed", s.backend);
            assert_eq!(
                disposition.as_deref(),
                Some(format!("attachment; filename=\"{name}\"").as_str())
            );
        }
        let all = s.get("/api/Spaces-1/packages?take=100").await.body;
        assert_eq!(all["TotalResults"], 8, "{}: {all}", s.backend);
        assert_eq!(all["ItemType"], "Package");

        // The same routes answer without the space, for the default space.
        let got = s.get("/api/packages/packages-Acme.Web.1.2.3-beta.1").await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(got.body["Hash"], sha256(&zip));
        let (status, _, bytes) = download(&s, "packages-Acme.Web.1.2.3-beta.1").await;
        assert_eq!((status, bytes), (StatusCode::OK, zip.clone()));
        let file = packages_dir(&s).join(sha256(&zip));
        assert!(
            file.is_file(),
            "stored by its content at {}",
            file.display()
        );

        let r = s
            .call_with(
                Method::DELETE,
                "/api/Spaces-1/packages/packages-Acme.Web.1.2.3-beta.1",
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "{}: {}",
            s.backend,
            r.body
        );
        let gone = s
            .get("/api/Spaces-1/packages/packages-Acme.Web.1.2.3-beta.1")
            .await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert!(gone.error_text().contains("packages-Acme.Web.1.2.3-beta.1"));
        assert!(!file.exists(), "the file of a deleted package is removed");
        let (status, _, _) = download(&s, "packages-Acme.Web.1.2.3-beta.1").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let again = s
            .call_with(
                Method::DELETE,
                "/api/Spaces-1/packages/packages-Acme.Web.1.2.3-beta.1",
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);

        // The same content under two names is stored once, and stays until
        // neither uses it.
        let shared = web_zip("shared");
        let a = push(&s, "Twin.A.1.0.0.zip", &shared).await;
        let b = push(&s, "Twin.B.1.0.0.zip", &shared).await;
        let file = packages_dir(&s).join(sha256(&shared));
        for (p, still_there) in [(a, true), (b, false)] {
            let path = format!("/api/Spaces-1/packages/{}", p["Id"].as_str().unwrap());
            let r = s.call_with(Method::DELETE, &path, None, Some(&s.key)).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT);
            assert_eq!(file.exists(), still_there, "{}", p["Id"]);
        }

        let unauthenticated = s
            .call_with(Method::GET, "/api/Spaces-1/packages", None, None)
            .await;
        assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn lists_filter_and_order_by_semver() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-order", |s| async move {
        for (name, text) in [
            ("Acme.Web.1.9.0.zip", "a"),
            ("Other.Thing.1.0.0.zip", "b"),
            ("Acme.Web.1.10.0.zip", "c"),
            ("Acme.Web.1.9.0-beta.zip", "d"),
            ("Acme.Web.1.9.0-alpha.2.zip", "e"),
            ("Acme.Web.1.9.0-alpha.10.zip", "f"),
        ] {
            push(&s, name, &web_zip(text)).await;
        }
        let all = s.get("/api/Spaces-1/packages").await.body;
        assert_eq!(
            versions_of(&all),
            [
                "Acme.Web 1.10.0",
                "Acme.Web 1.9.0",
                "Acme.Web 1.9.0-beta",
                "Acme.Web 1.9.0-alpha.10",
                "Acme.Web 1.9.0-alpha.2",
                "Other.Thing 1.0.0"
            ],
            "{}",
            s.backend
        );
        let latest = s.get("/api/Spaces-1/packages?latest=true").await.body;
        assert_eq!(
            versions_of(&latest),
            ["Acme.Web 1.10.0", "Other.Thing 1.0.0"]
        );
        assert_eq!(latest["TotalResults"], 2);
        let filtered = s.get("/api/Spaces-1/packages?filter=WEB").await.body;
        assert_eq!(filtered["TotalResults"], 5, "{filtered}");
        let filtered = s
            .get("/api/Spaces-1/packages?filter=thing&latest=True")
            .await
            .body;
        assert_eq!(versions_of(&filtered), ["Other.Thing 1.0.0"]);
        let none = s.get("/api/Spaces-1/packages?filter=50%25_").await.body;
        assert_eq!(none["TotalResults"], 0, "LIKE wildcards are literal");
        let exact = s
            .get("/api/Spaces-1/packages?nuGetPackageId=acme.web&take=2")
            .await
            .body;
        assert_eq!(exact["TotalResults"], 5);
        assert_eq!(versions_of(&exact), ["Acme.Web 1.10.0", "Acme.Web 1.9.0"]);
        let page = s.get("/api/Spaces-1/packages?skip=2&take=2").await.body;
        assert_eq!(page["TotalResults"], 6);
        assert_eq!(
            versions_of(&page),
            ["Acme.Web 1.9.0-beta", "Acme.Web 1.9.0-alpha.10"]
        );
        let ids = s
            .get("/api/Spaces-1/packages?ids=packages-Other.Thing.1.0.0,packages-nope")
            .await
            .body;
        assert_eq!(versions_of(&ids), ["Other.Thing 1.0.0"]);

        // The feed's version search, as Octopus clients use it.
        let v = s
            .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=Acme.Web&take=3")
            .await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(
            versions_of(&v.body),
            ["Acme.Web 1.10.0", "Acme.Web 1.9.0", "Acme.Web 1.9.0-beta"]
        );
        assert!(v.body["Items"][0]["SizeBytes"].as_i64().unwrap() > 0);
        let missing = s
            .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions")
            .await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        let other_feed = s
            .get("/api/Spaces-1/feeds/feeds-other/packages/versions?packageId=Acme.Web")
            .await;
        assert_eq!(other_feed.status, StatusCode::NOT_FOUND);

        // Another space has a feed of its own.
        let space = s.create("/api/spaces", json!({"Name": "Second"})).await;
        let other = format!("/api/{}/packages", space["Id"].as_str().unwrap());
        assert_eq!(s.get(&other).await.body["TotalResults"], 0);
        let cross = format!("{other}/packages-Other.Thing.1.0.0");
        assert_eq!(s.get(&cross).await.status, StatusCode::NOT_FOUND);
    })
    .await;
}

/// Pushes a package that must be refused with 400, and checks that nothing
/// was kept: no package, no file, nothing in the upload directory.
async fn refused(s: &Server, file_name: &str, data: &[u8], expect: &str) {
    let r = push_with(s, file_name, data, "").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}: {file_name} should be refused: {}",
        s.backend,
        r.body
    );
    let text = r.error_text();
    assert!(
        text.to_lowercase().contains(&expect.to_lowercase()),
        "{}: {file_name}: expected '{expect}' in: {text}",
        s.backend
    );
    let all = s.get("/api/Spaces-1/packages").await.body;
    assert_eq!(all["TotalResults"], 0, "{file_name}");
    assert_eq!(
        files_in(&packages_dir(s)),
        Vec::<String>::new(),
        "{file_name}"
    );
    assert_eq!(
        files_in(&packages_dir(s).join("tmp")),
        Vec::<String>::new(),
        "{file_name}: the upload directory is left empty"
    );
}

#[tokio::test]
async fn bad_packages_are_refused_and_leave_nothing_behind() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-bad", |s| async move {
        let zip = web_zip("x");
        let tar = tar_of(&[("hello.txt", b"hello\n")]);
        let tgz = gzip(&tar);
        let bz2 = tar_bz2();

        // Not what the extension says.
        refused(&s, "Acme.1.0.0.zip", &tgz, "is not a zip archive").await;
        refused(&s, "Acme.1.0.0.nupkg", &tar, "zip archive").await;
        refused(&s, "Acme.1.0.0.tar.gz", &zip, "gzip").await;
        refused(&s, "Acme.1.0.0.tgz", &bz2, "gzip").await;
        refused(&s, "Acme.1.0.0.tar.bz2", &tgz, "bzip2").await;
        refused(&s, "Acme.1.0.0.tar", &zip, "tar archive").await;
        refused(&s, "Acme.1.0.0.tar", b"", "tar archive").await;
        refused(&s, "Acme.1.0.0.zip", b"", "zip archive").await;
        // A gzip stream that holds something other than a tar archive.
        refused(&s, "Acme.1.0.0.tar.gz", &gzip(&zip), "tar").await;

        // Truncated.
        refused(&s, "Acme.1.0.0.zip", &zip[..zip.len() - 10], "truncated").await;
        refused(&s, "Acme.1.0.0.zip", &zip[..zip.len() / 2], "truncated").await;
        refused(&s, "Acme.1.0.0.tar.gz", &tgz[..tgz.len() - 4], "truncated").await;
        refused(&s, "Acme.1.0.0.tar.gz", &tgz[..tgz.len() / 2], "truncated").await;
        refused(&s, "Acme.1.0.0.tar.bz2", &bz2[..bz2.len() - 3], "truncated").await;
        refused(&s, "Acme.1.0.0.tar", &tar[..tar.len() - 1024], "truncated").await;
        refused(&s, "Acme.1.0.0.tar", &tar[..700], "truncated").await;
        // A damaged gzip stream fails its checksum.
        let mut damaged = tgz.clone();
        let n = damaged.len();
        damaged[n - 6] ^= 0xff;
        refused(&s, "Acme.1.0.0.tar.gz", &damaged, "damaged").await;

        // Names.
        refused(&s, "Acme.Web.zip", &zip, "has no version").await;
        refused(&s, "Acme.Web.1.2.x.zip", &zip, "is not a valid version").await;
        refused(&s, "Acme.Web.1.2.3-beta..1.zip", &zip, "is not a valid version").await;
        refused(&s, "Acme Web.1.0.0.zip", &zip, "not a valid package id").await;
        refused(&s, "Acme.Web.1.0.0.rar", &zip, ".tar.gz").await;

        // Not a multipart upload, or one with no file in it.
        let r = post_raw(&s, "", "application/octet-stream", zip.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("multipart/form-data"), "{}", r.error_text());
        let no_file = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{BOUNDARY}--\r\n"
        );
        let r = post_raw(
            &s,
            "",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            no_file.into_bytes(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("no file"), "{}", r.error_text());
        // A body that ends inside the file part.
        let mut cut = multipart("Acme.1.0.0.zip", &zip);
        cut.truncate(cut.len() - 40);
        let r = post_raw(
            &s,
            "",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            cut,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(files_in(&packages_dir(&s).join("tmp")), Vec::<String>::new());
        let r = push_with(&s, "Acme.1.0.0.zip", &zip, "?overwriteMode=Sometimes").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("overwriteMode"));

        assert_eq!(s.get("/api/Spaces-1/packages").await.body["TotalResults"], 0);
    })
    .await;
}

/// A `.tar.gz` holding one file of `mib` MiB of zeros: the tar's header,
/// its data and its end, as concatenated gzip members (which a gzip reader
/// reads as one stream), so building it costs compressing one MiB.
fn tar_gz_of_zeros(mib: u64) -> Vec<u8> {
    let member = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[0u8; 1 << 20]).unwrap();
        gz.finish().unwrap()
    };
    let mut out = gzip(&tar_header("zeros.bin", mib << 20));
    for _ in 0..mib {
        out.extend_from_slice(&member);
    }
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}

/// A `.zip` holding one deflated file of `mib` MiB of zeros: one MiB's
/// deflate segment (flushed whole, so it stands alone) repeated, then an
/// empty final block, so building it costs compressing one MiB.
fn zip_of_zeros(mib: u32) -> Vec<u8> {
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut segment = Vec::with_capacity(8 << 10);
    deflate
        .compress_vec(&[0u8; 1 << 20], &mut segment, flate2::FlushCompress::Full)
        .unwrap();
    let mut stream = segment.repeat(mib as usize);
    // A final block of the fixed code holding only its end.
    stream.extend_from_slice(&[0x03, 0x00]);
    let mut one = flate2::Crc::new();
    one.update(&[0u8; 1 << 20]);
    let mut crc = flate2::Crc::new();
    for _ in 0..mib {
        crc.combine(&one);
    }
    zip_raw(&[ZipEntry {
        name: "zeros.bin",
        method: 8,
        data: &stream,
        crc: crc.sum(),
        size: mib << 20,
    }])
}

#[tokio::test]
async fn fault_a_zip_bomb_is_refused_and_leaves_nothing_behind() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-zip-bomb", |s| async move {
        // About 2 MB that says, truly, that it inflates to 2 GiB.
        let bomb = zip_of_zeros(2047);
        assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
        refused(&s, "Acme.1.0.0.zip", &bomb, "decompression bomb").await;
        refused(&s, "Acme.1.0.0.nupkg", &bomb, "decompression bomb").await;
        let small = zip_of_zeros(4);
        let pushed = push(&s, "Acme.1.0.0.zip", &small).await;
        assert_eq!(pushed["Version"], "1.0.0", "{pushed}");
    })
    .await;
}

#[tokio::test]
async fn fault_a_tar_gz_bomb_is_refused_and_leaves_nothing_behind() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-bomb", |s| async move {
        // About 2 MB that inflates to 2 GiB: far past the 200:1 ratio an
        // agent's extraction allows, so it would never deploy.
        let bomb = tar_gz_of_zeros(2048);
        assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
        refused(&s, "Acme.1.0.0.tar.gz", &bomb, "decompression bomb").await;
        // The same shape within the limits is a package like any other.
        let small = tar_gz_of_zeros(4);
        let pushed = push(&s, "Acme.1.0.0.tar.gz", &small).await;
        assert_eq!(pushed["Version"], "1.0.0", "{pushed}");
    })
    .await;
}

#[tokio::test]
async fn overwrite_modes_decide_what_happens_to_an_existing_version() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-overwrite", |s| async move {
        let (a, b, c, d) = (web_zip("a"), web_zip("b"), web_zip("c"), web_zip("d"));
        let dir = packages_dir(&s);
        push(&s, "Acme.Web.1.0.0.zip", &a).await;

        let r = push_with(&s, "Acme.Web.1.0.0.zip", &b, "").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}: {}", s.backend, r.body);
        // Octopus's words, which clients look for, and then Cuttle's.
        assert_eq!(
            r.body["ErrorMessage"], "A package with the same name and version already exists.",
            "{}",
            r.body
        );
        let why = r.body["Errors"][0].as_str().unwrap_or("");
        assert!(
            why.contains("Acme.Web 1.0.0") && why.contains("OverwriteExisting"),
            "{}",
            r.body
        );
        let r = push_with(&s, "Acme.Web.1.0.0.zip", &b, "?overwriteMode=FailIfExists").await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        // The same version by precedence, and the same id in another case.
        let r = push_with(&s, "acme.web.1.0.zip", &b, "").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(
            !dir.join(sha256(&b)).exists(),
            "a refused push keeps no file"
        );

        let r = push_with(
            &s,
            "Acme.Web.1.0.0.zip",
            &b,
            "?overwriteMode=IgnoreIfExists",
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["Hash"], sha256(&a), "the existing package is kept");
        assert!(!dir.join(sha256(&b)).exists());

        let r = push_with(
            &s,
            "Acme.Web.1.0.0.zip",
            &c,
            "?overwriteMode=OverwriteExisting",
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["Hash"], sha256(&c));
        assert!(dir.join(sha256(&c)).is_file());
        assert!(
            !dir.join(sha256(&a)).exists(),
            "the replaced file is removed"
        );
        let (_, _, bytes) = download(&s, "packages-Acme.Web.1.0.0").await;
        assert_eq!(bytes, c);

        // The older flag.
        let r = push_with(&s, "Acme.Web.1.0.0.zip", &d, "?replace=true").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["Hash"], sha256(&d));
        let r = push_with(&s, "Acme.Web.1.0.0.zip", &a, "?replace=false").await;
        assert_eq!(r.status, StatusCode::CONFLICT);

        let all = s.get("/api/Spaces-1/packages").await.body;
        assert_eq!(all["TotalResults"], 1, "{all}");
        assert_eq!(files_in(&dir), vec![sha256(&d)]);
        assert_eq!(files_in(&dir.join("tmp")), Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_package_a_release_deploys_cannot_be_deleted() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-in-use", |s| async move {
        push(&s, "Acme.Web.1.0.0.zip", &web_zip("one")).await;
        push(&s, "Acme.Web.1.0.1.zip", &web_zip("two")).await;
        release_5_deploying_web_1_0_0(&s).await;

        let r = s
            .call_with(
                Method::DELETE,
                "/api/Spaces-1/packages/packages-Acme.Web.1.0.0",
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}: {}", s.backend, r.body);
        assert!(
            r.error_text().contains("5.0.0 of Web"),
            "{}",
            r.error_text()
        );
        let kept = s
            .get("/api/Spaces-1/packages/packages-Acme.Web.1.0.0")
            .await;
        assert_eq!(kept.status, StatusCode::OK);

        // The version no release picked can go.
        let r = s
            .call_with(
                Method::DELETE,
                "/api/Spaces-1/packages/packages-Acme.Web.1.0.1",
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    })
    .await;
}

/// A project Web whose step uses Acme.Web, and its release 5.0.0, which
/// deploys version 1.0.0.
async fn release_5_deploying_web_1_0_0(s: &Server) {
    let project = s
        .create(
            "/api/projects",
            json!({"Name": "Web", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        )
        .await;
    let project_id = project["Id"].as_str().unwrap();
    let process = json!({"Version": 0, "Steps": [{"Name": "Deploy web", "Actions": [{
        "Name": "Deploy web",
        "ActionType": "Octopus.TentaclePackage",
        "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}]
    }]}]});
    let r = s
        .send(
            Method::PUT,
            &format!("/api/projects/{project_id}/deploymentprocesses"),
            &process,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
    s.create(
        "/api/Spaces-1/releases",
        json!({"ProjectId": project_id, "Version": "5.0.0",
               "SelectedPackages": [{"ActionName": "Deploy web", "Version": "1.0.0"}]}),
    )
    .await;
}

/// The upload directory's files, waited on until `done` holds (bounded).
async fn wait_for_uploads(dir: &std::path::Path, done: impl Fn(usize) -> bool) -> usize {
    for _ in 0..250 {
        let n = files_in(dir).len();
        if done(n) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    files_in(dir).len()
}

/// Starts a push over a raw connection, announcing `total` bytes of
/// package; returns the connection with the part's headers sent.
async fn start_raw_push(s: &Server, file_name: &str, total: u64) -> tokio::net::TcpStream {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"fileToUpload\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail_len = format!("\r\n--{BOUNDARY}--\r\n").len() as u64;
    let length = head.len() as u64 + total + tail_len;
    let addr = s.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/Spaces-1/packages/raw HTTP/1.1\r\nHost: {addr}\r\nX-Octopus-ApiKey: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{head}",
        s.key
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_nothing_behind() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-cut", |s| async move {
        let tmp = packages_dir(&s).join("tmp");
        let mut conn = start_raw_push(&s, "Acme.Cut.1.0.0.zip", 10_000_000).await;
        conn.write_all(b"PK\x03\x04").await.unwrap();
        conn.write_all(&vec![7u8; 256 * 1024]).await.unwrap();
        conn.flush().await.unwrap();
        let started = wait_for_uploads(&tmp, |n| n == 1).await;
        assert_eq!(started, 1, "{}: the upload is being written", s.backend);
        drop(conn);
        let left = wait_for_uploads(&tmp, |n| n == 0).await;
        assert_eq!(left, 0, "{}: the partial upload is removed", s.backend);
        assert_eq!(
            s.get("/api/Spaces-1/packages").await.body["TotalResults"],
            0
        );
    })
    .await;
}

/// Peak resident memory of this process (the server runs in it), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A large package streams to disk: the server's memory does not grow with
/// it. `CUTTLE_TEST_PACKAGE_MB` sets the size (1024 to try a 1 GB package).
#[tokio::test]
async fn a_large_package_streams_to_disk() {
    let mb: u64 = std::env::var("CUTTLE_TEST_PACKAGE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let _alone = MEMORY_MEASURED.write().await;
    on_both("pkg-large", |s| async move {
        // The database plays no part in streaming; once is enough.
        if s.backend == "sqlite" {
            large_push(&s, mb).await;
        }
    })
    .await;
}

async fn large_push(s: &Server, mb: u64) {
    // The package: one tar entry of `mb` megabytes, then the end blocks.
    let size = mb * 1024 * 1024;
    let total = 512 + size + 1024;
    let before = resident_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut conn = start_raw_push(s, "Acme.Big.1.0.0.tar", total).await;
    let mut hasher = Sha256::new();
    let header = tar_header("big.bin", size);
    hasher.update(header);
    conn.write_all(&header).await.unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..mb {
        hasher.update(&chunk);
        conn.write_all(&chunk).await.unwrap();
    }
    let end = [0u8; 1024];
    hasher.update(end);
    conn.write_all(&end).await.unwrap();
    conn.write_all(format!("\r\n--{BOUNDARY}--\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = vec![];
    tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut response)
        .await
        .ok();
    let response = String::from_utf8_lossy(&response);
    sampling.abort();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        response.contains(&format!("{:x}", hasher.finalize())),
        "{response}"
    );
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "pushed {mb} MB; the process grew by {} MB",
        grown / (1024 * 1024)
    );
    assert!(
        grown < 48 * 1024 * 1024,
        "pushing {mb} MB grew the process by {} MB",
        grown / (1024 * 1024)
    );
}

/// Feed retention removes old versions no release deploys, and only those.
#[tokio::test]
async fn retention_removes_old_unused_versions_only() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-retention", |s| async move {
        for (v, text) in [("1.0.0", "one"), ("1.0.1", "two"), ("1.0.2", "three")] {
            push(&s, &format!("Acme.Web.{v}.zip"), &web_zip(text)).await;
        }
        release_5_deploying_web_1_0_0(&s).await;

        // Nothing is old enough yet.
        let kept =
            cuttle_service::package_retention::apply(&s.inst, Duration::from_secs(3600)).await;
        assert!(kept.unwrap().is_empty());
        // Everything is: only what the release deploys stays.
        let removed = cuttle_service::package_retention::apply(&s.inst, Duration::ZERO)
            .await
            .unwrap();
        let mut gone: Vec<&str> = removed.iter().map(|p| p.version.as_str()).collect();
        gone.sort();
        assert_eq!(gone, ["1.0.1", "1.0.2"], "{}", s.backend);
        let left = s.get("/api/Spaces-1/packages").await.body;
        assert_eq!(versions_of(&left), ["Acme.Web 1.0.0"], "{}", s.backend);
        assert_eq!(files_in(&packages_dir(&s)).len(), 1, "{}", s.backend);
    })
    .await;
}

/// The fields of an Octopus package resource that every package view has.
fn assert_octopus_package(p: &Value, package_id: &str, version: &str, extension: &str) {
    assert_eq!(p["PackageId"], package_id, "{p}");
    assert_eq!(p["Version"], version, "{p}");
    // Without a title of its own a package is titled by its id.
    assert_eq!(p["Title"], package_id, "{p}");
    assert_eq!(p["FileExtension"], extension, "{p}");
    assert_eq!(p["FeedId"], "feeds-builtin", "{p}");
    assert_eq!(p["NuGetPackageId"], package_id, "{p}");
    assert_eq!(p["NuGetFeedId"], "feeds-builtin", "{p}");
    assert!(p["Hash"].as_str().is_some_and(|h| h.len() == 64), "{p}");
    assert!(p["PackageSizeBytes"].as_i64().is_some_and(|n| n > 0), "{p}");
    assert!(p["Published"].is_string(), "{p}");
    for field in [
        "Summary",
        "Description",
        "ReleaseNotes",
        "PackageVersionBuildInformation",
    ] {
        assert!(p.get(field).is_some(), "{field} is missing: {p}");
    }
    assert!(p["Links"]["Self"].is_string(), "{p}");
}

#[tokio::test]
async fn package_resources_carry_octopus_fields_and_their_build_information() {
    let _side_by_side = MEMORY_MEASURED.read().await;
    on_both("pkg-octopus-fields", |s| async move {
        let tar = gzip(&tar_of(&[("hello.txt", b"hello\n")]));
        let pushed = push(&s, "Acme.Api.2.0.0.tar.gz", &tar).await;
        assert_octopus_package(&pushed, "Acme.Api", "2.0.0", ".tar.gz");
        assert!(
            pushed["PackageVersionBuildInformation"].is_null(),
            "{pushed}"
        );
        let nu = push(&s, "Acme.Lib.1.0.0.nupkg", &nupkg("Acme.Lib", "1.0.0")).await;
        assert_octopus_package(&nu, "Acme.Lib", "1.0.0", ".nupkg");

        // Build information pushed after the package, for the same id in
        // another case and the same version spelled shorter.
        let build = json!({"PackageId": "acme.api", "Version": "2.0", "OctopusBuildInformation": {
            "BuildNumber": "288", "VcsType": "Git", "VcsRoot": "https://github.com/acme/api",
            "VcsCommitNumber": "314cf2c3", "Branch": "main",
            "Commits": [{"Id": "314cf2c3", "Comment": "Fix it"}]}});
        let recorded = s.create("/api/Spaces-1/build-information", build).await;

        let id = pushed["Id"].as_str().unwrap();
        let item = s.get(&format!("/api/Spaces-1/packages/{id}")).await.body;
        assert_octopus_package(&item, "Acme.Api", "2.0.0", ".tar.gz");
        let shown = &item["PackageVersionBuildInformation"];
        assert_eq!(shown["Id"], recorded["Id"], "{item}");
        assert_eq!(shown["VcsCommitNumber"], "314cf2c3", "{item}");
        assert_eq!(shown["BuildNumber"], "288", "{item}");
        assert_eq!(shown["Commits"][0]["Comment"], "Fix it", "{item}");
        let link = shown["Links"]["Self"].as_str().unwrap();
        assert_eq!(s.get(link).await.status, StatusCode::OK);

        let listed = s.get("/api/Spaces-1/packages?filter=Acme").await.body;
        let items = listed["Items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{listed}");
        for p in items {
            let with_build = p["PackageId"] == "Acme.Api";
            assert_eq!(
                p["PackageVersionBuildInformation"].is_object(),
                with_build,
                "{p}"
            );
        }
        assert_octopus_package(&items[0], "Acme.Api", "2.0.0", ".tar.gz");

        let versions = s
            .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=Acme.Api")
            .await
            .body;
        let v = &versions["Items"][0];
        assert_octopus_package(v, "Acme.Api", "2.0.0", ".tar.gz");
        assert_eq!(v["SizeBytes"], v["PackageSizeBytes"], "{v}");
        assert_eq!(v["PackageVersionBuildInformation"]["BuildNumber"], "288");

        // Another version of the package has no build information.
        let next = push(&s, "Acme.Api.2.0.1.tar.gz", &tar).await;
        assert!(next["PackageVersionBuildInformation"].is_null(), "{next}");

        // Build information that came first shows on the push's answer.
        s.create(
            "/api/Spaces-1/build-information",
            json!({"PackageId": "Acme.Web", "Version": "3.0.0",
                   "OctopusBuildInformation": {"BuildNumber": "7"}}),
        )
        .await;
        let web = push(&s, "Acme.Web.3.0.0.zip", &web_zip("w")).await;
        assert_octopus_package(&web, "Acme.Web", "3.0.0", ".zip");
        assert_eq!(web["PackageVersionBuildInformation"]["BuildNumber"], "7");
    })
    .await;
}
