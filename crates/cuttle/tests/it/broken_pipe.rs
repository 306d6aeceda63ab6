//! `cuttle … | head -1`: a verb whose reader goes away exits quietly, as
//! Unix filters do (ended by SIGPIPE, which shells report as 141), rather
//! than panicking or printing an error about its own output. Real binary,
//! real pipes; the server verbs against a real server process on SQLite,
//! and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use serde_json::json;
use support::agents::{api, wait_task};
use support::{on_both, ServerProcess, BIN, KEY};

/// When the reader goes away: at once, or after the first line.
enum Reader {
    Closed,
    OneLine,
}

/// Runs `cmd` with its stdout to a pipe whose reader goes away early, and
/// insists that it ends quietly: nothing on stderr, and either success or
/// the end SIGPIPE gives, never a panic or another signal.
fn quiet_when_the_reader_goes(what: &str, mut cmd: Command, reader: Reader) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cuttle");
    let stdout = child.stdout.take().expect("stdout");
    match reader {
        Reader::Closed => drop(stdout),
        Reader::OneLine => {
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("read the first line");
            assert!(!line.is_empty(), "{what}: printed nothing");
        }
    }
    let out = child.wait_with_output().expect("wait for cuttle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "{what}: said something about its closed output ({}):\n{stderr}",
        out.status
    );
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what}: ended with {}",
        out.status
    );
}

fn cuttle(server: Option<&ServerProcess>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CUTTLE_SERVER")
        .env_remove("CUTTLE_API_KEY")
        .env_remove("CUTTLE_SPACE");
    if let Some(s) = server {
        cmd.env("CUTTLE_SERVER", &s.url).env("CUTTLE_API_KEY", KEY);
    }
    cmd
}

#[test]
fn fault_a_closed_pipe_ends_a_local_verb_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("big.txt");
    let text: String = (0..200_000)
        .map(|i| format!("#{{Greeting}} {i}\n"))
        .collect();
    std::fs::write(&template, text).unwrap();
    let variables = dir.path().join("vars.json");
    std::fs::write(&variables, json!({"Greeting": "hello"}).to_string()).unwrap();
    let args = [
        "vars",
        "render",
        "--variables",
        variables.to_str().unwrap(),
        template.to_str().unwrap(),
    ];
    quiet_when_the_reader_goes("vars render", cuttle(None, &args), Reader::OneLine);
    quiet_when_the_reader_goes("vars render", cuttle(None, &args), Reader::Closed);
    quiet_when_the_reader_goes("--help", cuttle(None, &["--help"]), Reader::Closed);
}

#[test]
fn fault_a_closed_pipe_ends_server_verbs_quietly() {
    on_both("broken_pipe", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("Acme.Web.1.0.0.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&package).unwrap());
        zip.start_file("hello.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, b"hello\n").unwrap();
        zip.finish().unwrap();
        let pushed = cuttle(
            Some(&server),
            &["package", "push", package.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert!(pushed.status.success(), "{pushed:?}");
        let task = api(
            &server,
            "POST",
            "/api/tasks",
            Some(json!({"Name": "Health", "SpaceId": "Spaces-1"})),
        );
        let id = task["Id"].as_str().unwrap().to_owned();
        wait_task(&server, &id, std::time::Duration::from_secs(60));

        for args in [vec!["package", "list"], vec!["task", "watch", &id]] {
            quiet_when_the_reader_goes(
                &args.join(" "),
                cuttle(Some(&server), &args),
                Reader::Closed,
            );
        }
    });
}

#[test]
fn fault_a_service_outlives_its_closed_output() {
    // A server whose output nobody reads any more keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let port = support::agents::free_port();
    let mut server = Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--polling-listen", "off", "--data-dir"])
        .arg(dir.path())
        .env("CUTTLE_ADMIN_API_KEY", KEY)
        .env("CUTTLE_ADMIN_PASSWORD", support::PASSWORD)
        .env_remove("CUTTLE_DATABASE_URL")
        .env_remove("CUTTLE_MASTER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    drop(server.stdout.take());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answered = loop {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("the server ended with {status}");
        }
        let ok = answers(port);
        if ok || std::time::Instant::now() > until {
            break ok;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(answered, "the server never answered");
}

/// Whether `GET /api` on the port answers 200.
fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    tcp.write_all(b"GET /api HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .and_then(|()| tcp.read_to_string(&mut answer))
        .is_ok_and(|_| answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
}
