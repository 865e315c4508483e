//! The HTML listing of a channel directory, for people browsing the
//! channel: subdirectories first, then files with their size and
//! modification time. Hidden (dot) entries are never listed, as they are
//! never served.

use std::fmt::Write as _;
use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in a link: those package names use.
const LINK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'+')
    .remove(b'!');

struct Entry {
    name: String,
    is_dir: bool,
    size: u64,
    modified: Option<std::time::SystemTime>,
}

/// The listing of `dir`, titled with its path in the channel.
pub async fn render(dir: &Path, segments: &[String]) -> std::io::Result<String> {
    let mut entries = read_entries(dir).await?;
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let title = format!(
        "/{}",
        segments.iter().map(|s| format!("{s}/")).collect::<String>()
    );
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {t}</title></head>\n\
         <body><h1>Index of {t}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n",
        t = escape(&title)
    );
    if !segments.is_empty() {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in &entries {
        write_row(&mut html, entry);
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(html)
}

async fn read_entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut reader = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = reader.next_entry().await? {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follows symlinks, as serving does.
        let Ok(metadata) = tokio::fs::metadata(entry.path()).await else {
            continue;
        };
        entries.push(Entry {
            name,
            is_dir: metadata.is_dir(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        });
    }
    Ok(entries)
}

fn write_row(html: &mut String, entry: &Entry) {
    let slash = if entry.is_dir { "/" } else { "" };
    let href = link(&entry.name);
    let size = if entry.is_dir {
        String::new()
    } else {
        entry.size.to_string()
    };
    let modified = entry
        .modified
        .map(httpdate::fmt_http_date)
        .unwrap_or_default();
    let _ = writeln!(
        html,
        "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>",
        escape(&entry.name)
    );
}

/// `text` percent-encoded for a link, leaving the characters package
/// names use.
pub(crate) fn link(text: &str) -> String {
    utf8_percent_encode(text, LINK).to_string()
}

/// `text` as HTML text or attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
