//! The channel pages' HTML: the home page (each subdir's package names
//! with their latest version, filtered by the search box) and a page per
//! package (every file, newest first). Plain HTML with a little CSS; the
//! search box is a form, so it works without any script. Every link is
//! relative, so the pages work under a `/t/<token>/` prefix too.

use std::fmt::Write as _;
use std::sync::Arc;

use super::catalog::{FileRow, SubdirPage};
use crate::server::listing::{escape, link};

/// Rows one subdir shows on the home page; a search narrows the rest.
pub const MAX_ROWS: usize = 500;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;\
padding:0 1em;color:#222}table{border-collapse:collapse;width:100%;margin-bottom:2em}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}\
form{margin:1em 0}input[type=search]{font-size:1.1em;padding:.3em;width:24em}\
nav a{margin-right:1em}ul{margin:0;padding-left:1.2em}.muted{color:#777}\
.nowrap{white-space:nowrap}";

/// The home page: every subdir's names matching `search` (a part of the
/// name, any case; all names when empty).
pub fn home(channel: &str, subdirs: &[Arc<SubdirPage>], search: &str) -> String {
    let needle = search.trim().to_lowercase();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<form method=\"get\" action=\"\" role=\"search\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search packages\" \
         aria-label=\"Search packages\" autofocus> <button type=\"submit\">Search</button></form>",
        escape(search)
    );
    body.push_str("<nav>Browse files:");
    for page in subdirs {
        let _ = write!(body, " <a href=\"{0}/\">{0}/</a>", link(&page.subdir));
    }
    body.push_str("</nav>\n");
    let mut shown = 0;
    for page in subdirs {
        shown += subdir_table(&mut body, page, &needle);
    }
    if shown == 0 {
        let what = if needle.is_empty() {
            "This channel has no packages yet.".to_owned()
        } else {
            format!("No package matches “{}”.", escape(search.trim()))
        };
        let _ = writeln!(body, "<p id=\"no-match\">{what}</p>");
    }
    document(channel, channel, &body)
}

/// One subdir's table of matching names; returns how many matched.
fn subdir_table(body: &mut String, page: &SubdirPage, needle: &str) -> usize {
    let matching: Vec<_> = page
        .names
        .iter()
        .filter(|(name, _)| needle.is_empty() || name.to_lowercase().contains(needle))
        .collect();
    if matching.is_empty() {
        return 0;
    }
    let _ = write!(
        body,
        "<h2 id=\"subdir-{0}\">{0}</h2>\n<table class=\"packages\">\n\
         <tr><th>Package</th><th>Latest version</th><th>Files</th><th>Uploaded</th></tr>\n",
        escape(&page.subdir)
    );
    for (name, latest) in matching.iter().take(MAX_ROWS) {
        let _ = writeln!(
            body,
            "<tr><td><a href=\"?package={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            link(name),
            escape(name),
            escape(&latest.newest.version),
            latest.files,
            date(latest.newest.uploaded)
        );
    }
    body.push_str("</table>\n");
    if matching.len() > MAX_ROWS {
        let _ = writeln!(
            body,
            "<p class=\"muted\">{} more in {}: search to narrow the list.</p>",
            matching.len() - MAX_ROWS,
            escape(&page.subdir)
        );
    }
    matching.len()
}

/// A package's page: every file of that name in every subdir, newest
/// first. `None` when no subdir lists the name.
pub fn package(channel: &str, subdirs: &[Arc<SubdirPage>], name: &str) -> Option<String> {
    let mut rows: Vec<&FileRow> = subdirs
        .iter()
        .filter_map(|page| page.files.get(name))
        .flatten()
        .collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| FileRow::newest_first(a, b));
    let mut body = String::new();
    let in_subdirs: Vec<&str> = subdirs
        .iter()
        .filter(|page| page.files.contains_key(name))
        .map(|page| page.subdir.as_str())
        .collect();
    let _ = write!(
        body,
        "<p><a href=\"./\">← All packages</a></p>\n\
         <p id=\"summary\">Latest version <strong>{}</strong> · {} files in {}</p>\n\
         <table class=\"files\">\n<tr><th>Version</th><th>Build</th><th>Subdir</th>\
         <th>Depends</th><th>Size</th><th>SHA-256</th><th>Uploaded</th><th>Download</th></tr>\n",
        rows.first()
            .map(|row| escape(&row.version))
            .unwrap_or_default(),
        rows.len(),
        escape(&in_subdirs.join(", "))
    );
    for row in rows {
        file_row(&mut body, row);
    }
    body.push_str("</table>\n");
    Some(document(&format!("{name} · {channel}"), name, &body))
}

fn file_row(body: &mut String, row: &FileRow) {
    let depends = if row.depends.is_empty() {
        "<span class=\"muted\">none</span>".to_owned()
    } else {
        let items: String = row
            .depends
            .iter()
            .map(|spec| format!("<li>{}</li>", escape(spec)))
            .collect();
        format!("<ul>{items}</ul>")
    };
    let size = row
        .size
        .map(|bytes| {
            format!(
                "<span title=\"{bytes} bytes\">{}</span>",
                human_bytes(bytes)
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        body,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{depends}</td><td class=\"nowrap\">{size}</td>\
         <td><code>{}</code></td><td class=\"nowrap\">{}</td><td><a href=\"{}/{}\" download>{}</a></td></tr>",
        escape(&row.version),
        escape(&row.build),
        escape(&row.subdir),
        escape(&row.sha256),
        date(row.uploaded),
        link(&row.subdir),
        link(&row.file_name),
        escape(&row.file_name)
    );
}

fn document(title: &str, heading: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><h1>{}</h1>\n{body}</body></html>\n",
        escape(title),
        escape(heading)
    )
}

/// `2026-12-03 11:52 UTC`, or nothing when unknown.
fn date(seconds: Option<i64>) -> String {
    let Some(date) = seconds.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        date.year(),
        u8::from(date.month()),
        date.day(),
        date.hour(),
        date.minute()
    )
}

fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = "KB";
    for next in ["MB", "GB", "TB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MB");
    }

    #[test]
    fn markup_in_names_is_text() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(link("a b/c"), "a%20b%2Fc");
    }
}
