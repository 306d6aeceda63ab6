//! A thin client of the Octopus-shaped REST API: authentication, URLs, and
//! turning a refusal from the server into an [`ApiError`] people can read.

use std::{fmt, time::Duration};

use anyhow::{bail, Context as _};
use reqwest::{header, Method, RequestBuilder, StatusCode, Url};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::Connection;

pub(crate) struct Api {
    http: reqwest::Client,
    /// The server's address; paths are appended to it, so a server behind a
    /// reverse proxy at `https://host/cuttle` works too.
    base: Url,
}

impl Api {
    pub(crate) fn new(conn: &Connection) -> anyhow::Result<Self> {
        let server = non_empty(&conn.server)
            .context("no server to talk to: pass --server URL or set CUTTLE_SERVER")?;
        let key = non_empty(&conn.api_key)
            .context("no API key: pass --api-key KEY or set CUTTLE_API_KEY")?;

        let mut base = Url::parse(server)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .with_context(|| {
                format!("--server must be an http:// or https:// URL, not {server:?}")
            })?;
        base.set_query(None);
        base.set_fragment(None);

        let mut key = header::HeaderValue::from_str(key)
            .context("the API key contains characters that cannot be sent in an HTTP header")?;
        // Keeps the key out of any debug output of the request.
        key.set_sensitive(true);
        let headers = header::HeaderMap::from_iter([(
            header::HeaderName::from_static("x-octopus-apikey"),
            key,
        )]);

        let http = reqwest::Client::builder()
            .user_agent(concat!("cuttle-cli/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // Only connecting is bounded for every request: creating a release
            // can legitimately take the server a while.
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, base })
    }

    /// A request to the path made of `segments`, each one percent-encoded, so
    /// that ids typed by users cannot wander to another route.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL always has a path")
            .pop_if_empty()
            .extend(segments);
        self.http.request(method, url)
    }

    /// Sends a request and decodes its JSON answer; a non-2xx answer becomes
    /// an [`ApiError`].
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::from_body(status, &body).into());
        }
        let url = response.url().clone();
        response
            .json()
            .await
            .with_context(|| format!("unexpected answer from {url}"))
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, segments).json(body))
            .await
    }

    /// The id of the space `--space` names: ids are used as given, names
    /// looked up the way Octopus's own clients do.
    pub(crate) async fn space_id(&self, space: &str) -> anyhow::Result<String> {
        if is_space_id(space) {
            return Ok(space.to_owned());
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Space {
            id: String,
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Page {
            items: Vec<Space>,
        }
        let query = [
            ("partialName", space),
            ("skip", "0"),
            ("take", "2147483647"),
        ];
        let page: Page = self
            .send(self.request(Method::GET, &["api", "spaces"]).query(&query))
            .await?;
        // partialName matches substrings in any case; the space meant is the
        // one named exactly so.
        match page.items.into_iter().find(|s| s.name == space) {
            Some(found) => Ok(found.id),
            None => bail!(
                "no space is named {space:?} (names are case-sensitive); \
                 pass --space or set CUTTLE_SPACE to a space's name or id, e.g. Spaces-1"
            ),
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Whether `space` is a space id (`Spaces-<n>`) rather than a name.
pub(crate) fn is_space_id(space: &str) -> bool {
    space
        .strip_prefix("Spaces-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an error is worth another try: the server may be restarting, or
/// the network blinked.
pub(crate) fn is_transient(error: &anyhow::Error) -> bool {
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        return e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
    }
    error.downcast_ref::<ApiError>().is_some_and(|e| {
        matches!(
            e.status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        )
    })
}

/// The server's refusal: its status, `ErrorMessage` and `Errors`.
#[derive(Debug, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
}

impl ApiError {
    pub(crate) fn from_body(status: StatusCode, body: &str) -> Self {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            error_message: String,
            #[serde(default)]
            errors: Vec<String>,
        }
        match serde_json::from_str::<Body>(body) {
            Ok(b) => Self {
                status,
                message: b.error_message,
                errors: b.errors,
            },
            // Not the API's error shape (a proxy's HTML page, say): the start
            // of whatever came back is still the best clue.
            _ => Self {
                status,
                message: body
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(300)
                    .collect(),
                errors: Vec::new(),
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self.message.as_str() {
            "" => self.status.canonical_reason().unwrap_or("request failed"),
            m => m,
        };
        write!(f, "({}) {message}", self.status.as_u16())?;
        // Servers often repeat the message as the only detail.
        for error in self.errors.iter().filter(|e| **e != self.message) {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_ids_are_told_from_names() {
        assert!(is_space_id("Spaces-1"));
        assert!(is_space_id("Spaces-42"));
        for name in [
            "Default",
            "Spaces-",
            "Spaces-x",
            "spaces-1",
            "Spaces-1a",
            " Spaces-1",
            "Spaces--1",
        ] {
            assert!(!is_space_id(name), "{name:?}");
        }
    }

    #[test]
    fn error_bodies_show_message_and_each_error() {
        let e = ApiError::from_body(
            StatusCode::BAD_REQUEST,
            r#"{"ErrorMessage": "There was a problem with your request.", "Errors": ["No project is named 'Nope'.", "Version is not SemVer."]}"#,
        );
        assert_eq!(
            e.to_string(),
            "(400) There was a problem with your request.\n  - No project is named 'Nope'.\n  - Version is not SemVer."
        );
    }

    #[test]
    fn a_detail_repeating_the_message_is_not_shown_twice() {
        let e = ApiError::from_body(
            StatusCode::NOT_FOUND,
            r#"{"ErrorMessage": "Task ServerTasks-9 not found", "Errors": ["Task ServerTasks-9 not found"]}"#,
        );
        assert_eq!(e.to_string(), "(404) Task ServerTasks-9 not found");
    }

    #[test]
    fn other_bodies_are_shown_as_text_or_by_status() {
        let e = ApiError::from_body(
            StatusCode::BAD_GATEWAY,
            "<html>\n  <h1>Bad gateway</h1>\n</html>",
        );
        assert_eq!(e.to_string(), "(502) <html> <h1>Bad gateway</h1> </html>");
        let e = ApiError::from_body(StatusCode::UNAUTHORIZED, "");
        assert_eq!(e.to_string(), "(401) Unauthorized");
        let e = ApiError::from_body(
            StatusCode::FORBIDDEN,
            r#"{"ErrorMessage": "", "Errors": []}"#,
        );
        assert_eq!(e.to_string(), "(403) Forbidden");
    }

    #[test]
    fn missing_connection_settings_name_the_flag_and_variable() {
        let conn = |server: Option<&str>, key: Option<&str>| Connection {
            server: server.map(Into::into),
            api_key: key.map(Into::into),
            space: "Default".into(),
        };
        let err = |c| Api::new(&c).err().expect("should fail").to_string();
        assert!(err(conn(None, Some("API-X"))).contains("--server URL or set CUTTLE_SERVER"));
        assert!(err(conn(Some(" "), Some("API-X"))).contains("CUTTLE_SERVER"));
        assert!(err(conn(Some("http://h"), None)).contains("--api-key KEY or set CUTTLE_API_KEY"));
        assert!(err(conn(Some("localhost:8080"), Some("API-X"))).contains("http://"));
        assert!(Api::new(&conn(Some("http://127.0.0.1:8080/"), Some("API-X"))).is_ok());
    }

    #[test]
    fn paths_are_appended_to_the_base_and_escaped() {
        let conn = Connection {
            server: Some("https://example.com/cuttle/".into()),
            api_key: Some("API-X".into()),
            space: "Default".into(),
        };
        let api = Api::new(&conn).unwrap();
        let req = api
            .request(Method::GET, &["api", "tasks", "../users/me", "details"])
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "https://example.com/cuttle/api/tasks/..%2Fusers%2Fme/details"
        );
    }
}
