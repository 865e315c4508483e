//! The routes and the layers around them; no logic of its own.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};

use super::access_log::log_request;
use super::handlers;
use super::idle_connections;
use super::lingering;
use super::request_limits;
use super::slow_clients;
use super::state::AppState;
use super::wrong_tokens;

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = request_limits::body_limit(state.limits.max_upload_bytes, true);
    Router::new()
        // Uploads: the original request, prefix.dev, quetz, plain PUT.
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
        .route("/healthz", get(handlers::healthz))
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
        .layer(middleware::from_fn(log_request))
        // Outermost: a connection is busy until the response is sent.
        .layer(middleware::from_fn(idle_connections::hold))
        .with_state(state)
}
