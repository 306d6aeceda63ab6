//! The agent's side of running scripts: an [`AgentService`] that starts the
//! server's scripts with [`run_script`], keeps their lines and outcome in
//! memory, and answers the server's long polls from them.
//!
//! Everything lives in memory on purpose: a script is a child of the agent
//! process, so when the agent restarts its scripts are gone with it, and
//! the server hears "unknown script" rather than a stale record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cuttle_protocol::messages::{
    valid_script_id, Hello, ScriptLine, ScriptState, ScriptStatus, ScriptStream, ScriptSyntax,
    StartScript,
};
use cuttle_protocol::messages::{FileList, FileStatus, MAX_STATUS_LINES_JSON};
use cuttle_protocol::service::{AgentService, FileError, MAX_WAIT};
use hyper::body::Bytes;

use crate::agent_files::FileCache;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sandbox::Sandbox;
use crate::script::{run_script, OutputLine, OutputStream, ScriptOutcome, ScriptSpec, Syntax};

/// Used when a request gives no timeout (`TimeoutSeconds: 0`), so that no
/// script can run forever unattended.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The most lines kept per script. A script printing more gets one marker
/// line in their place: the server has streamed the lines as they came, and
/// an agent must not run out of memory because of one chatty script.
const MAX_KEPT_LINES: usize = 100_000;
/// The most text kept per script, for the same reason (lines may be up to
/// 64 KiB each, so the line count alone does not bound memory).
const MAX_KEPT_BYTES: usize = 16 * 1024 * 1024;
/// The most lines in one status answer, so an answer's body stays bounded;
/// the server simply asks again from `Next`.
const MAX_ANSWER_LINES: usize = 5_000;
/// What a line costs in a status answer besides its text's JSON:
/// `{"Stream":"Stdout","Text":""},`.
const LINE_JSON_OVERHEAD: usize = 32;
/// How long a cancel waits for the script to end before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// Finished scripts are remembered this long, so a server that lost its
/// connection can still read the outcome when it is back; it gives up on a
/// lost agent after its policy's retry limit (minutes), so this is ample.
const KEEP_FINISHED: Duration = Duration::from_secs(60 * 60);
/// And at most this many finished scripts (the newest), to bound memory on
/// an agent that runs many short scripts.
const MAX_FINISHED: usize = 200;

/// Runs the server's scripts on this agent. One per agent process, shared
/// by all its connections (a reconnecting server finds its scripts again).
pub struct ScriptHost {
    /// Each script runs in `work_root/<id>`, removed when it finishes.
    work_root: PathBuf,
    sandbox: Arc<Sandbox>,
    hello: Box<dyn Fn() -> Hello + Send + Sync>,
    scripts: Mutex<HashMap<String, Arc<Script>>>,
    /// Files the server uploads, beside the work root (`<data dir>/files`
    /// for `<data dir>/work`), where no script id can name them.
    files: FileCache,
}

impl ScriptHost {
    /// A host running scripts under `work_root` (which should exist and be
    /// private to the agent's user) with `sandbox`; `hello` answers the
    /// server's "who are you" (it is called per connection, so it can
    /// report live figures such as free disk space).
    pub fn new(
        work_root: PathBuf,
        sandbox: Arc<Sandbox>,
        hello: impl Fn() -> Hello + Send + Sync + 'static,
    ) -> Arc<ScriptHost> {
        let files = FileCache::new(work_root.with_file_name("files"));
        Arc::new(ScriptHost {
            files,
            work_root,
            sandbox,
            hello: Box::new(hello),
            scripts: Mutex::new(HashMap::new()),
        })
    }

    fn script(&self, id: &str) -> Option<Arc<Script>> {
        lock(&self.scripts).get(id).cloned()
    }
}

impl AgentService for ScriptHost {
    fn hello(&self) -> Hello {
        (self.hello)()
    }

    fn start_script(&self, request: StartScript) -> Result<ScriptStatus, String> {
        validate(&request)?;
        // Checked and inserted under one lock, so two copies of a request
        // arriving together still run the script once.
        let mut scripts = lock(&self.scripts);
        if let Some(known) = scripts.get(&request.id) {
            // The server may have lost the first answer: give it the lines
            // from the start, as a status request would.
            return Ok(known.status(0));
        }
        // Needed to spawn; the service calls us from its runtime, so this
        // fails only for a caller outside any runtime.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the agent cannot start scripts outside its runtime".to_owned())?;
        prune(&mut scripts, Instant::now());
        let script = Arc::new(Script::new(request.id.clone()));
        scripts.insert(request.id.clone(), script.clone());
        drop(scripts);
        let status = script.status(0);
        let work_dir = self.work_root.join(&request.id);
        let place = Place {
            work_dir,
            sandbox: self.sandbox.clone(),
            files_root: self.work_root.with_file_name("files"),
            applications: self.work_root.with_file_name("Applications"),
        };
        runtime.spawn(execute(script, request, place));
        Ok(status)
    }

    /// Waits at most [`MAX_WAIT`], whatever `wait` says.
    async fn script_status(&self, id: &str, from: u64, wait: Duration) -> Option<ScriptStatus> {
        let script = self.script(id)?;
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        script
            .wait_until(deadline, |record| {
                record.ended() || record.lines.len() as u64 > from
            })
            .await;
        Some(script.status(from))
    }

    async fn list_files(&self) -> Result<FileList, FileError> {
        self.files.list().await
    }

    async fn file_signature(&self, hash: &str) -> Result<Bytes, FileError> {
        self.files.signature(hash).await
    }

    async fn file_status(&self, hash: &str, basis: Option<&str>) -> Result<FileStatus, FileError> {
        self.files.status(hash, basis).await
    }

    async fn write_chunk(
        &self,
        hash: &str,
        basis: Option<&str>,
        offset: u64,
        chunk: Bytes,
    ) -> Result<FileStatus, FileError> {
        self.files.write_chunk(hash, basis, offset, chunk).await
    }

    async fn complete_file(
        &self,
        hash: &str,
        basis: Option<&str>,
        size: u64,
    ) -> Result<FileStatus, FileError> {
        self.files.complete(hash, basis, size).await
    }

    /// Answers with the state and no lines (`From` and `Next` at the end of
    /// the output): a canceling server is no longer reading them.
    async fn cancel_script(&self, id: &str) -> Option<ScriptStatus> {
        let script = self.script(id)?;
        script.cancel.cancel();
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        script.wait_until(deadline, Record::ended).await;
        let end = lock(&script.record).lines.len() as u64;
        Some(script.status(end))
    }
}

/// Refuses what would escape or break the script's working directory.
fn validate(request: &StartScript) -> Result<(), String> {
    // The service checks ids too, but `.` and `..` pass its character test
    // and would name the work root's parent or the work root itself.
    if !valid_script_id(&request.id) || request.id == "." || request.id == ".." {
        return Err(format!("'{}' is not a valid script id", request.id));
    }
    for file in &request.files {
        let name = file.name.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(format!(
                "'{name}' is not a plain file name, so the script's file cannot be written"
            ));
        }
    }
    Ok(())
}

/// Forgets finished scripts past their retention; running ones are kept.
fn prune(scripts: &mut HashMap<String, Arc<Script>>, now: Instant) {
    scripts.retain(|_, s| {
        s.finished_at()
            .is_none_or(|at| now.saturating_duration_since(at) < KEEP_FINISHED)
    });
    let mut finished: Vec<(Instant, String)> = scripts
        .iter()
        .filter_map(|(id, s)| s.finished_at().map(|at| (at, id.clone())))
        .collect();
    if finished.len() > MAX_FINISHED {
        finished.sort();
        let excess = finished.len() - MAX_FINISHED;
        for (_, id) in &finished[..excess] {
            scripts.remove(id);
        }
    }
}

/// Where a script runs and what it may use there.
struct Place {
    work_dir: PathBuf,
    sandbox: Arc<Sandbox>,
    /// The file cache, where package steps find their package.
    files_root: PathBuf,
    /// Where package steps install when they name no root.
    applications: PathBuf,
}

/// Runs one script to its end and records the outcome.
async fn execute(script: Arc<Script>, request: StartScript, place: Place) {
    // Should this task end any other way (a panic), the script is still
    // reported as over rather than running forever.
    let guard = EndGuard(script.clone());
    let work_dir = place.work_dir.clone();
    let outcome = run(&script, request, &place).await;
    // Its lines have been kept (and streamed), so nothing there is needed;
    // removed before the end is reported, so a finished script has no dir.
    if let Err(e) = tokio::fs::remove_dir_all(&work_dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %work_dir.display(), error = %e, "could not remove a script's working directory");
        }
    }
    script.finish(match outcome {
        Ok(ScriptOutcome::Exited(code)) => End::state(ScriptState::Exited).exit_code(code),
        Ok(ScriptOutcome::Killed { signal }) => End::state(ScriptState::Killed).signal(signal),
        Ok(ScriptOutcome::TimedOut) => End::state(ScriptState::TimedOut),
        Ok(ScriptOutcome::Canceled) => End::state(ScriptState::Canceled),
        Err(error) => End::failed(error),
    });
    drop(guard);
}

async fn run(
    script: &Arc<Script>,
    request: StartScript,
    place: &Place,
) -> Result<ScriptOutcome, String> {
    let (work_dir, sandbox) = (place.work_dir.as_path(), place.sandbox.clone());
    // Left over by an earlier agent process that ran a script of this id:
    // the script starts in a fresh directory.
    match tokio::fs::remove_dir_all(work_dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "the old working directory {} could not be removed: {e}",
                work_dir.display()
            ))
        }
    }
    if script.cancel.is_cancelled() {
        return Ok(ScriptOutcome::Canceled);
    }
    let timeout = match request.timeout_seconds {
        0 => DEFAULT_TIMEOUT,
        seconds => Duration::from_secs(seconds),
    };
    if let Some(step) = request.package {
        let recorder = script.clone();
        let on_line = move |stream, line| recorder.push(stream, line);
        let run = crate::package_step::PackageRun {
            step,
            files_root: &place.files_root,
            default_root: &place.applications,
            work_dir,
            bootstrap: request.bootstrap,
            files: request
                .files
                .into_iter()
                .map(|f| (f.name, f.content))
                .collect(),
            body: request.body,
            timeout,
            sandbox,
        };
        return crate::package_step::run(run, script.cancel.clone(), &on_line).await;
    }
    let spec = ScriptSpec {
        syntax: match request.syntax {
            ScriptSyntax::Bash => Syntax::Bash,
            ScriptSyntax::Python => Syntax::Python,
        },
        body: request.body,
        work_dir: work_dir.to_owned(),
        env: vec![],
        timeout,
        bootstrap: request.bootstrap,
        files: request
            .files
            .into_iter()
            .map(|f| (f.name, f.content))
            .collect(),
        sandbox,
    };
    let recorder = script.clone();
    run_script(spec, script.cancel.clone(), move |stream, line| {
        recorder.push(stream, line)
    })
    .await
    .map_err(|e| e.to_string())
}

/// Marks the script failed if its task ends without recording an end.
struct EndGuard(Arc<Script>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !lock(&self.0.record).ended() {
            self.0.finish(End::failed(
                "the agent's task running the script ended unexpectedly".into(),
            ));
        }
    }
}

/// One script the agent knows, running or finished.
struct Script {
    id: String,
    cancel: CancellationToken,
    record: Mutex<Record>,
    /// Woken on every new line and at the end, for long polls.
    changed: Notify,
}

/// What a script has printed, and how it ended.
struct Record {
    lines: Vec<ScriptLine>,
    kept_bytes: usize,
    /// Lines not kept after the caps were reached (one marker stands for them).
    dropped: u64,
    end: Option<End>,
    finished_at: Option<Instant>,
}

impl Record {
    fn ended(&self) -> bool {
        self.end.is_some()
    }
}

#[derive(Clone)]
struct End {
    state: ScriptState,
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
}

impl End {
    fn state(state: ScriptState) -> End {
        End {
            state,
            exit_code: None,
            signal: None,
            error: None,
        }
    }

    fn exit_code(self, code: i32) -> End {
        End {
            exit_code: Some(code),
            ..self
        }
    }

    fn signal(self, signal: i32) -> End {
        End {
            signal: Some(signal),
            ..self
        }
    }

    fn failed(error: String) -> End {
        End {
            error: Some(error),
            ..End::state(ScriptState::Failed)
        }
    }
}

impl Script {
    fn new(id: String) -> Script {
        Script {
            id,
            cancel: CancellationToken::new(),
            record: Mutex::new(Record {
                lines: Vec::new(),
                kept_bytes: 0,
                dropped: 0,
                end: None,
                finished_at: None,
            }),
            changed: Notify::new(),
        }
    }

    fn finished_at(&self) -> Option<Instant> {
        lock(&self.record).finished_at
    }

    /// Keeps a line, or counts it once the caps are reached.
    fn push(&self, stream: OutputStream, line: OutputLine) {
        let OutputLine { text, continues } = line;
        {
            let mut record = lock(&self.record);
            if record.dropped > 0 {
                record.dropped += 1;
                return;
            }
            if record.lines.len() >= MAX_KEPT_LINES
                || record.kept_bytes + text.len() > MAX_KEPT_BYTES
            {
                record.dropped = 1;
                record.lines.push(ScriptLine {
                    stream: ScriptStream::Stderr,
                    text: format!(
                        "[cuttle agent] the script printed more than the agent keeps \
                         ({MAX_KEPT_LINES} lines or {} MiB); the rest of its output was dropped",
                        MAX_KEPT_BYTES / (1024 * 1024)
                    ),
                    continues: false,
                });
            } else {
                record.kept_bytes += text.len();
                record.lines.push(ScriptLine {
                    stream: match stream {
                        OutputStream::Stdout => ScriptStream::Stdout,
                        OutputStream::Stderr => ScriptStream::Stderr,
                    },
                    text,
                    continues,
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// Records the end (the first one wins) and wakes the long polls.
    fn finish(&self, end: End) {
        {
            let mut record = lock(&self.record);
            if record.end.is_some() {
                return;
            }
            if record.dropped > 0 {
                tracing::warn!(
                    script = %self.id,
                    dropped = record.dropped,
                    "a script printed more than the agent keeps; lines were dropped"
                );
            }
            record.end = Some(end);
            record.finished_at = Some(Instant::now());
        }
        self.changed.notify_waiters();
    }

    /// Waits until `ready` holds or `deadline` passes, without polling.
    async fn wait_until(&self, deadline: tokio::time::Instant, ready: impl Fn(&Record) -> bool) {
        loop {
            // Registered before the check, so a change between the check
            // and the wait still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(&lock(&self.record)) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// The lines from `from` on, at most one answer's worth. The state is
    /// the one at the last line sent: an answer that stops short of the
    /// output's end says `Running`, so a server that stops reading at the
    /// first finished answer still gets every line.
    fn status(&self, from: u64) -> ScriptStatus {
        let record = lock(&self.record);
        let start = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(record.lines.len());
        let mut end = start;
        // Counted as JSON, escapes included: a line of control characters
        // is six times its length on the wire, and the server reads at
        // most MAX_STATUS_ANSWER.
        let mut bytes = 0;
        while let Some(line) = record.lines.get(end) {
            let cost = json_len(&line.text) + LINE_JSON_OVERHEAD;
            if end - start >= MAX_ANSWER_LINES
                || (end > start && bytes + cost > MAX_STATUS_LINES_JSON)
            {
                break;
            }
            bytes += cost;
            end += 1;
        }
        let lines = record.lines[start..end].to_vec();
        let caught_up = end == record.lines.len();
        let state = match (&record.end, caught_up) {
            (Some(end), true) => end.clone(),
            _ => End::state(ScriptState::Running),
        };
        ScriptStatus {
            id: self.id.clone(),
            state: state.state,
            exit_code: state.exit_code,
            signal: state.signal,
            error: state.error,
            from,
            next: from + lines.len() as u64,
            lines,
        }
    }
}

/// How long `text` is as a JSON string's contents, as serde_json writes it.
fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// A poisoned lock only means another thread panicked mid-update; the data
/// (lines, states) is still consistent enough to serve.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_protocol::messages::ScriptFile;
    use std::path::Path;

    fn host(dir: &Path) -> Arc<ScriptHost> {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        ScriptHost::new(work, Arc::new(Sandbox::none()), || Hello {
            protocol_version: 1,
            agent_version: "test".into(),
            operating_system: "linux".into(),
            architecture: "x86_64".into(),
            free_disk_bytes: 0,
            name: "test-agent".into(),
        })
    }

    fn bash(id: &str, body: &str) -> StartScript {
        StartScript {
            id: id.into(),
            syntax: ScriptSyntax::Bash,
            body: body.into(),
            bootstrap: None,
            files: vec![],
            timeout_seconds: 60,
            package: None,
        }
    }

    /// Follows a script with long polls until it ends, as the server does.
    async fn follow(host: &ScriptHost, id: &str) -> (ScriptStatus, Vec<ScriptLine>) {
        let until = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        let mut next = 0;
        loop {
            let status = host
                .script_status(id, next, Duration::from_secs(1))
                .await
                .expect("the script is known");
            assert_eq!(status.from, next);
            assert_eq!(status.next, next + status.lines.len() as u64);
            next = status.next;
            lines.extend(status.lines.iter().cloned());
            if status.is_finished() {
                return (status, lines);
            }
            assert!(Instant::now() < until, "the script did not end");
        }
    }

    fn out(text: &str) -> ScriptLine {
        ScriptLine {
            stream: ScriptStream::Stdout,
            text: text.into(),
            continues: false,
        }
    }

    #[tokio::test]
    async fn runs_a_script_and_streams_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let started = host
            .start_script(bash("s1", "echo one\nsleep 0.3\necho two >&2\nexit 3\n"))
            .unwrap();
        assert_eq!(started.state, ScriptState::Running);
        let (status, lines) = follow(&host, "s1").await;
        assert_eq!(status.state, ScriptState::Exited);
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(
            lines,
            [
                out("one"),
                ScriptLine {
                    stream: ScriptStream::Stderr,
                    text: "two".into(),
                    continues: false,
                }
            ]
        );
        assert!(!dir.path().join("work/s1").exists(), "the work dir is kept");
    }

    #[tokio::test]
    async fn starting_twice_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let count = dir.path().join("count");
        let body = format!("echo ran >> '{}'\nsleep 0.3\necho done\n", count.display());
        host.start_script(bash("twice", &body)).unwrap();
        let again = host.start_script(bash("twice", &body)).unwrap();
        assert_eq!(again.id, "twice");
        let (status, _) = follow(&host, "twice").await;
        assert_eq!(status.exit_code, Some(0));
        // Also once it has finished: the answer is its outcome, with lines.
        let after = host.start_script(bash("twice", &body)).unwrap();
        assert_eq!(after.state, ScriptState::Exited);
        assert_eq!(after.lines, [out("done")]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
    }

    #[tokio::test]
    async fn cancel_ends_a_script() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        host.start_script(bash("long", "sleep 30")).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let status = host.cancel_script("long").await.unwrap();
        assert_eq!(status.state, ScriptState::Canceled);
        assert!(started.elapsed() < Duration::from_secs(5));
        let again = host.script_status("long", 0, Duration::ZERO).await.unwrap();
        assert_eq!(again.state, ScriptState::Canceled);
    }

    #[tokio::test]
    async fn unknown_scripts_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        assert_eq!(
            host.script_status("nope", 0, Duration::from_millis(100))
                .await,
            None
        );
        assert_eq!(host.cancel_script("nope").await, None);
    }

    #[tokio::test]
    async fn a_quiet_script_long_polls_until_the_wait_ends() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        host.start_script(bash("quiet", "sleep 30")).unwrap();
        let started = Instant::now();
        let status = host
            .script_status("quiet", 0, Duration::from_millis(500))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(status.state, ScriptState::Running);
        assert!(status.lines.is_empty());
        assert_eq!(status.next, 0);
        assert!(took >= Duration::from_millis(400), "took {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        host.cancel_script("quiet").await.unwrap();
    }

    #[tokio::test]
    async fn bad_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let marker = dir.path().join("ran");
        let body = format!("touch '{}'", marker.display());
        for name in ["", ".", "..", "a/b", "../x", "/etc/passwd"] {
            let mut start = bash("files", &body);
            start.files.push(ScriptFile {
                name: name.into(),
                content: "x".into(),
            });
            let error = host.start_script(start).unwrap_err();
            assert!(error.contains("not a plain file name"), "{error}");
        }
        for id in [".", ".."] {
            assert!(host.start_script(bash(id, &body)).is_err());
        }
        assert_eq!(host.script_status("files", 0, Duration::ZERO).await, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!marker.exists(), "a refused script ran");
        assert!(!dir.path().join("work/files").exists());
    }

    #[test]
    fn output_is_capped_and_answers_are_paged() {
        let script = Script::new("big".into());
        for i in 0..MAX_KEPT_LINES + 10 {
            script.push(OutputStream::Stdout, OutputLine::whole(i.to_string()));
        }
        script.finish(End::state(ScriptState::Exited).exit_code(0));
        let record = lock(&script.record);
        assert_eq!(record.lines.len(), MAX_KEPT_LINES + 1);
        assert_eq!(record.dropped, 10);
        assert!(record.lines[MAX_KEPT_LINES].text.contains("dropped"));
        drop(record);
        // Short of the end, the answer says Running; at the end, the outcome.
        let first = script.status(0);
        assert_eq!(first.lines.len(), MAX_ANSWER_LINES);
        assert_eq!(first.state, ScriptState::Running);
        assert_eq!(first.exit_code, None);
        let last = script.status(MAX_KEPT_LINES as u64 - 1);
        assert_eq!(last.lines.len(), 2);
        assert_eq!(last.state, ScriptState::Exited);
        assert_eq!(last.exit_code, Some(0));
        let past = script.status(u64::MAX);
        assert!(past.lines.is_empty());
        assert_eq!(past.next, u64::MAX);
    }

    #[test]
    fn fault_a_status_of_escaped_lines_fits_what_the_server_reads() {
        use cuttle_protocol::messages::MAX_STATUS_ANSWER;
        // Control characters are six bytes each as JSON: lines of them
        // would make an answer of 4 MiB of text 24 MiB on the wire.
        let script = Script::new("escapes".into());
        for _ in 0..200 {
            script.push(
                OutputStream::Stdout,
                OutputLine::whole("\u{1}".repeat(64 * 1024 - 1)),
            );
        }
        script.finish(End::state(ScriptState::Exited).exit_code(0));
        let mut from = 0;
        let mut answers = 0;
        loop {
            let status = script.status(from);
            let wire = serde_json::to_vec(&status).unwrap().len();
            assert!(
                wire <= MAX_STATUS_ANSWER,
                "an answer of {wire} bytes is more than the server reads"
            );
            assert!(!status.lines.is_empty() || status.is_finished());
            answers += 1;
            from = status.next;
            if status.is_finished() {
                break;
            }
        }
        assert!(answers > 1, "the lines were paged");
        for text in [
            "plain",
            "quote \" back\\ tab\t",
            "\u{0}\u{1f}\u{7f}",
            "é€😀",
        ] {
            assert_eq!(
                json_len(text) + 2,
                serde_json::to_string(text).unwrap().len(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn old_and_excess_finished_scripts_are_forgotten() {
        let now = Instant::now();
        let mut scripts = HashMap::new();
        let running = Arc::new(Script::new("running".into()));
        scripts.insert("running".to_owned(), running);
        for i in 0..MAX_FINISHED + 5 {
            let s = Arc::new(Script::new(format!("f{i}")));
            s.finish(End::state(ScriptState::Exited).exit_code(0));
            // Distinct, ordered finishing times, whatever the clock's grain.
            lock(&s.record).finished_at = Some(now + Duration::from_millis(i as u64));
            scripts.insert(format!("f{i}"), s);
        }
        prune(&mut scripts, now);
        assert_eq!(scripts.len(), MAX_FINISHED + 1);
        assert!(scripts.contains_key("running"));
        // The oldest went first.
        assert!(!scripts.contains_key("f0"));
        assert!(scripts.contains_key(&format!("f{}", MAX_FINISHED + 4)));
        prune(&mut scripts, now + KEEP_FINISHED + Duration::from_secs(10));
        assert_eq!(scripts.keys().collect::<Vec<_>>(), ["running"]);
    }
}
