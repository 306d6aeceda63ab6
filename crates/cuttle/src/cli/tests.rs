//! The verbs end to end against a canned HTTP server on loopback.

use std::sync::{Arc, Mutex};

use clap::{CommandFactory as _, Parser};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpListener,
};

use super::*;

/// The CLI as `main` is expected to assemble it.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand, Debug)]
enum Verb {
    #[command(subcommand)]
    Release(ReleaseCommand),
    Deploy(DeployArgs),
    #[command(subcommand)]
    Task(TaskCommand),
}

#[test]
fn arguments_parse_as_documented() {
    Cli::command().debug_assert();

    let cli = Cli::try_parse_from([
        "cuttle",
        "release",
        "create",
        "--project",
        "Hello",
        "--version",
        "1.2.3",
        "--server",
        "http://h",
        "--space",
        "Spaces-2",
    ])
    .unwrap();
    assert_eq!(cli.conn.server.as_deref(), Some("http://h"));
    assert_eq!(cli.conn.space, "Spaces-2");
    let Verb::Release(ReleaseCommand::Create {
        project,
        version,
        channel,
        ..
    }) = cli.verb
    else {
        panic!()
    };
    assert_eq!(
        (project.as_str(), version.as_deref(), channel),
        ("Hello", Some("1.2.3"), None)
    );

    let cli = Cli::try_parse_from([
        "cuttle",
        "deploy",
        "--project",
        "Hello",
        "--release",
        "1.2.3",
        "--environment",
        "Dev",
        "--environment",
        "Test",
        "--wait",
    ])
    .unwrap();
    let Verb::Deploy(args) = cli.verb else {
        panic!()
    };
    assert_eq!(args.environments, ["Dev", "Test"]);
    assert!(args.wait && !args.guided_failure);
    assert!(
        Cli::try_parse_from(["cuttle", "deploy", "--project", "Hello", "--release", "1"]).is_err()
    );

    let cli = Cli::try_parse_from([
        "cuttle",
        "--api-key",
        "API-X",
        "task",
        "watch",
        "ServerTasks-5",
    ])
    .unwrap();
    assert_eq!(cli.conn.api_key.as_deref(), Some("API-X"));
    assert!(matches!(cli.verb, Verb::Task(TaskCommand::Watch { id }) if id == "ServerTasks-5"));
}

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    api_key: Option<String>,
    body: Value,
}

/// Serves `answer(request, how many requests came before)` on loopback,
/// one connection per request, and records every request.
async fn fake_server(
    answer: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static,
) -> (Connection, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let conn = Connection {
        server: Some(format!("http://{}", listener.local_addr().unwrap())),
        api_key: Some("API-TEST".into()),
        space: "Default".into(),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            let mut parts = line.split_whitespace().map(str::to_owned);
            let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
            let (mut length, mut api_key) = (0, None);
            loop {
                line.clear();
                stream.read_line(&mut line).await.unwrap();
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "x-octopus-apikey" => api_key = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.unwrap();
            let request = Seen {
                method,
                target,
                api_key,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            };
            let (status, reply) = {
                let mut log = log.lock().unwrap();
                let reply = answer(&request, log.len());
                log.push(request);
                reply
            };
            let reply = reply.to_string();
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (conn, seen)
}

fn spaces() -> Value {
    json!({"Items": [{"Id": "Spaces-7", "Name": "Default Two"}, {"Id": "Spaces-1", "Name": "Default"}], "TotalResults": 2})
}

fn details_doc(id: &str, state: &str, error: &str) -> Value {
    let done = state != "Executing";
    json!({
        "Task": {"Id": id, "State": state, "IsCompleted": done, "FinishedSuccessfully": state == "Success", "ErrorMessage": error},
        "ActivityLogs": [{"Id": id, "Name": format!("Deploy ({id})"), "Children": [], "LogElements": [
            {"Category": "Info", "OccurredAt": "2024-05-01T10:42:01Z", "MessageText": format!("{id} ran")}
        ]}],
    })
}

#[tokio::test]
async fn release_create_resolves_the_space_then_creates() {
    let (conn, seen) = fake_server(|req, _| match req.target.as_str() {
        t if t.starts_with("/api/spaces?") => (200, spaces()),
        "/api/Spaces-1/releases/create/v1" => (
            201,
            json!({"ReleaseId": "Releases-3", "ReleaseVersion": "0.0.1"}),
        ),
        _ => (404, json!({"ErrorMessage": "no route", "Errors": []})),
    })
    .await;
    let cmd = ReleaseCommand::Create {
        project: "Hello".into(),
        version: None,
        channel: Some("Beta".into()),
        release_notes: None,
    };
    let mut out = Vec::new();
    assert_eq!(run_release(&conn, cmd, &mut out).await.unwrap(), 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Created release 0.0.1 (Releases-3) of Hello\n"
    );

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].target,
        "/api/spaces?partialName=Default&skip=0&take=2147483647"
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].body.clone()),
        (
            "POST",
            json!({"ProjectName": "Hello", "ChannelName": "Beta"})
        )
    );
    assert!(seen
        .iter()
        .all(|r| r.api_key.as_deref() == Some("API-TEST")));
}

#[tokio::test]
async fn refusals_exit_1_and_unknown_spaces_are_errors() {
    let (mut conn, _) = fake_server(|req, _| match req.target.as_str() {
        t if t.starts_with("/api/spaces?") => (200, spaces()),
        _ => (404, json!({"ErrorMessage": "There was a problem", "Errors": ["No project is named 'Nope'"]})),
    })
    .await;
    let cmd = || ReleaseCommand::Create {
        project: "Nope".into(),
        version: None,
        channel: None,
        release_notes: None,
    };
    assert_eq!(release(&conn, cmd()).await.unwrap(), 1);

    conn.space = "default".into();
    let err = release(&conn, cmd()).await.unwrap_err().to_string();
    assert!(err.contains(r#"no space is named "default""#), "{err}");
}

#[tokio::test]
async fn deploy_waits_for_every_task_and_fails_if_any_did() {
    let (mut conn, seen) = fake_server(|req, n| match req.target.as_str() {
        "/api/Spaces-2/deployments/create/untenanted/v1" => (
            201,
            json!({"DeploymentServerTasks": [
                {"DeploymentId": "Deployments-1", "ServerTaskId": "ServerTasks-1"},
                {"DeploymentId": "Deployments-2", "ServerTaskId": "ServerTasks-2"},
            ]}),
        ),
        // The first poll of ServerTasks-1 finds it still running.
        "/api/tasks/ServerTasks-1/details?verbose=true" if n == 1 => {
            (200, details_doc("ServerTasks-1", "Executing", ""))
        }
        "/api/tasks/ServerTasks-1/details?verbose=true" => {
            (200, details_doc("ServerTasks-1", "Success", ""))
        }
        "/api/tasks/ServerTasks-2/details?verbose=true" => {
            (200, details_doc("ServerTasks-2", "Failed", "Step 1 failed"))
        }
        _ => (404, json!({"ErrorMessage": "no route", "Errors": []})),
    })
    .await;
    conn.space = "Spaces-2".into();
    let args = DeployArgs {
        project: "Hello".into(),
        release: "0.0.1".into(),
        environments: vec!["Dev".into(), "Test".into()],
        wait: true,
        guided_failure: true,
    };
    let mut out = Vec::new();
    assert_eq!(run_deploy(&conn, args, &mut out, false).await.unwrap(), 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Queued Deployments-1 as task ServerTasks-1\n\
         Queued Deployments-2 as task ServerTasks-2\n\
         \n\
         Deploy (ServerTasks-1)\n\
         \x20 10:42:01  Info     ServerTasks-1 ran\n\
         Task ServerTasks-1 finished: Success\n\
         \n\
         Deploy (ServerTasks-2)\n\
         \x20 10:42:01  Info     ServerTasks-2 ran\n\
         Task ServerTasks-2 finished: Failed: Step 1 failed\n"
    );
    assert_eq!(
        seen.lock().unwrap()[0].body,
        json!({"ProjectName": "Hello", "ReleaseVersion": "0.0.1", "EnvironmentNames": ["Dev", "Test"], "UseGuidedFailure": true})
    );
}

#[tokio::test]
async fn task_watch_of_an_unknown_task_exits_1() {
    let (conn, _) = fake_server(|_, _| {
        (
            404,
            json!({"ErrorMessage": "No task is ServerTasks-9", "Errors": []}),
        )
    })
    .await;
    let cmd = TaskCommand::Watch {
        id: "ServerTasks-9".into(),
    };
    assert_eq!(task(&conn, cmd).await.unwrap(), 1);
}
