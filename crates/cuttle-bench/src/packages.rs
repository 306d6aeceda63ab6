//! Packages: pushing a large package to the built-in feed, delivering it
//! to real listening agents on 127.0.0.1, redeploying a version that
//! differs in 1% of its bytes (sent as a delta), and, in process, the agent
//! side's extraction and variable substitution of a package of many small
//! files. Each is set against a floor: `cp` of the same file on the same
//! file system, `unzip` and `sed -i`.
//!
//! Every file lives in temp directories on the same file system as
//! `$TMPDIR`, caches are never dropped, and `sync` runs before each timed
//! step so that the writeback of an earlier step does not land on the next.

use super::agents::{self, Fleet, Mode};
use super::{ms, Api, Server, Stats};
use anyhow::{ensure, Context, Result};
use chrono::DateTime;
use cuttle_engine::package::{self, ArchiveFormat, ExtractLimits, Substitution};
use cuttle_vars::VariableDictionary;
use reqwest::{Client, Method};
use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

#[derive(clap::Args)]
pub struct PackagesArgs {
    /// The large package's payload, in MiB.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=4000))]
    size_mib: u64,
    /// Listening agents the large package is delivered to.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    agents: u32,
    /// Files in the package whose extraction and substitution are timed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    files: u32,
    /// How many of those are `*.conf` templates, substituted.
    #[arg(long, default_value_t = 2_000)]
    templates: u32,
    /// Timed runs of the cheaper measurements (copies, pushes, extraction); medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

const PACKAGE_ID: &str = "Acme.Bench";
const PROJECT: &str = "Packages";
const ROLE: &str = "web";
/// Entries in the large package; each gets 1% of its bytes changed in v2.
const PARTS: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;
const GREETING: &str = "Hello from Cuttle";

pub async fn run(cuttle: &Path, http: &Client, args: &PackagesArgs) -> Result<()> {
    ensure!(
        args.templates <= args.files,
        "--templates ({}) is more than --files ({})",
        args.templates,
        args.files
    );
    let n = args.agents as usize;
    let runs = args.runs;
    let scratch = tempfile::Builder::new()
        .prefix("cuttle-bench-packages-")
        .tempdir()?;
    let v1 = scratch.path().join(format!("{PACKAGE_ID}.1.0.0.zip"));
    let payload = args.size_mib << 20;
    write_big_package(&v1, payload, false)?;
    let size = std::fs::metadata(&v1)?.len();
    println!(
        "cuttle-bench packages: {PACKAGE_ID}, a zip of {PARTS} stored (uncompressed) entries of random bytes, \
         {:.1} MiB ({size} bytes); {n} listening agents on 127.0.0.1; SQLite; one machine, one disk",
        size as f64 / MIB
    );
    println!(
        "{:<42} {:<22} {:<36} {:>12}",
        "step", "cuttle", "floor", "cuttle/floor"
    );

    // The floors, while no server or agent runs. One warm-up read first.
    warm_up(&v1)?;
    let copy = scratch.path().join("copy.zip");
    let cp = median(runs, || {
        settle()?;
        let took = timed(|| cp_file(&v1, &copy))?;
        remove(&copy)?;
        Ok(took)
    })?;
    let cp_fsync = median(runs, || {
        settle()?;
        let took = timed(|| {
            cp_file(&v1, &copy)?;
            File::open(&copy)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("could not fsync {}", copy.display()))
        })?;
        remove(&copy)?;
        Ok(took)
    })?;
    let copies: Vec<PathBuf> = (0..n)
        .map(|i| scratch.path().join(format!("copy-{i}.zip")))
        .collect();
    let cp_parallel = median(runs, || {
        settle()?;
        let took = timed(|| cp_files(&v1, &copies, true))?;
        copies.iter().try_for_each(|c| remove(c))?;
        Ok(took)
    })?;
    let cp_sequential = median(runs, || {
        settle()?;
        let took = timed(|| cp_files(&v1, &copies, false))?;
        copies.iter().try_for_each(|c| remove(c))?;
        Ok(took)
    })?;

    let data = tempfile::Builder::new()
        .prefix("cuttle-bench-packages-server-")
        .tempdir()?;
    let (server, _) = Server::start(cuttle, data.path(), None, http, &[]).await?;
    let api = Api {
        http,
        base: &server.base,
    };

    // 1. Push: the same file each time, replacing the version.
    let push = median(runs, || {
        settle()?;
        timed(|| {
            cli_ok(
                cuttle,
                api.base,
                &[
                    "package",
                    "push",
                    agents::path_str(&v1)?,
                    "--overwrite-mode",
                    "overwrite-existing",
                ],
            )
            .map(drop)
        })
    })?;
    remove(&v1)?;
    let mbps = |bytes: f64, ms: f64| bytes / MIB / (ms / 1000.0);
    let sz = size as f64;
    print_row(
        &format!("push (`cuttle package push`), median of {runs}"),
        &format!("{:.2} s {:.0} MiB/s", push / 1000.0, mbps(sz, push)),
        &format!("cp {:.2} s {:.0} MiB/s", cp / 1000.0, mbps(sz, cp)),
        push / cp,
    );
    print_row(
        "",
        "",
        &format!(
            "cp + fsync {:.2} s {:.0} MiB/s",
            cp_fsync / 1000.0,
            mbps(sz, cp_fsync)
        ),
        push / cp_fsync,
    );

    // 2. Delivery to the agents.
    eprintln!("cuttle-bench: starting {n} listening agents…");
    api.call(
        Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({ "Name": agents::ENVIRONMENT })),
    )
    .await?;
    let fleet = Fleet::start(cuttle, api.base, Mode::Listening, n, ROLE)?;
    let t0 = Instant::now();
    let task = api
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"Name": "Health", "Arguments": {"MachineIds": fleet.machine_ids}})),
        )
        .await?;
    let id = task["Id"].as_str().context("the health task has no Id")?;
    agents::wait_task(&api, id, t0)
        .await
        .context("the health check of the agents")?;
    create_project(&api).await?;

    let first = release_and_deploy(cuttle, &api, "1.0.0", n)
        .await
        .context("the deployment of 1.0.0")?;
    ensure!(
        first.delta == 0 && first.sent.iter().all(|&b| b == size),
        "1.0.0 was not sent whole to every agent: {:?}",
        first.sent
    );
    remove_applications(&fleet, n)?;
    let total = sz * n as f64;
    print_row(
        &format!("deliver to {n} agents (one deployment)"),
        &format!(
            "{:.2} s {:.0} MiB/s",
            first.wall / 1000.0,
            mbps(total, first.wall)
        ),
        &format!(
            "{n} cp at once {:.2} s {:.0} MiB/s",
            cp_parallel / 1000.0,
            mbps(total, cp_parallel)
        ),
        first.wall / cp_parallel,
    );
    print_row(
        "",
        "",
        &format!(
            "{n} cp in sequence {:.2} s {:.0} MiB/s",
            cp_sequential / 1000.0,
            mbps(total, cp_sequential)
        ),
        first.wall / cp_sequential,
    );
    print_phases(&first);

    // 3. A new version with 1% of each entry's bytes changed in place.
    let v2 = scratch.path().join(format!("{PACKAGE_ID}.1.0.1.zip"));
    let changed = write_big_package(&v2, payload, true)?;
    ensure!(
        std::fs::metadata(&v2)?.len() == size,
        "1.0.1 is not the size of 1.0.0"
    );
    cli_ok(
        cuttle,
        api.base,
        &["package", "push", agents::path_str(&v2)?],
    )?;
    remove(&v2)?;
    let second = release_and_deploy(cuttle, &api, "1.0.1", n)
        .await
        .context("the deployment of 1.0.1")?;
    ensure!(
        second.delta == n,
        "1.0.1 was sent as a delta to {} of the {n} agents: {:?}",
        second.delta,
        second.sent
    );
    remove_applications(&fleet, n)?;
    let sent = Stats::of(second.sent.iter().map(|&b| b as f64).collect());
    let all: u64 = second.sent.iter().sum();
    print_row(
        &format!(
            "redeploy, {:.2}% of the bytes changed",
            changed as f64 * 100.0 / sz
        ),
        &format!(
            "{:.2} s {:.0} MiB/s",
            second.wall / 1000.0,
            mbps(total, second.wall)
        ),
        &format!("{n} cp at once"),
        second.wall / cp_parallel,
    );
    print_phases(&second);
    println!(
        "  sent per agent: median {:.2} MiB ({:.2}% of the package), min {:.2}%, max {:.2}%; {:.1} MiB to all {n}",
        sent.median / MIB,
        sent.median * 100.0 / sz,
        sent.min * 100.0 / sz,
        sent.max * 100.0 / sz,
        all as f64 / MIB,
    );
    fleet.stop(&api).await?;
    drop(server);

    // 4. Extraction and substitution, in process.
    extraction(scratch.path(), args)?;

    println!(
        "push:     `cuttle package push FILE --overwrite-mode overwrite-existing` run as a process, to its exit; \
         the server hashes, fsyncs and checks the zip\n\
         deliver:  the deploy API call to the task completed (polled every 5 ms); each agent gets the file into its \
         cache, checks its SHA-256 and extracts it, so it writes the package twice\n\
         redeploy: each agent sends the signature of the version it has; the server sends only the changes\n\
         floors:   `cp` of the same file on the same file system (no fsync unless said), medians of {runs}; \
         `sync` before every timed step, caches kept\n\
         MiB/s:    package bytes over the wall time (times the agents when delivering)\n\
         cuttle/floor: time over time (the floor's throughput over Cuttle's)"
    );
    Ok(())
}

/// When the agents got the package and had it extracted, from the log.
fn print_phases(d: &Delivery) {
    println!(
        "  task start to the first / last \"Sent\" {:.2} / {:.2} s, to the last \"Extracted\" {:.2} s",
        d.first_sent / 1000.0,
        d.transfer / 1000.0,
        d.extracted / 1000.0
    );
}

fn print_row(what: &str, cuttle: &str, floor: &str, ratio: f64) {
    let ratio = if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        String::new()
    };
    println!("{what:<42} {cuttle:<22} {floor:<36} {ratio:>12}");
}

/// Writes the large package: [`PARTS`] stored entries of random bytes,
/// `payload` in all; with `changed`, one run of 1% of each entry's bytes is
/// inverted, at a place that differs from entry to entry. Returns how many
/// bytes were changed.
fn write_big_package(path: &Path, payload: u64, changed: bool) -> Result<u64> {
    let part = usize::try_from(payload / PARTS as u64).context("the package is too large")?;
    let file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let mut buf = vec![0u8; part];
    let mut flipped = 0u64;
    for i in 0..PARTS {
        let mut rng = Noise::new(i as u64 + 1);
        rng.fill(&mut buf);
        if changed {
            let run = part / 100;
            let start = (rng.next() % (part - run + 1) as u64) as usize;
            for b in &mut buf[start..start + run] {
                *b ^= 0xff;
            }
            flipped += run as u64;
        }
        zip.start_file(format!("data/part-{i:03}.bin"), options)
            .with_context(|| format!("writing {}", path.display()))?;
        zip.write_all(&buf)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    zip.finish()
        .with_context(|| format!("writing {}", path.display()))?
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(flipped)
}

/// xorshift64: bytes that do not compress, reproducible from a seed.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Self {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Reads the file once, so that every timed step finds it in the page cache.
fn warm_up(path: &Path) -> Result<()> {
    let mut file =
        File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    while file
        .read(&mut buf)
        .with_context(|| format!("could not read {}", path.display()))?
        > 0
    {}
    Ok(())
}

/// Flushes dirty pages (drops nothing from the caches).
fn settle() -> Result<()> {
    let status = Command::new("sync")
        .status()
        .context("could not run sync")?;
    ensure!(status.success(), "sync failed ({status})");
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(ms(t0.elapsed()))
}

fn median(runs: u32, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let samples = (0..runs).map(|_| f()).collect::<Result<Vec<_>>>()?;
    Ok(Stats::of(samples).median)
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).with_context(|| format!("could not remove {}", path.display()))
}

fn check(out: std::io::Result<Output>, what: &str) -> Result<Output> {
    let out = out.with_context(|| format!("could not run {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

fn cp_command(src: &Path, dst: &Path) -> Command {
    let mut cmd = Command::new("cp");
    cmd.arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn cp_file(src: &Path, dst: &Path) -> Result<()> {
    check(cp_command(src, dst).output(), "cp").map(drop)
}

/// Copies `src` to each of `dsts`, all at once or one after another.
fn cp_files(src: &Path, dsts: &[PathBuf], parallel: bool) -> Result<()> {
    if !parallel {
        return dsts.iter().try_for_each(|d| cp_file(src, d));
    }
    let children = dsts
        .iter()
        .map(|d| cp_command(src, d).spawn())
        .collect::<std::io::Result<Vec<_>>>()
        .context("could not start cp")?;
    // Each is waited for, even after a failure, so that none is left behind.
    let results: Vec<_> = children.into_iter().map(|c| c.wait_with_output()).collect();
    for out in results {
        check(out, "cp")?;
    }
    Ok(())
}

/// Runs the `cuttle` CLI against the bench's server; it must succeed.
fn cli_ok(cuttle: &Path, server: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(cuttle)
        .args(args)
        .env("CUTTLE_SERVER", server)
        .env("CUTTLE_API_KEY", super::API_KEY)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("CUTTLE_SPACE")
        .stdin(Stdio::null())
        .output();
    check(out, &format!("cuttle {}", args.join(" ")))
}

/// A project with one "Deploy a package" step of [`PACKAGE_ID`] on [`ROLE`].
async fn create_project(api: &Api<'_>) -> Result<()> {
    let project = api
        .call(
            Method::POST,
            "/api/Spaces-1/projects",
            Some(json!({"Name": PROJECT, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
        )
        .await?;
    let id = project["Id"].as_str().context("the project has no Id")?;
    let steps = json!([{
        "Name": "Deploy",
        "Properties": {"Octopus.Action.TargetRoles": ROLE},
        "Actions": [{
            "Name": "Deploy",
            "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": PACKAGE_ID, "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}],
            "Properties": {}
        }]
    }]);
    api.call(
        Method::PUT,
        &format!("/api/Spaces-1/projects/{id}/deploymentprocesses"),
        Some(json!({"Version": 0, "Steps": steps})),
    )
    .await?;
    Ok(())
}

/// What one deployment of the package to the agents took and sent.
struct Delivery {
    /// The deploy API call to the task completed; ms.
    wall: f64,
    /// The task's StartTime to the first and the last "Sent" line; ms.
    first_sent: f64,
    transfer: f64,
    /// The task's StartTime to the last "Extracted" line; ms.
    extracted: f64,
    /// Bytes sent to each agent.
    sent: Vec<u64>,
    /// How many of those were deltas.
    delta: usize,
}

/// Creates the release with the CLI (which picks the newest package),
/// flushes the disk, and deploys it to every agent.
async fn release_and_deploy(
    cuttle: &Path,
    api: &Api<'_>,
    version: &str,
    agents: usize,
) -> Result<Delivery> {
    cli_ok(
        cuttle,
        api.base,
        &[
            "release",
            "create",
            "--project",
            PROJECT,
            "--version",
            version,
        ],
    )?;
    settle()?;
    deploy(api, version, agents).await
}

async fn deploy(api: &Api<'_>, version: &str, agents: usize) -> Result<Delivery> {
    let t0 = Instant::now();
    let created = api
        .call(
            Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": PROJECT, "ReleaseVersion": version, "EnvironmentNames": [agents::ENVIRONMENT]})),
        )
        .await?;
    let task = created["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .context("no DeploymentServerTasks[0].ServerTaskId in the response")?
        .to_owned();
    let done = agents::wait_task(api, &task, t0).await?;
    let wall = ms(t0.elapsed());
    let started = done["StartTime"]
        .as_str()
        .with_context(|| format!("task {task} has no StartTime"))?;
    let started = DateTime::parse_from_rfc3339(started)
        .with_context(|| format!("task {task}: bad StartTime {started:?}"))?;
    let log = agents::raw_log(api, &task).await?;

    let prefix = format!("Sent {PACKAGE_ID} {version} to ");
    let mut sent = Vec::new();
    let mut delta = 0;
    let mut sent_at = Vec::new();
    let mut extracted_at = Vec::new();
    let since_start = |line: &str| -> Result<f64> {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let at = DateTime::parse_from_rfc3339(stamp)
            .with_context(|| format!("no timestamp at the start of {line:?}"))?;
        Ok((at - started).num_microseconds().unwrap_or(0) as f64 / 1000.0)
    };
    let unpacked = format!("of {PACKAGE_ID} {version}");
    for line in log.lines().map(str::trim) {
        if line.contains(&prefix) {
            sent.push(bytes_in(line).with_context(|| format!("no byte count in {line:?}"))?);
            sent_at.push(since_start(line)?);
            if line.contains("as a delta") {
                delta += 1;
            }
        } else if line.contains("Extracted ") && line.contains(&unpacked) {
            extracted_at.push(since_start(line)?);
        }
    }
    ensure!(
        sent.len() == agents && extracted_at.len() == agents,
        "the log says the package was sent {} times and extracted {} times, not {agents}:\n{log}",
        sent.len(),
        extracted_at.len()
    );
    let sent_at = Stats::of(sent_at);
    Ok(Delivery {
        wall,
        first_sent: sent_at.min,
        transfer: sent_at.max,
        extracted: Stats::of(extracted_at).max,
        sent,
        delta,
    })
}

/// The number before the last " bytes" in a line: `(1.3%, 13249 bytes)`,
/// `(1048576 bytes)`.
fn bytes_in(line: &str) -> Option<u64> {
    let head = &line[..line.rfind(" bytes")?];
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    head[head.len() - digits..].parse().ok()
}

/// Removes what the agents extracted (their caches stay, as the delta's basis).
fn remove_applications(fleet: &Fleet, agents: usize) -> Result<()> {
    let mut found = 0;
    for i in 0..agents {
        let apps = fleet.dir().join(format!("a{i}")).join("Applications");
        if apps.exists() {
            std::fs::remove_dir_all(&apps)
                .with_context(|| format!("could not remove {}", apps.display()))?;
            found += 1;
        }
    }
    ensure!(
        found == agents,
        "only {found} of the {agents} agents have an Applications directory"
    );
    Ok(())
}

/// Extraction and substitution of a package of many small files, through
/// the library the agents use, against `unzip -q` and `sed -i`.
fn extraction(scratch: &Path, args: &PackagesArgs) -> Result<()> {
    let archive = scratch.join("Acme.Files.1.0.0.zip");
    let (confs, payload) = write_files_package(&archive, args.files, args.templates)?;
    let archive_size = std::fs::metadata(&archive)?.len();
    let vars: VariableDictionary = [
        ("Greeting", GREETING),
        ("Octopus.Environment.Name", "Bench"),
    ]
    .into_iter()
    .collect();
    let globs = vec!["**/*.conf".to_owned()];

    let mut extract_ms = Vec::new();
    let mut substitute_ms = Vec::new();
    for r in 0..args.runs {
        let dest = scratch.join(format!("x{r}"));
        settle()?;
        let t0 = Instant::now();
        let report = package::extract(
            &archive,
            ArchiveFormat::Zip,
            &dest,
            &ExtractLimits::default(),
        )
        .with_context(|| format!("extracting {}", archive.display()))?;
        extract_ms.push(ms(t0.elapsed()));
        ensure!(
            report.files == u64::from(args.files) && report.bytes == payload,
            "extracted {} files ({} bytes), not {} ({payload} bytes)",
            report.files,
            report.bytes,
            args.files
        );
        settle()?;
        let t0 = Instant::now();
        let done = package::substitute_files(&dest, &globs, &vars)
            .with_context(|| format!("substituting in {}", dest.display()))?;
        substitute_ms.push(ms(t0.elapsed()));
        let changed = done
            .iter()
            .filter(|f| matches!(f.outcome, Substitution::Rendered { changed: true, .. }))
            .count();
        ensure!(
            changed == confs.len(),
            "{changed} files were changed by the substitution, not {}",
            confs.len()
        );
        if let Some(first) = confs.first() {
            let text = std::fs::read_to_string(dest.join(first))?;
            ensure!(
                text.contains(&format!("greeting={GREETING}\n")),
                "{first} was not substituted: {text:?}"
            );
        }
        std::fs::remove_dir_all(&dest)?;
    }
    let extract = Stats::of(extract_ms).median;
    let substitute = Stats::of(substitute_ms).median;

    let (unzip, sed) = match agents::on_path("unzip") {
        Some(unzip) => {
            let mut unzip_ms = Vec::new();
            let mut sed_ms = Vec::new();
            for r in 0..args.runs {
                let dest = scratch.join(format!("u{r}"));
                settle()?;
                let t0 = Instant::now();
                check(
                    Command::new(&unzip)
                        .arg("-q")
                        .arg(&archive)
                        .arg("-d")
                        .arg(&dest)
                        .stdin(Stdio::null())
                        .output(),
                    "unzip",
                )?;
                unzip_ms.push(ms(t0.elapsed()));
                if !confs.is_empty() {
                    settle()?;
                    let t0 = Instant::now();
                    check(
                        Command::new("sed")
                            .args([
                                "-i",
                                "-e",
                                &format!("s/#{{Greeting}}/{GREETING}/g"),
                                "-e",
                                "s/#{Octopus.Environment.Name}/Bench/g",
                                "--",
                            ])
                            .args(&confs)
                            .current_dir(&dest)
                            .stdin(Stdio::null())
                            .output(),
                        "sed -i",
                    )?;
                    sed_ms.push(ms(t0.elapsed()));
                }
                std::fs::remove_dir_all(&dest)?;
            }
            let sed = (!sed_ms.is_empty()).then(|| Stats::of(sed_ms).median);
            (Some(Stats::of(unzip_ms).median), sed)
        }
        None => (None, None),
    };

    println!(
        "extraction: {} files in nested directories, {:.1} MiB, deflated to a {:.1} MiB zip; {} `*.conf` templates; \
         in process with cuttle_engine::package, medians of {}",
        args.files,
        payload as f64 / MIB,
        archive_size as f64 / MIB,
        confs.len(),
        args.runs
    );
    let per = |total: f64, n: usize| total * 1000.0 / n.max(1) as f64;
    match unzip {
        Some(floor) => print_row(
            &format!("extract {} files", args.files),
            &format!(
                "{:.0} ms {:.1} µs/file",
                extract,
                per(extract, args.files as usize)
            ),
            &format!("unzip -q {floor:.0} ms"),
            extract / floor,
        ),
        None => print_row(
            &format!("extract {} files", args.files),
            &format!("{extract:.0} ms"),
            "unzip not on PATH",
            f64::NAN,
        ),
    }
    let what = format!("substitute `**/*.conf` ({} files)", confs.len());
    let cuttle = format!(
        "{:.0} ms {:.1} µs/file",
        substitute,
        per(substitute, confs.len())
    );
    match sed {
        Some(floor) => print_row(
            &what,
            &cuttle,
            &format!("sed -i {floor:.0} ms"),
            substitute / floor,
        ),
        None => print_row(&what, &cuttle, "", f64::NAN),
    }
    println!(
        "  together {:.0} ms for {} files",
        extract + substitute,
        args.files
    );
    remove(&archive)
}

/// Writes a zip (deflated) of `files` files of about 1 KiB of text under
/// `app/m*/s*/`, `templates` of them `*.conf` files with `#{Greeting}`;
/// returns the templates' relative paths and the bytes of all files.
fn write_files_package(path: &Path, files: u32, templates: u32) -> Result<(Vec<String>, u64)> {
    let file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut rng = Noise::new(42);
    let mut confs = Vec::new();
    let mut payload = 0u64;
    let kinds = ["js", "css", "html", "txt"];
    for i in 0..files {
        // Spreads the templates evenly: exactly `templates` of the `files`.
        let is_conf =
            (u64::from(i) * u64::from(templates)) % u64::from(files) < u64::from(templates);
        let dir = format!("app/m{:02}/s{}", i / 1000, (i / 100) % 10);
        let (name, mut text) = if is_conf {
            (
                format!("{dir}/f{i:05}.conf"),
                "greeting=#{Greeting}\nenvironment=#{Octopus.Environment.Name}\n".to_owned(),
            )
        } else {
            (
                format!("{dir}/f{i:05}.{}", kinds[i as usize % kinds.len()]),
                String::new(),
            )
        };
        let mut key = 0;
        while text.len() < 1000 {
            text.push_str(&format!(
                "key{key:02}={:016x}{:08x}\n",
                rng.next(),
                rng.next() as u32
            ));
            key += 1;
        }
        zip.start_file(name.as_str(), options)
            .with_context(|| format!("writing {}", path.display()))?;
        zip.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        payload += text.len() as u64;
        if is_conf {
            confs.push(name);
        }
    }
    zip.finish()
        .with_context(|| format!("writing {}", path.display()))?
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((confs, payload))
}
