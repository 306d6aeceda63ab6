//! Route paths match case-insensitively on their literal segments, as
//! Octopus's do: clients written against Octopus send
//! `/api/Spaces-1/deploymentProcesses/…` or `/api/libraryVariableSets`, and
//! expect them to reach `/api/{space}/deploymentprocesses/{id}` and
//! `/api/libraryvariablesets`.
//!
//! The router itself matches exactly, so before it sees a request the path
//! is set to the spelling of the route it matches ignoring case: each
//! segment that route has as a literal is replaced by the route's own
//! spelling, and every other segment (ids, space ids, slugs, versions) is
//! left exactly as sent, so ids keep their case. The query is untouched.
//!
//! The routes come from the OpenAPI document the route table builds, which
//! names every route (its own included), so there is no second list to keep
//! in step with it.

use axum::extract::Request;
use axum::http::uri::{PathAndQuery, Uri};
use std::collections::HashMap;

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{id}`, `{space}`…: any non-empty segment, kept as it is.
    Param,
}

/// The routes' paths, by their number of segments, in registration order.
#[derive(Debug, Default)]
pub struct RouteCase {
    routes: HashMap<usize, Vec<Vec<Segment>>>,
}

impl RouteCase {
    /// From route paths in axum's syntax (`/api/{space}/projects/{id}`).
    /// Paths with a catch-all (`{*rest}`) match any number of segments and
    /// are left out: their requests are never rewritten.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> RouteCase {
        let mut routes: HashMap<usize, Vec<Vec<Segment>>> = HashMap::new();
        for path in paths {
            if path.contains("{*") {
                continue;
            }
            let segments: Vec<Segment> = segments(path)
                .map(|s| {
                    if s.contains('{') {
                        Segment::Param
                    } else {
                        Segment::Literal(s.to_owned())
                    }
                })
                .collect();
            let same_length = routes.entry(segments.len()).or_default();
            if !same_length.contains(&segments) {
                same_length.push(segments);
            }
        }
        RouteCase { routes }
    }

    /// The number of routes known.
    pub fn len(&self) -> usize {
        self.routes.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `path` spelled as the route it matches ignoring case; `None` when it
    /// is spelled so already, or matches no route.
    ///
    /// When several routes match, the one the router would prefer wins: the
    /// one with a literal where the others have a parameter, at the first
    /// segment where they differ (so `/api/Projects` is the project list,
    /// not a space called `Projects`).
    pub fn canonical(&self, path: &str) -> Option<String> {
        let sent: Vec<&str> = segments(path).collect();
        let candidates = self.routes.get(&sent.len())?;
        let best = candidates
            .iter()
            .filter(|route| matches(route, &sent))
            .fold(None::<&Vec<Segment>>, |best, route| match best {
                Some(b) if !preferred(route, b) => Some(b),
                _ => Some(route),
            })?;
        let differs = best
            .iter()
            .zip(&sent)
            .any(|(seg, s)| matches!(seg, Segment::Literal(l) if l != s));
        if !differs {
            return None;
        }
        let mut out = String::with_capacity(path.len());
        for (seg, s) in best.iter().zip(&sent) {
            out.push('/');
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param => out.push_str(s),
            }
        }
        Some(out)
    }

    /// `request` with its path spelled as the route it matches.
    pub fn rewrite(&self, mut request: Request) -> Request {
        let Some(path) = self.canonical(request.uri().path()) else {
            return request;
        };
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        // Literal segments are route text and parameters were already part
        // of a valid URI, so this parses; if not, the request goes on as sent.
        let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) else {
            return request;
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        request
    }
}

/// A path's segments after its leading `/` (`/api/` has `api` and ``).
fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn matches(route: &[Segment], sent: &[&str]) -> bool {
    route.iter().zip(sent).all(|(seg, s)| match seg {
        Segment::Literal(l) => l.eq_ignore_ascii_case(s),
        Segment::Param => !s.is_empty(),
    })
}

/// Whether the router prefers `a` to `b` for a path both match: a literal
/// beats a parameter at the first segment where they differ.
fn preferred(a: &[Segment], b: &[Segment]) -> bool {
    let literal = |s: &Segment| matches!(s, Segment::Literal(_));
    a.iter()
        .zip(b)
        .find(|(x, y)| literal(x) != literal(y))
        .is_some_and(|(x, _)| literal(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteCase {
        RouteCase::new([
            "/api",
            "/api/",
            "/api/spaces",
            "/api/spaces/all",
            "/api/spaces/{id}",
            "/api/{space}",
            "/api/projects",
            "/api/{space}/projects",
            "/api/projects/{id}",
            "/api/{space}/projects/{id}",
            "/api/projects/{id}/releases/{version}",
            "/api/{space}/deploymentprocesses/{id}",
            "/api/{space}/build-information",
            "/api/{space}/releases/create/v1",
            "/assets/{*file}",
        ])
    }

    #[test]
    fn literal_segments_take_the_route_spelling() {
        let t = table();
        assert_eq!(
            t.canonical("/api/Spaces-1/DeploymentProcesses/deploymentprocess-Projects-1")
                .as_deref(),
            Some("/api/Spaces-1/deploymentprocesses/deploymentprocess-Projects-1")
        );
        assert_eq!(
            t.canonical("/API/Spaces/All").as_deref(),
            Some("/api/spaces/all")
        );
        assert_eq!(
            t.canonical("/api/Spaces-1/Build-Information").as_deref(),
            Some("/api/Spaces-1/build-information")
        );
        assert_eq!(
            t.canonical("/api/Spaces-1/Releases/Create/V1").as_deref(),
            Some("/api/Spaces-1/releases/create/v1")
        );
    }

    #[test]
    fn parameters_keep_their_case() {
        let t = table();
        assert_eq!(
            t.canonical("/api/Projects/PROJECTS-1/Releases/V1.0-Beta")
                .as_deref(),
            Some("/api/projects/PROJECTS-1/releases/V1.0-Beta")
        );
        // Already spelled as the route: nothing to do.
        assert_eq!(t.canonical("/api/projects/Projects-1"), None);
        assert_eq!(t.canonical("/api/Spaces-1/projects"), None);
    }

    #[test]
    fn literals_are_preferred_to_parameters() {
        let t = table();
        // Not the home of a space called "Projects".
        assert_eq!(
            t.canonical("/api/Projects").as_deref(),
            Some("/api/projects")
        );
        assert_eq!(t.canonical("/api/Spaces").as_deref(), Some("/api/spaces"));
        // `/api/{space}` is still the space home for what is no literal.
        assert_eq!(t.canonical("/api/Spaces-1"), None);
    }

    #[test]
    fn paths_that_match_no_route_are_left_alone() {
        let t = table();
        assert_eq!(t.canonical("/api/Nothing/Here"), None);
        assert_eq!(t.canonical("/Assets/app.css"), None);
        assert_eq!(t.canonical("/"), None);
        // A build-information spelled without its hyphen is another word.
        assert_eq!(t.canonical("/api/Spaces-1/BuildInformation"), None);
        // An empty segment is no parameter.
        assert_eq!(t.canonical("/api/Projects//Releases/1.0"), None);
    }

    #[test]
    fn the_query_is_untouched() {
        let t = table();
        let request = Request::builder()
            .uri("/api/Spaces-1/Projects?partialName=Web%20App&Take=5")
            .body(axum::body::Body::empty())
            .unwrap();
        let rewritten = t.rewrite(request);
        assert_eq!(
            rewritten.uri().to_string(),
            "/api/Spaces-1/projects?partialName=Web%20App&Take=5"
        );
    }

    #[test]
    fn the_route_table_gives_every_route() {
        let doc = crate::openapi_document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for expected in [
            "/api",
            "/api/spaces/all",
            "/api/{space}/deploymentprocesses/{id}",
            "/api/libraryvariablesets",
            "/api/{space}/machinepolicies/{id}",
            "/api/{space}/workerpools",
            "/api/{space}/projectgroups/{id}/projects",
            "/api/{space}/build-information/{id}",
            "/api/{space}/feeds/{id}/packages/versions",
            "/api/tasks/{id}/cancel",
            "/api/{space}/interruptions/{id}/submit",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} is not among {paths:?}"
            );
        }
        let case = RouteCase::new(paths);
        assert_eq!(
            case.canonical("/api/Spaces-1/DeploymentProcesses/deploymentprocess-Projects-1")
                .as_deref(),
            Some("/api/Spaces-1/deploymentprocesses/deploymentprocess-Projects-1")
        );
    }
}
