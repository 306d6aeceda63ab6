//! "Deploy a package" end to end, as the README shows it: a zip pushed with
//! `cuttle package push`, a release that picks it, and a deployment to two
//! real agents where the files land with variables substituted and a JSON
//! setting replaced; then a new version that travels as a delta, and a
//! redeployment that sends nothing.

use crate::support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::agents::{agent_cli, api, deploy_to_dev, raw_log, register, wait_task, Agent, Mode};
use support::{noise, ServerProcess};

/// A zip of `files` (name, bytes), named as the feed expects.
fn zip_package(dir: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (file, bytes) in files {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        zip.start_file(*file, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn package_files(big: Vec<u8>, settings: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("appsettings.json", settings.as_bytes().to_vec()),
        (
            "config/app.conf",
            b"greeting=#{Greeting}\nenvironment=#{Octopus.Environment.Name}\n".to_vec(),
        ),
        (
            "PreDeploy.sh",
            b"echo \"before substitution: $(head -1 config/app.conf)\"\n".to_vec(),
        ),
        (
            "Deploy.sh",
            b"echo \"deployed on $(get_octopusvariable Octopus.Machine.Name)\"\n".to_vec(),
        ),
        ("data/blob.bin", big),
        (
            "tools/hello.sh",
            b"echo \"hello from the package on $(get_octopusvariable Octopus.Machine.Name)\"\n"
                .to_vec(),
        ),
    ]
}

const SETTINGS: &str = r#"{"Logging": {"Level": "Information"}, "Port": 80}"#;

fn cli(server: &ServerProcess, args: &[&str]) -> String {
    let out = agent_cli(server, args);
    assert!(out.status.success(), "cuttle {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn deploy_project(server: &ServerProcess, project: &str, version: &str) -> (Value, String) {
    let task = deploy_to_dev(server, project, version);
    let done = wait_task(server, &task, Duration::from_secs(120));
    (done, raw_log(server, &task))
}

fn deploy(server: &ServerProcess, version: &str) -> (Value, String) {
    deploy_project(server, "Web", version)
}

/// Creates a release with the CLI (which picks the newest package) and
/// deploys it.
fn release_and_deploy(server: &ServerProcess, project: &str, version: &str) -> (Value, String) {
    cli(
        server,
        &[
            "release",
            "create",
            "--project",
            project,
            "--version",
            version,
        ],
    );
    deploy_project(server, project, version)
}

#[test]
fn a_pushed_zip_is_deployed_to_two_agents_with_its_settings_and_travels_as_a_delta() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    api(
        &server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    // Agents keep two versions of each package.
    let mut policy = api(&server, "GET", "/api/machinepolicies", None)["Items"][0].clone();
    policy["MachinePackageCacheRetentionPolicy"] =
        json!({"Strategy": "Quantities", "QuantityOfVersionsToKeep": 2});
    let policy_id = policy["Id"].as_str().unwrap().to_owned();
    api(
        &server,
        "PUT",
        &format!("/api/machinepolicies/{policy_id}"),
        Some(policy),
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut agents = vec![];
    for name in ["web-1", "web-2"] {
        let dir = tmp.path().join(name);
        let out = register(&server, &dir, name, Mode::Listening(&["web"]));
        assert!(out.status.success(), "{out:?}");
        agents.push((dir.clone(), Agent::start(&dir)));
    }

    let big = noise(1 << 20, 7);
    let v1 = zip_package(
        tmp.path(),
        "Acme.Web.1.0.0.zip",
        &package_files(big.clone(), SETTINGS),
    );
    let pushed = cli(&server, &["package", "push", v1.to_str().unwrap()]);
    assert!(pushed.contains("Pushed Acme.Web 1.0.0"), "{pushed}");
    let listed = cli(&server, &["package", "list"]);
    assert!(
        listed.contains("Acme.Web") && listed.contains("1.0.0"),
        "{listed}"
    );

    let project = api(
        &server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": "Web", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let id = project["Id"].as_str().unwrap();
    let process = json!({"Version": 0, "Steps": [{
        "Name": "Deploy web",
        "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [{
            "Name": "Deploy web",
            "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}],
            "Properties": {
                "Octopus.Action.EnabledFeatures": "Octopus.Features.SubstituteInFiles,Octopus.Features.JsonConfigurationVariables",
                "Octopus.Action.SubstituteInFiles.TargetFiles": "config/*.conf",
                "Octopus.Action.Package.JsonConfigurationVariablesTargets": "appsettings.json"
            }
        }]
    }]});
    api(
        &server,
        "PUT",
        &format!("/api/projects/{id}/deploymentprocesses"),
        Some(process),
    );
    api(
        &server,
        "PUT",
        &format!("/api/Spaces-1/variables/variableset-{id}"),
        Some(json!({"Version": 0, "Variables": [
            {"Name": "Greeting", "Value": "Hello from Cuttle"},
            {"Name": "Logging:Level", "Value": "Debug"}
        ]})),
    );

    // The release picks the newest version in the feed by itself.
    let created = cli(
        &server,
        &[
            "release",
            "create",
            "--project",
            "Web",
            "--version",
            "1.0.0",
        ],
    );
    assert!(created.contains("1.0.0"), "{created}");
    let release = api(
        &server,
        "GET",
        &format!("/api/Spaces-1/projects/{id}/releases"),
        None,
    );
    assert_eq!(
        release["Items"][0]["SelectedPackages"][0]["Version"], "1.0.0",
        "{release}"
    );
    let (done, log) = deploy(&server, "1.0.0");
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    for (dir, _) in &agents {
        let installed = dir.join("Applications/Dev/Acme.Web/1.0.0");
        let conf = std::fs::read_to_string(installed.join("config/app.conf")).unwrap();
        assert_eq!(conf, "greeting=Hello from Cuttle\nenvironment=Dev\n");
        let settings: Value = serde_json::from_str(
            &std::fs::read_to_string(installed.join("appsettings.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(settings, json!({"Logging": {"Level": "Debug"}, "Port": 80}));
        assert_eq!(std::fs::read(installed.join("data/blob.bin")).unwrap(), big);
    }
    for name in ["web-1", "web-2"] {
        assert!(log.contains(&format!("deployed on {name}")), "{log}");
        assert!(
            log.contains(&format!("Sent Acme.Web 1.0.0 to {name}:")),
            "{log}"
        );
    }
    assert!(
        log.contains("before substitution: greeting=#{Greeting}"),
        "PreDeploy.sh runs before the substitution: {log}"
    );

    // A custom installation directory, emptied first as configured.
    let custom = tmp.path().join("custom-site");
    let site = api(
        &server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": "Site", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    api(
        &server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            site["Id"].as_str().unwrap()
        ),
        Some(json!({"Version": 0, "Steps": [{
        "Name": "Site", "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [{"Name": "Site", "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin"}],
            "Properties": {
                "Octopus.Action.EnabledFeatures": "Octopus.Features.CustomDirectory",
                "Octopus.Action.Package.CustomInstallationDirectory": "#{SiteRoot}/#{Octopus.Machine.Name}",
                "Octopus.Action.Package.CustomInstallationDirectoryShouldBePurgedBeforeDeployment": "True"
            }}]}]})),
    );
    api(
        &server,
        "PUT",
        &format!(
            "/api/Spaces-1/variables/variableset-{}",
            site["Id"].as_str().unwrap()
        ),
        Some(json!({"Version": 0, "Variables": [
            {"Name": "SiteRoot", "Value": custom.to_str().unwrap()}
        ]})),
    );
    std::fs::create_dir_all(custom.join("web-1")).unwrap();
    std::fs::write(custom.join("web-1/stale.txt"), "old").unwrap();
    let (done, log) = release_and_deploy(&server, "Site", "1.0.0");
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    for name in ["web-1", "web-2"] {
        let dir = custom.join(name);
        assert!(dir.join("Deploy.sh").is_file(), "{log}");
        assert!(!dir.join("stale.txt").exists(), "purged first: {log}");
    }
    assert!(log.contains("emptied first"), "{log}");

    // A script can come from a package, on targets and on the built-in worker.
    let tools = api(
        &server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": "Tools", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let from_package = |name: &str, roles: &str| {
        json!({"Name": name, "Properties": {"Octopus.Action.TargetRoles": roles}, "Actions": [{
            "Name": name, "ActionType": "Octopus.Script",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin"}],
            "Properties": {"Octopus.Action.Script.ScriptSource": "Package",
                           "Octopus.Action.Script.ScriptFileName": "tools/hello.sh"}}]})
    };
    api(
        &server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            tools["Id"].as_str().unwrap()
        ),
        Some(json!({"Version": 0, "Steps": [
            from_package("On targets", "web"),
            from_package("On the worker", "")
        ]})),
    );
    let (done, log) = release_and_deploy(&server, "Tools", "1.0.0");
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert_eq!(log.matches("hello from the package on").count(), 3, "{log}");
    assert!(log.contains("hello from the package on web-2"), "{log}");

    // 1.0.1 differs in 1% of its bytes: each agent gets a delta.
    let mut changed = big.clone();
    for b in &mut changed[1000..1000 + big.len() / 100] {
        *b ^= 0xff;
    }
    let v2 = zip_package(
        tmp.path(),
        "Acme.Web.1.0.1.zip",
        &package_files(changed.clone(), SETTINGS),
    );
    cli(&server, &["package", "push", v2.to_str().unwrap()]);
    let (done, log) = release_and_deploy(&server, "Web", "1.0.1");
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    let sent: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("Sent Acme.Web 1.0.1") && l.contains("as a delta"))
        .filter_map(|l| l.rsplit_once(", ")?.1.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(sent.len(), 2, "{log}");
    let size = std::fs::metadata(&v2).unwrap().len();
    for bytes in sent {
        assert!(
            bytes * 10 < size,
            "a delta of {bytes} bytes for {size}: {log}"
        );
    }
    for (dir, _) in &agents {
        let blob = dir.join("Applications/Dev/Acme.Web/1.0.1/data/blob.bin");
        assert_eq!(std::fs::read(blob).unwrap(), changed);
    }

    // The same release again: nothing is sent, and it lands beside the last.
    let (done, log) = deploy(&server, "1.0.1");
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(log.contains("web-1 already has Acme.Web 1.0.1"), "{log}");
    // Two versions kept: the first one extracted is gone.
    assert!(
        log.contains("Removed 1 older extracted version of Acme.Web (keeping 2): 1.0.0"),
        "{log}"
    );
    for (dir, _) in &agents {
        assert!(!dir.join("Applications/Dev/Acme.Web/1.0.0").exists());
        assert!(dir.join("Applications/Dev/Acme.Web/1.0.1").is_dir());
    }
    assert!(agents[0]
        .0
        .join("Applications/Dev/Acme.Web/1.0.1_1")
        .is_dir());

    // A settings file that is not JSON fails the step, naming the file.
    let broken = zip_package(
        tmp.path(),
        "Acme.Web.1.0.2.zip",
        &package_files(changed, "{ not json"),
    );
    cli(&server, &["package", "push", broken.to_str().unwrap()]);
    let (done, log) = release_and_deploy(&server, "Web", "1.0.2");
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(
        log.contains("appsettings.json") && log.contains("not valid JSON"),
        "{log}"
    );
}
