//! The built-in worker: a user script runs as a child process of the server,
//! never inside it, in its own process group so that a timeout or a
//! cancellation kills it together with everything it started.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Bash,
    Python,
}

impl Syntax {
    pub fn parse(s: &str) -> Option<Syntax> {
        match s.to_ascii_lowercase().as_str() {
            "bash" => Some(Syntax::Bash),
            "python" => Some(Syntax::Python),
            _ => None,
        }
    }
}

pub struct ScriptSpec {
    pub syntax: Syntax,
    pub body: String,
    /// Created if missing; the script file is written here and it is the cwd.
    pub work_dir: PathBuf,
    /// Added to a cleared environment, so the server's own secrets never reach scripts.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    Exited(i32),
    Killed { signal: i32 },
    TimedOut,
    Canceled,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("{0} was not found on the worker's PATH")]
    InterpreterMissing(&'static str),
    #[error("could not prepare the script's working directory {path}: {source}")]
    Prepare { path: String, source: std::io::Error },
    #[error("could not start the script: {0}")]
    Spawn(std::io::Error),
    #[error("could not wait for the script: {0}")]
    Wait(std::io::Error),
}

/// Lines longer than this are split, so one endless line cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;
/// After the script exits, how long leftover children may keep its pipes open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// Reads a pipe and sends each line (lossy UTF-8, without its line ending).
async fn pump(mut reader: impl AsyncRead + Unpin, stream: OutputStream, tx: mpsc::UnboundedSender<(OutputStream, String)>) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let _ = tx.send((stream, String::from_utf8_lossy(line).into_owned()));
        line.clear();
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line);
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    emit(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pid) = pgid {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created for the script; it touches no memory of ours.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}

/// Runs a script to completion, its timeout, or cancellation, delivering
/// each output line to `on_line` as soon as it is read.
pub async fn run_script(
    spec: ScriptSpec,
    cancel: CancellationToken,
    mut on_line: impl FnMut(OutputStream, String) + Send,
) -> Result<ScriptOutcome, ScriptError> {
    let (interpreter, args, file): (&'static str, &[&str], &str) = match spec.syntax {
        Syntax::Bash => ("bash", &["--noprofile", "--norc"], "script.sh"),
        Syntax::Python => ("python3", &["-u"], "script.py"),
    };
    if !on_path(interpreter) {
        return Err(ScriptError::InterpreterMissing(interpreter));
    }
    let tmp = spec.work_dir.join("tmp");
    let prepare = |e| ScriptError::Prepare { path: spec.work_dir.display().to_string(), source: e };
    tokio::fs::create_dir_all(&tmp).await.map_err(prepare)?;
    tokio::fs::write(spec.work_dir.join(file), &spec.body).await.map_err(prepare)?;

    let mut cmd = Command::new(interpreter);
    cmd.args(args)
        .arg(file)
        .current_dir(&spec.work_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", &spec.work_dir)
        .env("LANG", "C.UTF-8")
        .env("TMPDIR", &tmp)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(ScriptError::Spawn)?;
    let pgid = child.id();

    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, OutputStream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, OutputStream::Stderr, tx.clone()));
    }
    drop(tx);

    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut lines_open = true;
    let outcome = loop {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, text)) => on_line(stream, text),
                None => lines_open = false,
            },
            status = child.wait() => {
                let status = status.map_err(ScriptError::Wait)?;
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(code), _) => ScriptOutcome::Exited(code),
                    (None, Some(signal)) => ScriptOutcome::Killed { signal },
                    (None, None) => ScriptOutcome::Exited(-1),
                };
            }
            _ = &mut deadline => {
                kill_group(pgid);
                let _ = child.wait().await;
                break ScriptOutcome::TimedOut;
            }
            _ = cancel.cancelled() => {
                kill_group(pgid);
                let _ = child.wait().await;
                break ScriptOutcome::Canceled;
            }
        }
    };
    // The script is gone; background children it left would hold the pipes
    // open forever, so end them and read only what is already buffered.
    kill_group(pgid);
    let drain_until = tokio::time::Instant::now() + DRAIN_GRACE;
    while lines_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some((stream, text))) => on_line(stream, text),
            Ok(None) | Err(_) => lines_open = false,
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn spec(dir: &tempfile::TempDir, body: &str, timeout_ms: u64) -> ScriptSpec {
        ScriptSpec {
            syntax: Syntax::Bash,
            body: body.into(),
            work_dir: dir.path().join("w"),
            env: vec![("GREETING".into(), "hi".into())],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    async fn run(s: ScriptSpec, cancel: CancellationToken) -> (ScriptOutcome, Vec<(OutputStream, String)>) {
        let lines = Arc::new(Mutex::new(vec![]));
        let sink = lines.clone();
        let outcome = run_script(s, cancel, move |st, l| sink.lock().unwrap().push((st, l))).await.unwrap();
        let got = lines.lock().unwrap().clone();
        (outcome, got)
    }

    #[tokio::test]
    async fn streams_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (o, lines) = run(spec(&dir, "echo one\necho two >&2\nprintf 'tail'\nexit 3", 10_000), CancellationToken::new()).await;
        assert_eq!(o, ScriptOutcome::Exited(3));
        assert!(lines.contains(&(OutputStream::Stdout, "one".into())));
        assert!(lines.contains(&(OutputStream::Stderr, "two".into())));
        assert!(lines.contains(&(OutputStream::Stdout, "tail".into())));
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        std::env::set_var("CUTTLE_TEST_SECRET", "leak");
        let dir = tempfile::tempdir().unwrap();
        let (o, lines) = run(spec(&dir, "echo \"[$CUTTLE_TEST_SECRET][$GREETING]\"", 10_000), CancellationToken::new()).await;
        assert_eq!(o, ScriptOutcome::Exited(0));
        assert_eq!(lines, vec![(OutputStream::Stdout, "[][hi]".into())]);
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let (o, lines) = run(spec(&dir, "sleep 300 &\necho $!\nsleep 300", 1000), CancellationToken::new()).await;
        assert_eq!(o, ScriptOutcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = lines[0].1.parse().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let zombie_or_gone = !alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true);
        assert!(zombie_or_gone, "the background child {pid} survived the timeout");
    }

    #[tokio::test]
    async fn cancellation_stops_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t.cancel();
        });
        let (o, _) = run(spec(&dir, "sleep 300", 60_000), token).await;
        assert_eq!(o, ScriptOutcome::Canceled);
    }

    #[tokio::test]
    async fn leftover_child_holding_stdout_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let (o, lines) = run(spec(&dir, "(sleep 300) &\necho done", 60_000), CancellationToken::new()).await;
        assert_eq!(o, ScriptOutcome::Exited(0));
        assert_eq!(lines, vec![(OutputStream::Stdout, "done".into())]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn python_runs_when_present() {
        if !on_path("python3") {
            eprintln!("skipped: python3 is not on PATH");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = ScriptSpec { syntax: Syntax::Python, ..spec(&dir, "import sys\nprint('py', sys.version_info[0])", 10_000) };
        let (o, lines) = run(s, CancellationToken::new()).await;
        assert_eq!(o, ScriptOutcome::Exited(0));
        assert_eq!(lines, vec![(OutputStream::Stdout, "py 3".into())]);
    }
}
