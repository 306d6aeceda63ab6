//! The built-in worker: a user script runs as a child process of the server,
//! never inside it, in its own process group and under its step's isolation
//! ([`crate::sandbox::Step`]), so that its end, a timeout or a cancellation
//! kills it together with everything it started.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use crate::sandbox::{Sandbox, SandboxError};

/// The languages the built-in worker can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Bash,
    Python,
}

impl Syntax {
    /// Parses a script syntax name as stored on an action, ignoring case.
    pub fn parse(name: &str) -> Option<Syntax> {
        if name.eq_ignore_ascii_case("Bash") {
            Some(Syntax::Bash)
        } else if name.eq_ignore_ascii_case("Python") {
            Some(Syntax::Python)
        } else {
            None
        }
    }

    /// The interpreter, its arguments before the script, and the script's
    /// and bootstrap's file names.
    fn invocation(
        self,
    ) -> (
        &'static str,
        &'static [&'static str],
        &'static str,
        &'static str,
    ) {
        match self {
            // No profile or rc files: the script sees only what it was given.
            Syntax::Bash => (
                "bash",
                &["--noprofile", "--norc"],
                "script.sh",
                "bootstrap.sh",
            ),
            // Unbuffered, so output streams to the log as it is printed.
            Syntax::Python => ("python3", &["-u"], "script.py", "bootstrap.py"),
        }
    }
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    pub syntax: Syntax,
    pub body: String,
    /// Created if missing; the script file is written here and it is the cwd.
    pub work_dir: PathBuf,
    /// Added to a cleared environment (only PATH is inherited; HOME, LANG and
    /// TMPDIR are set), so the server's own secrets never reach scripts.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Run instead of the script, with the script's file name as its first
    /// argument; it defines helper functions and then runs the script.
    pub bootstrap: Option<String>,
    /// Written beside the script, readable by the owner only (they may hold
    /// sensitive values).
    pub files: Vec<(String, String)>,
    /// The isolation the script runs under.
    pub sandbox: Arc<Sandbox>,
}

/// Which pipe a line of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A line a script printed, or a piece of one: a line longer than
/// [`MAX_LINE`] bytes is delivered in pieces, each but the last marked
/// `continues`, so that whoever masks secrets can join what a cut divides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    pub text: String,
    /// The line goes on in the next piece of the same stream.
    pub continues: bool,
}

impl OutputLine {
    /// A whole line.
    pub fn whole(text: impl Into<String>) -> Self {
        OutputLine {
            text: text.into(),
            continues: false,
        }
    }
}

/// How a script run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// The script exited by itself with this code.
    Exited(i32),
    /// Something other than the runner killed the script with this signal.
    Killed { signal: i32 },
    /// The script ran past its timeout; it and its children were killed.
    TimedOut,
    /// The run was canceled; the script and its children were killed.
    Canceled,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("{0} was not found on the worker's PATH")]
    InterpreterNotFound(&'static str),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> ScriptError {
    let context = context.into();
    move |source| ScriptError::Io { context, source }
}

/// Writes a file that only the server's user can read.
async fn write_private(path: &Path, content: &str) -> Result<(), ScriptError> {
    use tokio::io::AsyncWriteExt;
    let context = || format!("writing {}", path.display());
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(io_context(context()))?;
    file.write_all(content.as_bytes())
        .await
        .map_err(io_context(context()))?;
    // Tokio hands writes to a background thread: without this the script
    // could start before its file is complete.
    file.flush().await.map_err(io_context(context()))
}

/// Lines longer than this are split, so one endless line cannot exhaust memory.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes read from a script's pipe at once (a Linux pipe holds 64 KiB).
const PIPE_READ: usize = 64 * 1024;
/// Once the script has exited, how long a process that escaped its group may
/// keep the pipes open before we stop reading.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// Used when the server itself has no PATH, as shells do.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts `command` on a thread that lives until the returned guard is
/// dropped, so that the child's parent-death signal fires only when the
/// step is over (or the server itself ends).
async fn spawn_on_own_thread(
    mut command: tokio::process::Command,
) -> (
    io::Result<tokio::process::Child>,
    std::sync::mpsc::Sender<()>,
) {
    let (started, spawned) = tokio::sync::oneshot::channel();
    let (guard, over) = std::sync::mpsc::channel::<()>();
    // The child is registered with this runtime's reactor.
    let runtime = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("cuttle-step".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            let _ = started.send(command.spawn());
            // Until the guard is dropped: nothing is ever sent.
            let _ = over.recv();
        });
    let result = match thread {
        Ok(_) => spawned
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the step's starting thread ended"))),
        Err(e) => Err(e),
    };
    (result, guard)
}

/// Runs a script until it exits, times out or is canceled, delivering each
/// output line to `on_line` as soon as it is read.
pub async fn run_script(
    spec: ScriptSpec,
    cancel: CancellationToken,
    on_line: impl FnMut(OutputStream, OutputLine) + Send,
) -> Result<ScriptOutcome, ScriptError> {
    run_script_paced(spec, cancel, on_line, || std::future::ready(())).await
}

/// How many lines, or bytes of them, are read between two waits for
/// `settled`.
const PACE_LINES: usize = 256;
const PACE_BYTES: usize = 256 * 1024;

/// Counts lines read since the last wait for the caller to settle.
#[derive(Default)]
struct Pace {
    lines: usize,
    bytes: usize,
}

impl Pace {
    /// Counts a line of `len` bytes; whether it is time to wait.
    fn due(&mut self, len: usize) -> bool {
        self.lines += 1;
        self.bytes += len;
        if self.lines >= PACE_LINES || self.bytes >= PACE_BYTES {
            *self = Pace::default();
            return true;
        }
        false
    }
}

/// As [`run_script`], awaiting `settled` after every [`PACE_LINES`] lines
/// or [`PACE_BYTES`] of them:
/// the output is read no faster than the caller keeps it (a task log's
/// store), so a script printing without pause waits on its pipe instead of
/// piling its lines up in memory.
pub async fn run_script_paced<S: std::future::Future<Output = ()>>(
    spec: ScriptSpec,
    cancel: CancellationToken,
    mut on_line: impl FnMut(OutputStream, OutputLine) + Send,
    settled: impl Fn() -> S,
) -> Result<ScriptOutcome, ScriptError> {
    let (interpreter, args, file_name, bootstrap_name) = spec.syntax.invocation();
    // First: a refused script gets no directory either.
    let mut step = spec.sandbox.step()?;
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let path = spec.sandbox.search_path(&path);
    let program =
        find_on_path(interpreter, &path).ok_or(ScriptError::InterpreterNotFound(interpreter))?;

    let dir_context = || format!("creating the working directory {}", spec.work_dir.display());
    tokio::fs::create_dir_all(&spec.work_dir)
        .await
        .map_err(io_context(dir_context()))?;
    // Absolute, so HOME and TMPDIR mean the same thing wherever the script cds to.
    let work_dir = tokio::fs::canonicalize(&spec.work_dir)
        .await
        .map_err(io_context(dir_context()))?;
    let tmp = work_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(io_context(format!("creating {}", tmp.display())))?;
    let script = work_dir.join(file_name);
    tokio::fs::write(&script, &spec.body)
        .await
        .map_err(io_context(format!(
            "writing the script to {}",
            script.display()
        )))?;
    for (name, content) in &spec.files {
        write_private(&work_dir.join(name), content).await?;
    }
    let mut command = step.command(&program, &work_dir);
    command.args(args);
    if let Some(bootstrap) = &spec.bootstrap {
        write_private(&work_dir.join(bootstrap_name), bootstrap).await?;
        command.arg(bootstrap_name);
    }
    // Last, so that everything written above is handed to the script's user.
    step.prepare(&work_dir).await?;
    command
        .arg(file_name)
        .current_dir(&work_dir)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &work_dir)
        .env("LANG", "C.UTF-8")
        .env("TMPDIR", &tmp)
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so one kill reaches everything the script starts.
        .process_group(0)
        .kill_on_drop(true);
    // spawn() waits until the child has exec'd, and joining a cgroup on the
    // way can take a kernel grace period (milliseconds): not on the async
    // threads. Nor on the blocking pool: the step's processes are killed
    // when the *thread* that started them ends (PR_SET_PDEATHSIG is per
    // thread), and the pool ends a thread idle for ten seconds, which killed
    // any longer script on a quiet server. A thread of its own lives until
    // the step is over (`_starter` dropped).
    let (spawned, _starter) = spawn_on_own_thread(command).await;
    let mut child = spawned.map_err(io_context(format!("starting {}", program.display())))?;
    let mut group = ProcessGroup::of(&child);
    let mut stdout = child.stdout.take().map(LineReader::new);
    let mut stderr = child.stderr.take().map(LineReader::new);

    let deadline = sleep(spec.timeout);
    let grace = sleep(Duration::MAX);
    tokio::pin!(deadline, grace);
    let mut status: Option<ExitStatus> = None;
    let mut pace = Pace::default();
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            line = next_line(&mut stdout) => match line.map_err(io_context("reading the script's stdout"))? {
                Some(line) => {
                    let reader = stdout.as_mut().expect("a line came from an open pipe");
                    deliver(OutputStream::Stdout, line, reader, &mut pace, &mut on_line, &settled).await;
                }
                None => stdout = None,
            },
            line = next_line(&mut stderr) => match line.map_err(io_context("reading the script's stderr"))? {
                Some(line) => {
                    let reader = stderr.as_mut().expect("a line came from an open pipe");
                    deliver(OutputStream::Stderr, line, reader, &mut pace, &mut on_line, &settled).await;
                }
                None => stderr = None,
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit.map_err(io_context("waiting for the script"))?);
                // Background children it left behind are part of the step and
                // must not outlive it (nor hold the pipes open). The leader is
                // reaped already, but while any member lives the group id
                // cannot be reused, and an empty group just gives ESRCH.
                // The step's isolation reaches those that left the group.
                group.kill();
                step.kill();
                grace.as_mut().reset(Instant::now() + DRAIN_GRACE);
            }
            () = &mut grace, if status.is_some() => break,
            () = &mut deadline, if status.is_none() => {
                step.kill();
                return group.kill_and_reap(&mut child, ScriptOutcome::TimedOut).await;
            }
            () = cancel.cancelled(), if status.is_none() => {
                step.kill();
                return group.kill_and_reap(&mut child, ScriptOutcome::Canceled).await;
            }
        }
    }
    let status = status.expect("the loop ends only after the script exited");
    Ok(match status.code() {
        Some(code) => ScriptOutcome::Exited(code),
        // On Unix, a reaped process without an exit code was ended by a signal.
        None => ScriptOutcome::Killed {
            signal: status.signal().unwrap_or_default(),
        },
    })
}

/// Hands `line` to `on_line`, then every other whole line already read
/// from the same pipe: a flood of output costs one turn of the `select!`
/// per buffer read rather than per line. Waits for `settled` at the pace.
async fn deliver<R: AsyncRead + Unpin, S: std::future::Future<Output = ()>>(
    stream: OutputStream,
    line: OutputLine,
    reader: &mut LineReader<R>,
    pace: &mut Pace,
    on_line: &mut impl FnMut(OutputStream, OutputLine),
    settled: &impl Fn() -> S,
) {
    let mut next = Some(line);
    while let Some(line) = next {
        let due = pace.due(line.text.len());
        on_line(stream, line);
        if due {
            settled().await;
        }
        next = reader.buffered_line();
    }
}

/// The next line from a pipe, or never if the pipe is already closed, so a
/// closed pipe simply drops out of the `select!`.
async fn next_line<R: AsyncRead + Unpin>(
    reader: &mut Option<LineReader<R>>,
) -> io::Result<Option<OutputLine>> {
    match reader {
        Some(reader) => reader.next_line().await,
        None => std::future::pending().await,
    }
}

/// The script's process group. Dropping it kills the group, so even a run
/// whose future is abandoned half-way leaves no processes behind.
struct ProcessGroup(Option<libc::pid_t>);

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        // The child was spawned as the leader of a new group, so its pid is the group id.
        ProcessGroup(child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()))
    }

    /// Kills the group once; later calls do nothing, so a reused id is never signalled.
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) touches no memory of ours; a negative pid
            // addresses the whole group created for the script.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }

    async fn kill_and_reap(
        mut self,
        child: &mut tokio::process::Child,
        outcome: ScriptOutcome,
    ) -> Result<ScriptOutcome, ScriptError> {
        // Killed before reaping: until then the leader's pid, and so the group
        // id, cannot be reused by an unrelated process.
        self.kill();
        child
            .wait()
            .await
            .map_err(io_context("waiting for the killed script"))?;
        Ok(outcome)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Splits a pipe into lines: lossy UTF-8, without the line ending, and at
/// most `MAX_LINE` bytes each.
struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R) -> Self {
        LineReader {
            // A pipe's whole capacity at one read.
            reader: BufReader::with_capacity(PIPE_READ, reader),
            line: Vec::new(),
        }
    }

    /// Cancel-safe: the partial line lives in `self`, and the only await is
    /// `fill_buf`, which loses nothing when dropped.
    async fn next_line(&mut self) -> io::Result<Option<OutputLine>> {
        loop {
            if self.reader.fill_buf().await?.is_empty() {
                // End of the pipe: a last line without a newline still counts.
                return Ok((!self.line.is_empty())
                    .then(|| OutputLine::whole(take_line(&mut self.line, usize::MAX))));
            }
            if let Some(line) = self.buffered_line() {
                return Ok(Some(line));
            }
        }
    }

    /// The next line (or [`MAX_LINE`] piece of one) out of what was read
    /// already, without reading more; `None` once what is left ends mid-line
    /// (that part is kept for the next line).
    fn buffered_line(&mut self) -> Option<OutputLine> {
        let available = self.reader.buffer();
        if available.is_empty() {
            return None;
        }
        let window = &available[..available.len().min(MAX_LINE - self.line.len())];
        if let Some(newline) = window.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&window[..newline]);
            self.reader.consume(newline + 1);
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            return Some(OutputLine::whole(take_line(&mut self.line, usize::MAX)));
        }
        let taken = window.len();
        self.line.extend_from_slice(window);
        self.reader.consume(taken);
        if self.line.len() >= MAX_LINE {
            let cut = char_boundary_before_end(&self.line);
            return Some(OutputLine {
                text: take_line(&mut self.line, cut),
                continues: true,
            });
        }
        None
    }
}

/// Takes the first `len` bytes of `line` as a string, leaving the rest.
fn take_line(line: &mut Vec<u8>, len: usize) -> String {
    let rest = line.split_off(len.min(line.len()));
    let taken = std::mem::replace(line, rest);
    String::from_utf8(taken).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Where to split an over-long line so that a UTF-8 character cut off by the
/// split is carried over whole rather than mangled into replacement characters.
fn char_boundary_before_end(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 != 0x80 {
            // The first byte of the last character: does the character fit?
            let width = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if width > back {
                bytes.len() - back
            } else {
                bytes.len()
            };
        }
    }
    bytes.len()
}

/// The first executable file called `name` in the directories of `path`.
pub(crate) fn find_on_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    type Lines = Vec<(OutputStream, String)>;

    fn bash(dir: &tempfile::TempDir, body: &str, timeout: Duration) -> ScriptSpec {
        ScriptSpec {
            syntax: Syntax::Bash,
            body: body.into(),
            work_dir: dir.path().join("work"),
            env: vec![],
            timeout,
            bootstrap: None,
            files: vec![],
            sandbox: Arc::new(Sandbox::none()),
        }
    }

    async fn run(spec: ScriptSpec, cancel: CancellationToken) -> (ScriptOutcome, Lines) {
        let mut lines = Vec::new();
        let outcome = run_script(spec, cancel, |stream, line: OutputLine| {
            lines.push((stream, line.text))
        })
        .await
        .expect("the script runs");
        (outcome, lines)
    }

    fn stdout(line: &str) -> (OutputStream, String) {
        (OutputStream::Stdout, line.into())
    }

    /// Alive and not merely a zombie waiting for init to reap it.
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    async fn wait_until_gone(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(3);
        while running(pid) {
            if Instant::now() > until {
                return false;
            }
            sleep(Duration::from_millis(20)).await;
        }
        true
    }

    #[test]
    fn parses_syntax_names() {
        assert_eq!(Syntax::parse("bash"), Some(Syntax::Bash));
        assert_eq!(Syntax::parse("Python"), Some(Syntax::Python));
        assert_eq!(Syntax::parse("PowerShell"), None);
    }

    #[test]
    fn missing_interpreter_is_named() {
        assert_eq!(find_on_path("python3", OsStr::new("/nonexistent")), None);
        let error = ScriptError::InterpreterNotFound("python3");
        assert_eq!(
            error.to_string(),
            "python3 was not found on the worker's PATH"
        );
    }

    #[tokio::test]
    async fn splits_lines_and_long_lines() {
        let mut input = b"one\r\ntwo\n\n".to_vec();
        // A three-byte character straddling the split point stays whole.
        input.resize(input.len() + MAX_LINE - 1, b'x');
        input.extend("€tail".as_bytes());
        let mut reader = LineReader::new(&input[..]);
        let mut lines = Vec::new();
        let mut continues = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            lines.push(line.text);
            continues.push(line.continues);
        }
        assert_eq!(lines[..3], ["one", "two", ""]);
        assert_eq!(lines[3], "x".repeat(MAX_LINE - 1));
        assert_eq!(lines[4], "€tail");
        assert_eq!(lines.len(), 5);
        // Only the cut piece says its line goes on.
        assert_eq!(continues, [false, false, false, true, false]);
    }

    #[tokio::test]
    async fn delivers_each_stream_and_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let body = "echo out\necho err >&2\nprintf 'no newline'\nexit 3\n";
        let (outcome, lines) = run(
            bash(&dir, body, Duration::from_secs(10)),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome, ScriptOutcome::Exited(3));
        let of = |stream| -> Vec<&str> {
            lines
                .iter()
                .filter(|(s, _)| *s == stream)
                .map(|(_, l)| l.as_str())
                .collect()
        };
        assert_eq!(of(OutputStream::Stdout), ["out", "no newline"]);
        assert_eq!(of(OutputStream::Stderr), ["err"]);
    }

    #[tokio::test]
    async fn a_signal_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spec = bash(&dir, "kill -TERM $$", Duration::from_secs(10));
        let (outcome, _) = run(spec, CancellationToken::new()).await;
        assert_eq!(
            outcome,
            ScriptOutcome::Killed {
                signal: libc::SIGTERM
            }
        );
    }

    #[tokio::test]
    async fn the_environment_is_cleared() {
        std::env::set_var("CUTTLE_SCRIPT_TEST_SECRET", "leaked");
        let dir = tempfile::tempdir().unwrap();
        let mut spec = bash(
            &dir,
            "echo \"${CUTTLE_SCRIPT_TEST_SECRET-unset} $GIVEN $LANG\"\n[ \"$HOME\" = \"$PWD\" ] && [ -d \"$TMPDIR\" ] && echo home",
            Duration::from_secs(10),
        );
        spec.env.push(("GIVEN".into(), "given".into()));
        let (outcome, lines) = run(spec, CancellationToken::new()).await;
        assert_eq!(outcome, ScriptOutcome::Exited(0));
        assert_eq!(lines, [stdout("unset given C.UTF-8"), stdout("home")]);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let body = "sleep 300 &\necho $!\nsleep 300\n";
        let started = Instant::now();
        let (outcome, lines) = run(
            bash(&dir, body, Duration::from_secs(1)),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome, ScriptOutcome::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        let pid: i32 = lines[0].1.parse().unwrap();
        assert!(
            wait_until_gone(pid).await,
            "the background sleep {pid} survived"
        );
    }

    #[tokio::test]
    async fn cancellation_kills_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let (outcome, _) = run(bash(&dir, "sleep 300", Duration::from_secs(60)), cancel).await;
        assert_eq!(outcome, ScriptOutcome::Canceled);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_background_child_holding_stdout_does_not_hang_the_run() {
        let dir = tempfile::tempdir().unwrap();
        // An ordinary background child dies with the group. One that escaped
        // into its own session with setsid survives that and keeps the pipes
        // open, so only the drain grace ends the run; it writes its pid once it
        // has escaped, so the script cannot exit before then.
        let body = "sleep 300 &
setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' &
until [ -s escaped.pid ]; do sleep 0.01; done
cat escaped.pid
echo done
";
        let started = Instant::now();
        let (outcome, lines) = run(
            bash(&dir, body, Duration::from_secs(60)),
            CancellationToken::new(),
        )
        .await;
        let took = started.elapsed();
        let escaped: i32 = lines[0].1.parse().unwrap();
        // SAFETY: signals only the process this test started.
        unsafe { libc::kill(escaped, libc::SIGKILL) };
        assert_eq!(outcome, ScriptOutcome::Exited(0));
        assert_eq!(lines[1..], [stdout("done")]);
        assert!(
            took >= DRAIN_GRACE,
            "the setsid child did not hold the pipes"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[tokio::test]
    async fn python_runs_when_present() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if find_on_path("python3", &path).is_none() {
            eprintln!("skipped: python3 is not on PATH");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = ScriptSpec {
            syntax: Syntax::Python,
            ..bash(
                &dir,
                "import sys\nprint('py', sys.version_info[0])\nsys.exit(4)\n",
                Duration::from_secs(10),
            )
        };
        let (outcome, lines) = run(spec, CancellationToken::new()).await;
        assert_eq!(outcome, ScriptOutcome::Exited(4));
        assert_eq!(lines, [stdout("py 3")]);
    }
}
