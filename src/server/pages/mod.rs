//! The channel page people browse at the channel's root: each subdir's
//! package names with their latest version, a search box (`?q=`), and a
//! page per package (`?package=NAME`) with every file's version, build,
//! subdir, dependencies, size, sha256, upload time and a download link.
//! Made from the live index in memory ([`catalog`]), rendered as plain
//! HTML ([`html`]); no script is needed. A channel indexed by conda (the
//! fallback) has no index in memory and keeps the bare file listing.

mod catalog;
mod html;

use serde::Deserialize;

pub use catalog::PageCache;

use crate::publish::Catalog;
use crate::server::error::ApiError;
use crate::server::state::AppState;

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(default)]
    q: String,
    package: Option<String>,
}

/// The page for the channel root with this query string, or `None` when
/// the channel has no index in memory.
pub fn render(state: &AppState, uri: &axum::http::Uri) -> Option<Result<String, ApiError>> {
    let Catalog::Native(live) = &state.catalog else {
        return None;
    };
    let Ok(axum::extract::Query(query)) = axum::extract::Query::<PageQuery>::try_from_uri(uri)
    else {
        return Some(Err(ApiError::BadRequest(
            "the channel page takes ?q=SEARCH or ?package=NAME".into(),
        )));
    };
    let subdirs = state.pages.subdirs(live);
    let channel = &state.access.name;
    Some(match &query.package {
        Some(name) => html::package(channel, &subdirs, name).ok_or_else(|| {
            ApiError::NotFound(format!("no package named {name:?} in this channel"))
        }),
        None => Ok(html::home(channel, &subdirs, &query.q)),
    })
}
