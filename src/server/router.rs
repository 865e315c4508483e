//! The routes and the layers around them; no logic of its own.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};

use super::access_log::log_request;
use super::handlers;
use super::idle_connections;
use super::lingering;
use super::metrics;
use super::request_limits;
use super::slow_clients;
use super::state::AppState;
use super::wrong_tokens;

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = request_limits::body_limit(state.limits.max_upload_bytes, true);
    Router::new()
        // Uploads: the original request, prefix.dev (multipart or raw),
        // quetz (raw or multipart), plain PUT; anaconda.org's API below.
        .route("/", post(handlers::original).get(handlers::serve_file))
        .route("/api/v1/upload/{channel}", post(handlers::prefix_upload))
        .route(
            "/api/channels/{channel}/upload/{filename}",
            post(handlers::quetz_upload),
        )
        .route(
            "/{subdir}/{filename}",
            put(handlers::put_in_subdir)
                .delete(handlers::delete_by_path)
                .get(handlers::serve_file),
        )
        .route(
            "/{channel}/{subdir}/{filename}",
            put(handlers::put_in_channel).get(handlers::serve_file),
        )
        .route(
            "/api/v1/delete/{channel}/{subdir}/{filename}",
            delete(handlers::delete_by_api),
        )
        .route(
            "/api/channels/{channel}/files/",
            post(handlers::quetz_channel_files),
        )
        .route(
            "/api/channels/{channel}/packages/{package}/files/",
            post(handlers::quetz_package_files),
        )
        .route(
            "/api/channels/{channel}/packages/{package}/versions/{subdir}/{filename}",
            delete(handlers::quetz_delete),
        )
        .merge(anaconda_routes())
        .route("/healthz", get(handlers::healthz))
        .route(metrics::METRICS_PATH, get(metrics::scrape))
        // Reading the channel: every other GET/HEAD.
        .fallback(handlers::serve_file)
        // Uploads stream to disk and stop at the upload limit (413); this
        // bounds everything else a request body might carry.
        .layer(DefaultBodyLimit::max(
            usize::try_from(body_limit).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            slow_clients::min_rate,
        ))
        // Before any handler (and its token check): a declared size past
        // the limit, long part headers, an address guessing tokens.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_limits::refuse_early,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(wrong_tokens::WrongTokens::default()),
            wrong_tokens::limit,
        ))
        // Outside the rate guard and the early refusals: it owns the raw
        // body, so what a refusal left unread can still be drained.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            lingering::linger,
        ))
        // Outside lingering: what a refusal's drain reads is counted too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .layer(middleware::from_fn(log_request))
        // Outermost: a connection is busy until the response is sent.
        .layer(middleware::from_fn(idle_connections::hold))
        .with_state(state)
}

/// anaconda.org's API under `/api/anaconda` (handlers/anaconda): the root
/// the client checks, its user, package, release and file records, and the
/// upload's three steps.
fn anaconda_routes() -> Router<Arc<AppState>> {
    use handlers::anaconda_api as api;
    const DIST: &str = "{channel}/{package}/{version}/{subdir}/{filename}";
    Router::new()
        .route("/api/anaconda", get(api::root))
        .route("/api/anaconda/", get(api::root))
        .route("/api/anaconda/user", get(api::user))
        .route("/api/anaconda/user/{channel}", get(api::user))
        .route(
            "/api/anaconda/package/{channel}/{package}",
            get(api::package)
                .post(api::package_written)
                .patch(api::package_written)
                .delete(api::package_delete),
        )
        .route(
            "/api/anaconda/release/{channel}/{package}/{version}",
            get(api::release)
                .post(api::release_written)
                .patch(api::release_written)
                .delete(api::release_delete),
        )
        .route(
            &format!("/api/anaconda/dist/{DIST}"),
            get(api::dist).delete(api::dist_delete),
        )
        .route(&format!("/api/anaconda/stage/{DIST}"), post(api::stage))
        .route(api::FORM_PATH, post(api::receive))
        .route(&format!("/api/anaconda/commit/{DIST}"), post(api::commit))
}
