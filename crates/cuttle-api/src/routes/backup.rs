//! `GET /api/backup` and `POST /api/backup`: a backup of the whole
//! installation, streamed as it is written, for the administrator only.
//! The POST form carries a passphrase, and the backup then holds the master
//! key sealed under it.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::json::OctoJson;
use crate::route_table::{get, op, Routes, OCTET_STREAM};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use cuttle_model::Permission;
use cuttle_service::backup;
use serde::Deserialize;

pub fn routes(r: Routes) -> Routes {
    r.at(
        "/api/backup",
        get(
            backup_without_key,
            op(
                "A backup of the whole installation (database rows, package files, \
                certificates), without the master key; administrator only",
            )
            .requires(Permission::AdministerSystem)
            .media(OCTET_STREAM),
        )
        .post(
            backup_with_key,
            op(
                "A backup of the whole installation that also holds the master key, \
                sealed under the passphrase given; administrator only",
            )
            .requires(Permission::AdministerSystem)
            .body::<BackupRequest>()
            .media(OCTET_STREAM),
        ),
    )
}

#[derive(Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
struct BackupRequest {
    /// Seals the master key in the backup (at least 8 characters).
    passphrase: String,
}

async fn backup_without_key(
    State(inst): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Response> {
    stream(backup::of_instance(&inst, &caller, None).await?)
}

async fn backup_with_key(
    State(inst): State<AppState>,
    Caller(caller): Caller,
    OctoJson(body): OctoJson<BackupRequest>,
) -> ApiResult<Response> {
    stream(backup::of_instance(&inst, &caller, Some(body.passphrase)).await?)
}

/// Sends what a blocking writer writes as the response body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The backup is gathered before the answer starts (so a refusal is a
/// proper error), then written as the client reads it; a failure after
/// that ends the body early, which the client sees as a broken download.
fn stream(prepared: backup::Prepared) -> ApiResult<Response> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufWriter::with_capacity(1 << 16, ChannelWriter { tx: tx.clone() });
        if let Err(e) = prepared.write(out) {
            tracing::warn!(error = %e, "a backup stopped before its end");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"cuttle-backup.tar.gz\""),
    );
    Ok(response)
}
