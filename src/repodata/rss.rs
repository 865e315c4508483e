//! `rss.xml` as conda-index 0.13.0's `rss.py` renders it with Python's
//! `minidom` `toprettyxml(indent="  ")`: the 100 names with the newest
//! timestamps (a stable sort: ties keep channeldata's order).

use serde_json::{Map, Value};

const MAX_ITEMS: usize = 100;

/// `time.strftime("%a, %d %b %Y %T GMT", time.gmtime(t))`.
fn iso822(t: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS.get(usize::from(d.weekday().number_days_from_monday()))
                .unwrap_or(&"Mon"),
            d.day(),
            MONTHS
                .get(usize::from(u8::from(d.month())) - 1)
                .unwrap_or(&"Jan"),
            d.year(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => String::new(),
    }
}

/// minidom's `_write_data`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
        .replace('>', "&gt;")
}

/// Python's `str()` of a JSON value, as rss.py formats it.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Bool(true)) => true,
    }
}

fn element(out: &mut String, indent: &str, tag: &str, text: &str) {
    out.push_str(&format!("{indent}<{tag}>{}</{tag}>\n", escape(text)));
}

pub(super) fn render(
    channel_name: &str,
    packages: &[(String, Map<String, Value>)],
    now: i64,
) -> String {
    let timestamp =
        |p: &Map<String, Value>| p.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
    let mut recent: Vec<&(String, Map<String, Value>)> = packages.iter().collect();
    recent.sort_by_key(|(_, p)| std::cmp::Reverse(timestamp(p)));
    recent.truncate(MAX_ITEMS);
    let mut out = String::from("<?xml version=\"1.0\" ?>\n<rss version=\"2.0\">\n  <channel>\n");
    let date = iso822(now);
    for (tag, text) in [
        ("title", format!("anaconda.org/{channel_name}")),
        ("link", format!("https://conda.anaconda.org/{channel_name}")),
        (
            "description",
            format!(
                "The most recent {} updates for {channel_name}.",
                recent.len()
            ),
        ),
        ("pubDate", date.clone()),
        ("lastBuildDate", date),
    ] {
        element(&mut out, "    ", tag, &text);
    }
    for (name, package) in recent {
        let get = |k: &str| package.get(k);
        let mut subdirs: Vec<String> = get("subdirs")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(python_str).collect())
            .unwrap_or_default();
        subdirs.sort();
        subdirs.dedup();
        let version = get("version").map_or("None".into(), python_str);
        let description = ["description", "summary"]
            .into_iter()
            .find(|k| truthy(get(k)))
            .and_then(get)
            .map_or("No description.".into(), python_str);
        let fields = [
            (
                "title",
                Some(format!("{name} {version} [{}]", subdirs.join(", "))),
            ),
            ("description", Some(description)),
            (
                "link",
                truthy(get("doc_url"))
                    .then(|| get("doc_url").map(python_str))
                    .flatten(),
            ),
            (
                "comments",
                truthy(get("dev_url"))
                    .then(|| get("dev_url").map(python_str))
                    .flatten(),
            ),
            (
                "guid",
                truthy(get("source_url"))
                    .then(|| get("source_url").map(python_str))
                    .flatten(),
            ),
            ("pubDate", Some(iso822(timestamp(package)))),
            (
                "source",
                truthy(get("home"))
                    .then(|| get("home").map(python_str))
                    .flatten(),
            ),
        ];
        out.push_str("    <item>\n");
        for (tag, text) in fields {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                element(&mut out, "      ", tag, &text);
            }
        }
        out.push_str("    </item>\n");
    }
    out.push_str("  </channel>\n</rss>\n");
    out
}
