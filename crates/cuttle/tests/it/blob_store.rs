//! Package files in an S3-compatible bucket (`--blob-store s3://…`), against
//! a real S3-compatible server: `moto_server` on 127.0.0.1, started here on a
//! free port. A push is stored in the bucket, downloaded and deployed from
//! it; a second server with a fresh data directory on the same PostgreSQL
//! database and bucket serves what the first pushed; a bucket that stops in
//! the middle of an upload keeps nothing and no row; a blob store that
//! cannot be used stops the server at start, saying why.
//!
//! Skipped, saying so, where `moto_server` is not installed, unless
//! CUTTLE_TEST_REQUIRE_MOTO is set (as CI sets it).

use crate::support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::agents::{agent_cli, api, free_port, raw_log, wait_task};
use support::{noise, on_both, scratch_postgres, TestServer, BIN, KEY};

const BUCKET: &str = "cuttle-packages";
/// moto accepts any credentials; the server must still be given some.
const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "cuttle-test"),
    ("AWS_SECRET_ACCESS_KEY", "cuttle-test-secret"),
];

/// A `moto_server` process, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    /// Starts moto on a free loopback port, or `None` (said) where it is not
    /// installed and not required.
    fn start(test: &str) -> Option<Moto> {
        let installed = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CUTTLE_TEST_REQUIRE_MOTO").is_none(),
                "CUTTLE_TEST_REQUIRE_MOTO is set but moto_server is not installed \
                 (pip install 'moto[server]')"
            );
            eprintln!("{test}: skipped: moto_server is not installed (pip install 'moto[server]')");
            return None;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn create_bucket(&self, name: &str) {
        let status = block(
            reqwest::Client::new()
                .put(format!("{}/{name}", self.url))
                .send(),
        )
        .expect("create a bucket")
        .status();
        assert!(status.is_success(), "creating the bucket: {status}");
    }

    /// The keys in a bucket, read from moto directly.
    fn keys(&self, bucket: &str) -> Vec<String> {
        let body = block(async {
            reqwest::get(format!("{}/{bucket}?list-type=2", self.url))
                .await?
                .text()
                .await
        })
        .expect("list the bucket");
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    fn blob_store(&self, endpoint: &str) -> String {
        format!("s3://{BUCKET}?endpoint={endpoint}&region=us-east-1")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn block<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

fn start_on_bucket(data_dir: &Path, database_url: Option<&str>, blob_store: &str) -> TestServer {
    TestServer::start_with_env(
        data_dir,
        database_url,
        &["--blob-store", blob_store],
        &AWS_ENV,
    )
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A zip holding a script and `filler` bytes, named as the feed expects.
fn zip_package(dir: &Path, name: &str, filler: Vec<u8>) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    zip.start_file("tools/hello.sh", stored).unwrap();
    zip.write_all(b"echo \"hello from the bucket, $(wc -c < data/filler.bin) filler bytes\"\n")
        .unwrap();
    zip.start_file("data/filler.bin", stored).unwrap();
    zip.write_all(&filler).unwrap();
    zip.finish().unwrap();
    path
}

/// Pushes a file through the API; the status and the answer.
fn push(server: &TestServer, file: &Path) -> (u16, Value) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(file).unwrap();
    block(async {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/api/Spaces-1/packages/raw", server.url))
            .header("X-Octopus-ApiKey", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

/// A package version's file as the feed serves it.
fn download(server: &TestServer, id: &str) -> Vec<u8> {
    block(async {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/Spaces-1/packages/{id}/raw", server.url))
            .header("X-Octopus-ApiKey", KEY)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "download {id}: {}",
            resp.status()
        );
        resp.bytes().await.unwrap().to_vec()
    })
}

fn package_ids(server: &TestServer) -> Vec<String> {
    api(server, "GET", "/api/Spaces-1/packages", None)["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// A project whose one step runs `tools/hello.sh` from the Acme.Tools
/// package on the built-in worker; a release of it deployed to Dev; the
/// finished task and its log.
fn deploy_from_package(server: &TestServer) -> (Value, String) {
    api(
        server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let project = api(
        server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": "Tools", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    api(
        server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            project["Id"].as_str().unwrap()
        ),
        Some(
            json!({"Version": 0, "Steps": [{"Name": "Hello", "Properties": {}, "Actions": [{
            "Name": "Hello", "ActionType": "Octopus.Script",
            "Packages": [{"Name": "", "PackageId": "Acme.Tools", "FeedId": "feeds-builtin"}],
            "Properties": {"Octopus.Action.Script.ScriptSource": "Package",
                           "Octopus.Action.Script.ScriptFileName": "tools/hello.sh"}}]}]}),
        ),
    );
    let out = agent_cli(
        server,
        &[
            "release",
            "create",
            "--project",
            "Tools",
            "--version",
            "1.0.0",
        ],
    );
    assert!(out.status.success(), "release create: {out:?}");
    let d = api(
        server,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": "Tools", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}),
        ),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_task(server, &task, Duration::from_secs(120));
    (done, raw_log(server, &task))
}

#[test]
fn a_package_in_a_bucket_is_pushed_downloaded_deployed_and_deleted() {
    let Some(moto) = Moto::start("a_package_in_a_bucket_is_pushed_downloaded_deployed_and_deleted")
    else {
        return;
    };
    moto.create_bucket(BUCKET);
    let files = tempfile::tempdir().unwrap();
    // Over one part (8 MiB): stored as a multipart upload.
    let big = zip_package(files.path(), "Acme.Tools.1.0.0.zip", noise(20 << 20, 3));
    let small = zip_package(files.path(), "Acme.Small.1.0.0.zip", noise(1000, 4));
    on_both("blob_store_bucket", |data_dir, db| {
        let server = start_on_bucket(&data_dir, db.as_deref(), &moto.blob_store(&moto.url));
        assert!(
            server
                .recent_output()
                .contains(&format!("kept in the s3://{BUCKET} at {}", moto.url)),
            "{}",
            server.recent_output()
        );
        for file in [&big, &small] {
            let (status, pushed) = push(&server, file);
            assert_eq!(status, 201, "{pushed}");
            let bytes = std::fs::read(file).unwrap();
            let hash = sha256(&bytes);
            assert_eq!(pushed["Hash"], hash.as_str());
            assert!(moto.keys(BUCKET).contains(&format!("packages/{hash}")));
            // Not kept in the data directory: the bucket has it.
            assert!(!data_dir.join("packages").join(&hash).exists());
            let id = pushed["Id"].as_str().unwrap();
            assert_eq!(sha256(&download(&server, id)), hash);
        }

        let (done, log) = deploy_from_package(&server);
        assert_eq!(done["State"], "Success", "{done}\n{log}");
        let filler = 20 << 20;
        assert!(
            log.contains(&format!("hello from the bucket, {filler} filler bytes")),
            "{log}"
        );
        // The cached copy the worker unpacked, checked against its hash.
        let big_hash = sha256(&std::fs::read(&big).unwrap());
        let cached = data_dir.join("blob-cache").join(&big_hash);
        assert_eq!(sha256(&std::fs::read(&cached).unwrap()), big_hash);

        // Deleting a version removes its blob from the bucket and the cache.
        let small_hash = sha256(&std::fs::read(&small).unwrap());
        let small_id = "packages-Acme.Small.1.0.0";
        api(
            &server,
            "DELETE",
            &format!("/api/Spaces-1/packages/{small_id}"),
            None,
        );
        let keys = moto.keys(BUCKET);
        assert!(
            !keys.contains(&format!("packages/{small_hash}")),
            "{keys:?}"
        );
        assert!(keys.contains(&format!("packages/{big_hash}")), "{keys:?}");
        assert!(!data_dir.join("blob-cache").join(&small_hash).exists());
        assert!(std::fs::read_dir(data_dir.join("packages/tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(true));

        // A backup of a bucket installation holds the rows that name its
        // package files, not the files: the bucket is backed up by its own means.
        let backup = files.path().join("bucket-installation.cuttle-backup");
        let _ = std::fs::remove_file(&backup);
        let out = agent_cli(&server, &["backup", "--to", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let entries = archive_entries(&backup);
        assert!(
            entries.contains(&"tables/packages.jsonl".to_owned()),
            "{entries:?}"
        );
        assert!(
            !entries.iter().any(|e| e.starts_with("files/packages/")),
            "{entries:?}"
        );

        // Leaves the bucket empty for the next database's round.
        drop(server);
        for key in moto.keys(BUCKET) {
            block(
                reqwest::Client::new()
                    .delete(format!("{}/{BUCKET}/{key}", moto.url))
                    .send(),
            )
            .unwrap();
        }
    });
}

/// The paths inside a backup file.
fn archive_entries(backup: &Path) -> Vec<String> {
    let file = std::fs::File::open(backup).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_blob_directory_outside_the_data_directory_holds_the_package_files() {
    let data_dir = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let blob_dir = shared.path().join("cuttle-blobs");
    let server = TestServer::start(
        data_dir.path(),
        None,
        &["--blob-store", blob_dir.to_str().unwrap()],
    );
    let package = zip_package(shared.path(), "Acme.Tools.1.2.0.zip", noise(4096, 11));
    let (status, pushed) = push(&server, &package);
    assert_eq!(status, 201, "{pushed}");
    let hash = sha256(&std::fs::read(&package).unwrap());
    assert!(blob_dir.join("packages").join(&hash).is_file());
    assert!(!data_dir.path().join("packages").join(&hash).exists());
    assert_eq!(
        sha256(&download(&server, "packages-Acme.Tools.1.2.0")),
        hash
    );
    api(
        &server,
        "DELETE",
        "/api/Spaces-1/packages/packages-Acme.Tools.1.2.0",
        None,
    );
    assert!(!blob_dir.join("packages").join(&hash).exists());
}

#[test]
fn a_second_server_on_the_same_database_and_bucket_serves_what_the_first_pushed() {
    let Some(db) = scratch_postgres("blob_store_second_server") else {
        return;
    };
    let Some(moto) =
        Moto::start("a_second_server_on_the_same_database_and_bucket_serves_what_the_first_pushed")
    else {
        return;
    };
    moto.create_bucket(BUCKET);
    let files = tempfile::tempdir().unwrap();
    let package = zip_package(files.path(), "Acme.Tools.2.0.0.zip", noise(10 << 20, 9));
    let hash = sha256(&std::fs::read(&package).unwrap());

    let first_dir = tempfile::tempdir().unwrap();
    let mut first = start_on_bucket(first_dir.path(), Some(&db.url), &moto.blob_store(&moto.url));
    let (status, pushed) = push(&first, &package);
    assert_eq!(status, 201, "{pushed}");
    first.signal("-TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).is_some());

    // Another node: nothing of the first's data directory but the master
    // key that every node of an installation shares; the same database and
    // bucket.
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first_dir.path().join("master.key"),
        second_dir.path().join("master.key"),
    )
    .unwrap();
    assert!(!second_dir.path().join("packages").exists());
    let second = start_on_bucket(
        second_dir.path(),
        Some(&db.url),
        &moto.blob_store(&moto.url),
    );
    assert_eq!(package_ids(&second), vec!["packages-Acme.Tools.2.0.0"]);
    assert_eq!(
        sha256(&download(&second, "packages-Acme.Tools.2.0.0")),
        hash
    );
    assert!(second_dir.path().join("blob-cache").join(&hash).is_file());
}

/// A TCP relay to the S3 server that can be cut: after `budget` bytes
/// towards the store it drops every connection and refuses new ones, as a
/// store that stops would, until [`Relay::restore`].
struct Relay {
    port: u16,
    budget: Arc<AtomicI64>,
    _runtime: tokio::runtime::Runtime,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let budget = Arc::new(AtomicI64::new(i64::MAX));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let left = budget.clone();
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if left.load(Ordering::SeqCst) <= 0 {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, to, left.clone()));
            }
        });
        Relay {
            port,
            budget,
            _runtime: runtime,
        }
    }

    fn cut_after(&self, bytes: i64) {
        self.budget.store(bytes, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.budget.store(i64::MAX, Ordering::SeqCst);
    }
}

async fn relay(client: tokio::net::TcpStream, to: u16, left: Arc<AtomicI64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let cut = || left.load(Ordering::SeqCst) <= 0;
    let towards = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if left.fetch_sub(n as i64, Ordering::SeqCst) - (n as i64) <= 0 {
                return;
            }
            if up_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let back = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cut() || client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let watch = async {
        while !cut() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Any side ending (or the cut) closes both connections.
    tokio::select! {
        _ = towards => {}
        _ = back => {}
        _ = watch => {}
    }
}

#[test]
fn fault_a_bucket_that_stops_mid_upload_keeps_nothing_and_a_retry_works() {
    let Some(moto) =
        Moto::start("fault_a_bucket_that_stops_mid_upload_keeps_nothing_and_a_retry_works")
    else {
        return;
    };
    moto.create_bucket(BUCKET);
    let port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let relay = Relay::start(port);
    let files = tempfile::tempdir().unwrap();
    let package = zip_package(files.path(), "Acme.Tools.3.0.0.zip", noise(24 << 20, 5));
    let data_dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", relay.port);
    let server = start_on_bucket(data_dir.path(), None, &moto.blob_store(&endpoint));

    // The store goes away 12 MiB into the package's 24.
    relay.cut_after(12 << 20);
    let (status, answer) = push(&server, &package);
    assert_eq!(status, 503, "{answer}");
    let said = answer["ErrorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
        + &answer["Errors"].to_string();
    assert!(said.contains("blob store"), "{answer}");
    assert!(said.contains("Try again"), "{answer}");
    assert_eq!(package_ids(&server), Vec::<String>::new());
    assert_eq!(moto.keys(BUCKET), Vec::<String>::new());
    let left: Vec<_> = std::fs::read_dir(data_dir.path().join("packages/tmp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Back again: the same push is stored whole.
    relay.restore();
    let (status, pushed) = push(&server, &package);
    assert_eq!(status, 201, "{pushed}");
    let hash = sha256(&std::fs::read(&package).unwrap());
    assert_eq!(moto.keys(BUCKET), vec![format!("packages/{hash}")]);
    assert_eq!(
        sha256(&download(&server, "packages-Acme.Tools.3.0.0")),
        hash
    );

    // A store that hands back other content than the hash names: the copy
    // is refused, not cached, and the download fails saying so.
    std::fs::remove_file(data_dir.path().join("blob-cache").join(&hash)).unwrap();
    let replaced = block(
        reqwest::Client::new()
            .put(format!("{}/{BUCKET}/packages/{hash}", moto.url))
            .body(b"not the package".to_vec())
            .send(),
    )
    .unwrap();
    assert!(replaced.status().is_success());
    let (status, body) = block(async {
        let resp = reqwest::Client::new()
            .get(format!(
                "{}/api/Spaces-1/packages/packages-Acme.Tools.3.0.0/raw",
                server.url
            ))
            .header("X-Octopus-ApiKey", KEY)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is damaged"), "{body}");
    assert!(!data_dir.path().join("blob-cache").join(&hash).exists());
}

/// `cuttle server` with `args`, expected to refuse to start; its output.
fn refused(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(AWS_ENV)
        .env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true")
        .env_remove("CUTTLE_DATABASE_URL")
        .env_remove("CUTTLE_CONFIG")
        .env_remove("CUTTLE_BLOB_STORE")
        .output()
        .expect("run cuttle server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the server started:\n{text}");
    text
}

#[test]
fn a_blob_store_that_cannot_be_used_stops_the_server_at_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path();
    // Bad settings, each refused before anything is opened.
    for (setting, says) in [
        ("gs://bucket", "is not a blob store"),
        ("relative/dir", "is not a blob store"),
        ("s3://Bad_Bucket", "names the bucket 'Bad_Bucket'"),
        ("s3://bucket?token=x", "the parameter 'token'"),
        (
            "s3://bucket?endpoint=http://192.0.2.1:9000",
            "add allow_http=true",
        ),
    ] {
        let text = refused(dir, &["--blob-store", setting]);
        assert!(text.contains(says), "{setting}: {text}");
        assert!(!dir.join("cuttle.db").exists(), "{setting}: {text}");
    }
    // --check-config shows the setting, and refuses a bad one.
    let out = Command::new(BIN)
        .args(["server", "--data-dir"])
        .arg(dir)
        .args(["--blob-store", "s3://cuttle-packages?region=eu-west-1"])
        .arg("--check-config")
        .env_remove("CUTTLE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("blob_store") && text.contains("s3://cuttle-packages?region=eu-west-1"),
        "{text}"
    );
    let text = refused(dir, &["--blob-store", "ftp://x", "--check-config"]);
    assert!(text.contains("is not a blob store"), "{text}");

    // A store that does not answer.
    let nothing = free_port();
    let text = refused(
        dir,
        &[
            "--blob-store",
            &format!("s3://{BUCKET}?endpoint=http://127.0.0.1:{nothing}&region=us-east-1"),
        ],
    );
    assert!(text.contains("The blob store cannot be used"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{nothing}")), "{text}");

    // A bucket that is not there.
    let Some(moto) = Moto::start("a_blob_store_that_cannot_be_used_stops_the_server_at_start")
    else {
        return;
    };
    let text = refused(
        dir,
        &[
            "--blob-store",
            &format!("s3://no-such-bucket?endpoint={}&region=us-east-1", moto.url),
        ],
    );
    assert!(text.contains("The blob store cannot be used"), "{text}");
    assert!(
        text.contains("NoSuchBucket") || text.contains("not exist"),
        "{text}"
    );
}
