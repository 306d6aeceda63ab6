//! Build information: what a CI build says about a package version it
//! produced (the build, its branch and commits), pushed by CI plugins and
//! shown on the releases that deploy that version.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One package version's build information, Octopus-shaped.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct BuildInformation {
    pub id: String,
    pub space_id: String,
    /// `<PackageId> <Version>`: one per package version in a space.
    pub name: String,
    pub package_id: String,
    pub version: String,
    pub build_environment: String,
    pub build_number: String,
    pub build_url: String,
    pub branch: String,
    pub vcs_type: String,
    pub vcs_root: String,
    pub vcs_commit_number: String,
    pub vcs_commit_url: Option<String>,
    pub issue_tracker_name: Option<String>,
    pub work_items: Vec<Value>,
    pub commits: Vec<Commit>,
    pub created: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Commit {
    pub id: String,
    pub link_url: Option<String>,
    pub comment: String,
}

/// The name a package version's build information goes by.
pub fn build_information_name(package_id: &str, version: &str) -> String {
    format!("{package_id} {version}")
}

/// A link to a commit for the web-hosted repositories that agree on
/// `<root>/commit/<sha>` (GitHub, GitLab, Gitea…); `None` for other roots.
pub fn commit_url(vcs_root: &str, sha: &str) -> Option<String> {
    let root = vcs_root.trim().trim_end_matches('/');
    let root = root.strip_suffix(".git").unwrap_or(root);
    let web = root.starts_with("https://") || root.starts_with("http://");
    let safe = !sha.is_empty() && sha.chars().all(|c| c.is_ascii_alphanumeric());
    (web && safe).then(|| format!("{root}/commit/{sha}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_links() {
        assert_eq!(
            commit_url("https://github.com/acme/web.git", "abc123").as_deref(),
            Some("https://github.com/acme/web/commit/abc123")
        );
        assert_eq!(commit_url("git@github.com:acme/web.git", "abc123"), None);
        assert_eq!(commit_url("https://git.example/acme/web", "a/b"), None);
    }
}
