//! `cuttle host instance …`: the control plane from the command line.

use anyhow::Context;
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct InstanceArgs {
    /// The host's control plane, e.g. http://127.0.0.1:8090
    #[arg(
        long,
        env = "CUTTLE_HOST_CONTROL_URL",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    control_url: String,
    /// The control plane's token
    #[arg(
        long,
        env = "CUTTLE_HOST_CONTROL_TOKEN",
        hide_env_values = true,
        global = true
    )]
    control_token: Option<String>,
    #[command(subcommand)]
    command: InstanceCommand,
}

#[derive(clap::Subcommand, Debug)]
enum InstanceCommand {
    /// Create an instance; prints its URL and first administrator's credentials
    Create {
        /// Its name: the first label of its host name (NAME.DOMAIN)
        name: String,
        /// Most tasks it runs at once
        #[arg(long)]
        task_cap: Option<i64>,
        /// Its storage quota in MiB (0: none)
        #[arg(long)]
        storage_quota_mib: Option<i64>,
    },
    /// List the instances with their state, limits and storage used
    List,
    /// Stop serving an instance (it answers 503), keeping its data
    Suspend { name: String },
    /// Serve a suspended instance again
    Resume { name: String },
    /// Archive an instance's data under the host's archive/ and remove it
    Delete { name: String },
    /// Lease a hosted worker to an instance now (its steps lease one
    /// themselves when they need it)
    LeaseWorker { name: String },
    /// End an instance's hosted-worker lease: the worker is wiped
    ReleaseWorker { name: String },
    /// List the hosted workers' leases
    Workers,
}

pub async fn run(args: InstanceArgs) -> anyhow::Result<i32> {
    let token = args
        .control_token
        .filter(|t| !t.trim().is_empty())
        .context(
            "the control plane's token is needed: --control-token or CUTTLE_HOST_CONTROL_TOKEN",
        )?;
    let base = args.control_url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.trim());
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request
                .send()
                .await
                .with_context(|| format!("could not reach the control plane at {base}"))?;
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let message = value
                    .get("ErrorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("no message");
                anyhow::bail!("the control plane answered {status}: {message}");
            }
            Ok::<Value, anyhow::Error>(value)
        }
    };
    match args.command {
        InstanceCommand::Create {
            name,
            task_cap,
            storage_quota_mib,
        } => {
            let created = call(
                reqwest::Method::POST,
                "/instances".into(),
                Some(json!({ "Name": name, "TaskCap": task_cap, "StorageQuotaMiB": storage_quota_mib })),
            )
            .await?;
            let field = |k: &str| {
                created
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            println!(
                "Created the instance '{}' at {}",
                field("Name"),
                field("Url")
            );
            println!("Administrator: {}", field("AdminUsername"));
            println!("Password:      {}", field("AdminPassword"));
            println!("API key:       {}", field("ApiKey"));
            println!("(shown once; change the password after signing in)");
        }
        InstanceCommand::List => {
            let list = call(reqwest::Method::GET, "/instances".into(), None).await?;
            println!(
                "{:<24} {:<10} {:>8} {:>10} {:>12}  LAST ACTIVE",
                "NAME", "STATE", "TASK CAP", "QUOTA MiB", "USED MiB"
            );
            for item in list
                .get("Items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = |k: &str| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                let number = |k: &str| item.get(k).and_then(Value::as_i64).unwrap_or(0);
                let used = item
                    .get("StorageUsedBytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as f64
                    / (1024.0 * 1024.0);
                println!(
                    "{:<24} {:<10} {:>8} {:>10} {:>12.1}  {}",
                    text("Name"),
                    text("State"),
                    number("TaskCap"),
                    number("StorageQuotaMiB"),
                    used,
                    text("LastActive"),
                );
            }
        }
        InstanceCommand::Suspend { name } => {
            call(
                reqwest::Method::POST,
                format!("/instances/{name}/suspend"),
                None,
            )
            .await?;
            println!("Suspended the instance '{name}'");
        }
        InstanceCommand::Resume { name } => {
            call(
                reqwest::Method::POST,
                format!("/instances/{name}/resume"),
                None,
            )
            .await?;
            println!("Resumed the instance '{name}'");
        }
        InstanceCommand::Delete { name } => {
            let deleted = call(reqwest::Method::DELETE, format!("/instances/{name}"), None).await?;
            println!(
                "Deleted the instance '{name}'; its data is archived in {}",
                deleted
                    .get("Archive")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
            );
        }
        InstanceCommand::LeaseWorker { name } => {
            let lease = call(
                reqwest::Method::POST,
                format!("/instances/{name}/hosted-worker"),
                None,
            )
            .await?;
            let text = |k: &str| lease.get(k).and_then(Value::as_str).unwrap_or("-");
            println!(
                "Leased the hosted worker {} to '{name}' ({}, registered as {} in its pool \"Hosted Workers\")",
                text("Id"),
                text("Uri"),
                text("WorkerId"),
            );
        }
        InstanceCommand::ReleaseWorker { name } => {
            call(
                reqwest::Method::DELETE,
                format!("/instances/{name}/hosted-worker"),
                None,
            )
            .await?;
            println!("Ended the hosted-worker lease of '{name}'; its worker is wiped");
        }
        InstanceCommand::Workers => {
            let list = call(reqwest::Method::GET, "/hosted-workers".into(), None).await?;
            let size = list.get("Size").and_then(Value::as_u64).unwrap_or(0);
            let items = list
                .get("Items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let waiting = list.get("Waiting").and_then(Value::as_u64).unwrap_or(0);
            println!(
                "{} of {size} hosted workers leased; {waiting} step(s) waiting for one",
                items.len()
            );
            println!(
                "{:<20} {:<24} {:<9} {:>5}  LEASED AT",
                "WORKER", "INSTANCE", "STATE", "BUSY"
            );
            for item in items {
                let text = |k: &str| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                let busy = item.get("Busy").and_then(Value::as_u64).unwrap_or(0);
                println!(
                    "{:<20} {:<24} {:<9} {:>5}  {}",
                    text("Id"),
                    text("Instance"),
                    text("State"),
                    busy,
                    text("LeasedAt")
                );
            }
        }
    }
    Ok(0)
}
