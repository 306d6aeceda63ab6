//! What the server and an agent say to each other, as JSON bodies. Field
//! names are PascalCase like the rest of Cuttle's (Octopus-shaped) wire.

use serde::{Deserialize, Serialize};

/// The path of the first request on every connection.
pub const HELLO_PATH: &str = "/v1/hello";

/// An agent's answer to `GET /v1/hello`: who it is and what it runs on. The
/// server refuses an agent whose `protocol_version` it does not speak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_version: String,
    /// As Rust names it (`linux`, `macos`, …).
    pub operating_system: String,
    pub architecture: String,
    /// Free space where the agent keeps its work, for the server to warn on.
    pub free_disk_bytes: u64,
    /// The name the agent was registered under.
    pub name: String,
}

/// The most the server reads of an agent's answer to a control request (a
/// hello, a file's status, and any error answer), in bytes. An agent is
/// peer input: one that sends more is cut off and reported, so a broken or
/// compromised agent cannot make the server hold what it sends.
pub const MAX_CONTROL_ANSWER: usize = 256 * 1024;

/// The most the server reads of a script status answer. An agent pages its
/// lines so that their JSON stays under half of this (see
/// [`MAX_STATUS_LINES_JSON`]); the rest is room for the other fields.
pub const MAX_STATUS_ANSWER: usize = 16 * 1024 * 1024;

/// How much of one status answer an agent fills with lines, counted as
/// their JSON (escapes included), so that [`MAX_STATUS_ANSWER`] holds
/// whatever the script printed. At least one line is always sent, and a
/// line is at most 64 KiB of text (384 KiB escaped).
pub const MAX_STATUS_LINES_JSON: usize = 4 * 1024 * 1024;

/// The most the server reads of an agent's list of cached files (about
/// 60,000 SHA-256s).
pub const MAX_FILE_LIST_ANSWER: usize = 4 * 1024 * 1024;

/// The most the server reads of a cached file's rsync signature; an
/// agent's signatures stay near 1.2 MB (about 100,000 blocks) for files up
/// to 100 GB, and this allows files over a terabyte.
pub const MAX_SIGNATURE_ANSWER: usize = 16 * 1024 * 1024;

/// The body of every error answer, in the API's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub error_message: String,
}

/// Where scripts are started (`POST`), followed (`GET {SCRIPTS_PATH}/{id}`)
/// and cancelled (`DELETE {SCRIPTS_PATH}/{id}`).
pub const SCRIPTS_PATH: &str = "/v1/scripts";

/// Longest script id an agent accepts.
pub const MAX_SCRIPT_ID: usize = 200;

/// Whether `id` may name a script: it appears in a URL path and names the
/// script's working directory, so letters, digits, `.`, `_` and `-` only,
/// and at least one letter or digit (never `.` or `..`).
pub fn valid_script_id(id: &str) -> bool {
    id.bytes().any(|b| b.is_ascii_alphanumeric())
        && id.len() <= MAX_SCRIPT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The languages an agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptSyntax {
    Bash,
    Python,
}

/// A file written beside the script, readable by the script's user only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScriptFile {
    pub name: String,
    pub content: String,
}

/// `POST /v1/scripts`: run a script. The id is the command's identity: an
/// agent that already knows it answers with that script's status and runs
/// nothing, so a request repeated after a lost connection never runs twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartScript {
    pub id: String,
    pub syntax: ScriptSyntax,
    pub body: String,
    /// Run instead of the script, with the script's file name as argument.
    pub bootstrap: Option<String>,
    pub files: Vec<ScriptFile>,
    pub timeout_seconds: u64,
    /// A "Deploy a package" step: the package is extracted and prepared
    /// before `Body` (which may be empty) runs in its directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageStep>,
}

/// How an agent deploys a package it holds in its file cache (Octopus's
/// `Octopus.TentaclePackage`): extract into a fresh directory, run
/// `PreDeploy.sh`, substitute variables in the listed files, replace values
/// in the listed JSON and YAML files, run `Deploy.sh` and `PostDeploy.sh`.
/// The variables are those of the script's variables file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PackageStep {
    /// The package file in the agent's cache.
    pub hash: String,
    /// Its name as pushed (`Acme.Web.1.2.3.zip`), which gives its format.
    pub file_name: String,
    pub package_id: String,
    pub version: String,
    pub environment: String,
    /// Under which `<environment>/<package id>/<version>` is made; empty
    /// for the agent's own (`<data dir>/Applications`).
    pub application_root: String,
    /// Where to install instead, when set (kept across deployments).
    pub custom_installation_directory: String,
    /// Empty the custom directory before installing into it.
    pub purge_custom_directory: bool,
    /// Globs of files whose `#{…}` are substituted.
    pub substitute_in_files: Vec<String>,
    /// Globs of JSON and YAML files whose values are replaced by variables
    /// named like their key paths.
    pub structured_files: Vec<String>,
    /// How many versions of this package the agent keeps, extracted and
    /// cached, after a successful deployment (0: all).
    pub versions_to_keep: u32,
    /// The SHA-256s of every version of this package in the feed, newest
    /// first: which cached files are versions of it.
    pub version_hashes: Vec<String>,
    /// "Run a script from a package": the Bash script at this path in the
    /// package runs from a throw-away extraction instead (no installation,
    /// no substitution, nothing kept).
    pub script_file: String,
}

/// Where a script is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptState {
    Running,
    /// It exited by itself; see `ExitCode`.
    Exited,
    /// A signal from outside the agent killed it; see `Signal`.
    Killed,
    TimedOut,
    Canceled,
    /// It could not be started (no interpreter, a full disk…); see `Error`.
    Failed,
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptStream {
    Stdout,
    Stderr,
}

/// A line a script printed, or a piece of one: a line too long to keep whole
/// is cut, and every piece but the last says it `Continues`, so the server
/// can mask a secret that a cut divides. Agents that predate the field send
/// none, which reads as a whole line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScriptLine {
    pub stream: ScriptStream,
    pub text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub continues: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A script's state and the lines from `From` on (the query's `from`); the
/// next request asks `from=Next`. An agent answers `GET` as soon as there
/// is a line past `from` or the script has ended, else after the query's
/// `wait` milliseconds (a long poll), so lines stream without busy polling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScriptStatus {
    pub id: String,
    pub state: ScriptState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub from: u64,
    pub lines: Vec<ScriptLine>,
    pub next: u64,
}

impl ScriptStatus {
    pub fn is_finished(&self) -> bool {
        self.state != ScriptState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_of_a_cut_line_says_it_continues() {
        let piece = ScriptLine {
            stream: ScriptStream::Stdout,
            text: "aaa".into(),
            continues: true,
        };
        let json = serde_json::to_string(&piece).unwrap();
        assert_eq!(json, r#"{"Stream":"Stdout","Text":"aaa","Continues":true}"#);
        assert_eq!(serde_json::from_str::<ScriptLine>(&json).unwrap(), piece);
        // A whole line is written as before, and an agent that predates
        // the field is read as sending whole lines.
        let whole = ScriptLine {
            continues: false,
            ..piece
        };
        let old = r#"{"Stream":"Stdout","Text":"aaa"}"#;
        assert_eq!(serde_json::to_string(&whole).unwrap(), old);
        assert_eq!(serde_json::from_str::<ScriptLine>(old).unwrap(), whole);
    }

    #[test]
    fn script_ids() {
        assert!(valid_script_id(
            "ServerTasks-1.step-2.action-1.Machines-3.attempt-1"
        ));
        assert!(!valid_script_id(""));
        assert!(!valid_script_id("a/b"));
        assert!(!valid_script_id("../x"));
        assert!(!valid_script_id(".."));
        assert!(!valid_script_id("."));
        assert!(!valid_script_id(&"a".repeat(MAX_SCRIPT_ID + 1)));
    }

    #[test]
    fn file_hashes() {
        assert!(valid_file_hash(&"ab".repeat(32)));
        assert!(!valid_file_hash(&"AB".repeat(32)));
        assert!(!valid_file_hash(&"ab".repeat(31)));
        assert!(!valid_file_hash(&format!("../{}", "a".repeat(61))));
    }
}

/// Where files are uploaded to an agent's content-addressed cache:
/// `GET {FILES_PATH}/{sha256}` (what the agent has), `PUT
/// {FILES_PATH}/{sha256}?offset=N` (a chunk, appended at `N`), `POST
/// {FILES_PATH}/{sha256}/complete?size=S` (verify and keep). With
/// `&basis=B` the chunks are a delta against the cached file `B`
/// (`GET {FILES_PATH}/{B}/signature` describes it), which the agent applies
/// on completion; `GET {FILES_PATH}` lists the cache.
pub const FILES_PATH: &str = "/v1/files";

/// The largest chunk an agent accepts in one `PUT`.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Whether `hash` is a SHA-256 as files are named by: 64 lowercase hex.
pub fn valid_file_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The files in an agent's cache, by SHA-256 (`GET /v1/files`): the bases
/// a delta can be computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileList {
    pub hashes: Vec<String>,
}

/// What an agent holds of one file: all of it (verified, in its cache), or
/// the first `ReceivedBytes` of an upload in progress, which a broken
/// upload resumes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileStatus {
    pub hash: String,
    pub complete: bool,
    pub received_bytes: u64,
}
