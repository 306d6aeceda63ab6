//! Scripts on the built-in worker cannot read the server's secrets (design
//! principle 3): a deployment that tries to print the master key gets nothing.

mod common;

use common::on_both;
use serde_json::json;

#[tokio::test]
async fn a_deployment_script_cannot_read_the_master_key() {
    on_both("sandbox-master-key", |s| async move {
        let data_dir = s.inst.config.data_dir.clone();
        let key_path = data_dir.join("master.key");
        let key = std::fs::read_to_string(&key_path).expect("the server created its master key");
        let key = key.trim().to_owned();
        assert!(key.len() >= 32, "{key}");
        let script = format!(
            "cat '{k}'; echo \"cat exited $?\"; ls -A '{d}' || true; cat '{d}/cuttle.db' | head -c 16 | od -c | head -1",
            k = key_path.display(),
            d = data_dir.display()
        );
        s.project_with_script("Snoop", &script, json!({})).await;
        let task = s.release_and_deploy("Snoop", "1.0.0").await;
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Success", "{t}");
        let lines = s.log_lines(&task).await;
        let text: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();

        let sandbox = s.inst.runner.sandbox();
        eprintln!("{}: isolation: {sandbox}", s.backend);
        if !sandbox.namespaces() && sandbox.user().is_none() {
            // A server running as an ordinary user without bubblewrap has no
            // way to stop it: the report says so, and the key is readable.
            assert!(sandbox.to_string().contains("can read whatever the server can"));
            assert!(text.iter().any(|l| l.contains(&key)), "{text:?}");
            assert!(
                std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none(),
                "no isolation applies: {sandbox}"
            );
            eprintln!("WARNING: no isolation here, so the key was readable");
            return;
        }
        assert!(
            !text.iter().any(|l| l.contains(&key)),
            "{}: the key leaked: {text:?}",
            s.backend
        );
        assert!(text.contains(&"cat exited 1"), "{text:?}");
        // Neither the key nor the database is even listed.
        assert!(!text.iter().any(|l| *l == "master.key" || *l == "cuttle.db"), "{text:?}");
        if sandbox.namespaces() {
            // An empty tmpfs but for the way to the script's own directory.
            assert!(text.contains(&"work"), "{text:?}");
            assert!(text.iter().any(|l| l.contains("No such file or directory")), "{text:?}");
        } else {
            assert!(text.iter().any(|l| l.contains("Permission denied")), "{text:?}");
        }
    })
    .await;
}
