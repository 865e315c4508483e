//! `<subdir>/index.html` (`--index-html`), as conda-index 0.13.0 renders
//! its `subdir-index.html.j2` (Jinja, trim_blocks and lstrip_blocks, no
//! autoescape): the metadata files that exist, then every package sorted
//! by name without regard to case, each with size, time, sha256 and md5;
//! then an `Updated:` line with the time it was made.
//!
//! Written after the subdir's other files (it shows their times), and only
//! when something besides the `Updated:` line would change, so a run that
//! changes nothing writes nothing.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::Md5;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::package::hex;
use crate::storage::Storage;

pub(crate) const INDEX_HTML: &str = "index.html";

const UPDATED: &str = "  <address>Updated: ";

/// `utils.human_bytes`.
fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let k = n as f64 / 1024.0;
    if k < 1024.0 {
        return format!("{} KB", k.round_ties_even());
    }
    let m = k / 1024.0;
    if m < 1024.0 {
        return format!("{m:.1} MB");
    }
    format!("{:.2} GB", m / 1024.0)
}

/// The template's `strftime("%Y-%m-%d %H:%M:%S %z")` of Unix seconds.
fn date(seconds: i64) -> String {
    let seconds = if seconds > 253_402_300_799 {
        seconds / 1000
    } else {
        seconds
    };
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => String::new(),
    }
}

/// One table row; `None` fields render empty (Jinja's undefined).
struct Row {
    name: String,
    size: String,
    timestamp: Option<i64>,
    sha256: String,
    md5: String,
}

fn row(out: &mut String, row: &Row) {
    let when = row
        .timestamp
        .filter(|t| *t != 0)
        .map(date)
        .unwrap_or_default();
    out.push_str(&format!(
        "    <tr>\n      <td><a href=\"{0}\">{0}</a></td>\n      <td class=\"s\">{1}</td>\n      <td>{2}</td>\n      <td>{3}</td>\n      <td>{4}</td>\n    </tr>",
        row.name, row.size, when, row.sha256, row.md5
    ));
}

fn text(record: &Map<String, Value>, key: &str) -> String {
    match record.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => "None".into(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Renders index.html; `metadata` are the files listed first (name,
/// bytes, mtime in seconds), `repodata_json` the patched repodata.json.
pub(crate) fn render(
    title: &str,
    metadata: &[(String, Vec<u8>, i64)],
    repodata_json: &[u8],
    now: SystemTime,
) -> String {
    let mut out = format!(
        "<html>\n<head>\n  <title>{title}</title>\n  <style type=\"text/css\">\n    a, a:active {{\n      text-decoration: none; color: blue;\n    }}\n    a:visited {{\n      color: #48468F;\n    }}\n    a:hover, a:focus {{\n      text-decoration: underline; color: red;\n    }}\n    body {{\n      background-color: #F5F5F5;\n    }}\n    h2 {{\n      margin-bottom: 12px;\n    }}\n    th, td {{\n      font: 100% monospace; text-align: left;\n    }}\n    th {{\n      font-weight: bold; padding-right: 14px; padding-bottom: 3px;\n    }}\n    td {{\n      padding-right: 20px;\n    }}\n    td.s, th.s {{\n      text-align: right;\n    }}\n    table {{\n      background-color: white;\n      border-top: 1px solid #646464;\n      border-bottom: 1px solid #646464;\n      padding-top: 10px;\n      padding-bottom: 14px;\n    }}\n    address {{\n      color: #787878;\n      padding-top: 10px;\n    }}\n  </style>\n</head>\n<body>\n  <h2>{title}</h2>\n  <table>\n    <tr>\n      <th>Filename</th>\n      <th>Size</th>\n      <th>Last Modified</th>\n      <th>SHA256</th>\n      <th>MD5</th>\n    </tr>\n",
        title = title
    );
    for (name, bytes, mtime) in metadata {
        row(
            &mut out,
            &Row {
                name: name.clone(),
                size: human_bytes(bytes.len() as u64),
                timestamp: Some(*mtime),
                sha256: hex(&Sha256::digest(bytes)),
                md5: hex(&Md5::digest(bytes)),
            },
        );
    }
    let doc: Map<String, Value> = serde_json::from_slice(repodata_json).unwrap_or_default();
    // `repodata_packages.update(...)`: .tar.bz2 first, then .conda.
    let mut packages: Vec<(String, Map<String, Value>)> = Vec::new();
    for section in ["packages", "packages.conda"] {
        if let Some(Value::Object(records)) = doc.get(section) {
            for (name, record) in records {
                if let Value::Object(record) = record {
                    packages.push((name.clone(), record.clone()));
                }
            }
        }
    }
    packages.sort_by_key(|(name, _)| name.to_lowercase());
    for (name, record) in &packages {
        let size = record.get("size").and_then(Value::as_u64).map(human_bytes);
        let timestamp = record
            .get("timestamp")
            .and_then(|t| t.as_i64().or_else(|| t.as_f64().map(|f| f as i64)));
        row(
            &mut out,
            &Row {
                name: name.clone(),
                size: size.unwrap_or_default(),
                timestamp,
                sha256: text(record, "sha256"),
                md5: text(record, "md5"),
            },
        );
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    out.push_str(&format!(
        "  </table>\n{UPDATED}{} - Files: {}</address>\n</body>\n</html>",
        date(now),
        packages.len()
    ));
    out
}

/// The text without its `Updated:` line, to tell a real change.
fn without_updated(html: &str) -> String {
    html.lines()
        .filter(|line| !line.starts_with(UPDATED))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `<subdir>/index.html` after the subdir's other files: the
/// metadata files that exist (repodata.json, its .bz2 when asked for,
/// repodata_from_packages.json and its .bz2, patch_instructions.json).
pub(crate) fn write(
    storage: &dyn Storage,
    subdir: &str,
    title: &str,
    bz2: bool,
    now: SystemTime,
) -> io::Result<usize> {
    let mut names = vec!["repodata.json".to_owned()];
    if bz2 {
        names.push("repodata.json.bz2".into());
    }
    names.push("repodata_from_packages.json".into());
    if bz2 {
        names.push("repodata_from_packages.json.bz2".into());
    }
    names.push("patch_instructions.json".into());
    let mut metadata = Vec::new();
    for name in names {
        let path = format!("{subdir}/{name}");
        if let (Some(stat), Some(bytes)) = (storage.stat(&path)?, storage.read(&path)?) {
            let mtime = i64::try_from(stat.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
            metadata.push((name, bytes, mtime));
        }
    }
    let repodata = metadata
        .first()
        .filter(|(name, _, _)| name == "repodata.json")
        .map(|(_, bytes, _)| bytes.clone())
        .unwrap_or_default();
    let html = render(&format!("{title}/{subdir}"), &metadata, &repodata, now);
    let path = format!("{subdir}/{INDEX_HTML}");
    let old = storage.read(&path)?;
    if old
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .is_some_and(|old| without_updated(old) == without_updated(&html))
    {
        return Ok(0);
    }
    storage.write_atomic(&path, html.as_bytes())?;
    Ok(1)
}
