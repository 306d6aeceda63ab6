//! The portal's static files, compiled into the binary. Each is served
//! under a name that carries a hash of its content, so browsers may keep it
//! for a year: a changed file has a new name.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub struct Asset {
    stem: &'static str,
    extension: &'static str,
    content_type: &'static str,
    body: &'static str,
    hash: u64,
}

/// FNV-1a: enough to tell versions of a file apart, and computable at
/// compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

impl Asset {
    const fn new(
        stem: &'static str,
        extension: &'static str,
        content_type: &'static str,
        body: &'static str,
    ) -> Self {
        Asset {
            stem,
            extension,
            content_type,
            body,
            hash: fnv1a(body.as_bytes()),
        }
    }

    fn file_name(&self) -> String {
        format!("{}.{:016x}.{}", self.stem, self.hash, self.extension)
    }

    /// Where pages link to it.
    pub fn path(&self) -> String {
        format!("/assets/{}", self.file_name())
    }
}

pub const CSS: Asset = Asset::new(
    "portal",
    "css",
    "text/css; charset=utf-8",
    concat!(
        include_str!("../assets/portal.css"),
        include_str!("../assets/pages/projects.css"),
        include_str!("../assets/pages/process.css"),
        include_str!("../assets/pages/variables.css"),
        include_str!("../assets/pages/infrastructure.css"),
        include_str!("../assets/pages/library.css"),
        include_str!("../assets/pages/configuration.css"),
    ),
);
pub const JS: Asset = Asset::new(
    "portal",
    "js",
    "text/javascript; charset=utf-8",
    // Each page file is its own `(function () { … })();`, so names in one
    // cannot collide with another's.
    concat!(
        include_str!("../assets/portal.js"),
        include_str!("../assets/pages/projects.js"),
        include_str!("../assets/pages/process.js"),
        include_str!("../assets/pages/variables.js"),
        include_str!("../assets/pages/infrastructure.js"),
        include_str!("../assets/pages/library.js"),
        include_str!("../assets/pages/configuration.js"),
    ),
);
pub const ICON: Asset = Asset::new(
    "cuttle",
    "svg",
    "image/svg+xml",
    include_str!("../assets/cuttle.svg"),
);

pub async fn serve(Path(file): Path<String>) -> Response {
    match [CSS, JS, ICON].into_iter().find(|a| a.file_name() == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "No such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_change_with_content() {
        assert_ne!(fnv1a(b"a{}"), fnv1a(b"a{ }"));
        assert!(CSS.path().starts_with("/assets/portal.") && CSS.path().ends_with(".css"));
        assert_ne!(CSS.path(), JS.path());
    }
}
