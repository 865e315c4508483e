//! Deleting a package: `DELETE /api/v1/delete/<channel>/<subdir>/<filename>`
//! (prefix.dev's API) or `DELETE /<subdir>/<filename>`, token in a header.
//! The answer (200 `{"filename", "subdir"}`) comes once the package is gone
//! from disk and the durable metadata no longer lists it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::respond_with;
use crate::publish::unpublish;
use crate::server::auth::Authorized;
use crate::server::error::ApiError;

/// The channel's name was checked at the front door.
pub async fn delete_by_api(
    authorized: Authorized,
    Path((_channel, subdir, file_name)): Path<(String, String, String)>,
) -> Response {
    delete(authorized, subdir, file_name).await
}

pub async fn delete_by_path(
    authorized: Authorized,
    Path((subdir, file_name)): Path<(String, String)>,
) -> Response {
    delete(authorized, subdir, file_name).await
}

pub(super) async fn delete(authorized: Authorized, subdir: String, file_name: String) -> Response {
    let Authorized { state, note, .. } = authorized;
    let result = async {
        let deleted = tokio::task::spawn_blocking(move || {
            unpublish(&state.catalog, &state.staging, &subdir, &file_name)
        })
        .await??;
        Ok::<_, ApiError>(deleted)
    }
    .await;
    respond_with(result, note, StatusCode::OK, |deleted, note| {
        tracing::info!(
            token = note.token.as_deref().unwrap_or("-"),
            "deleted {}/{}",
            deleted.subdir,
            deleted.filename
        );
    })
}
