//! The channel page in a real browser (issue 14): a person opens the
//! channel, sees each package's latest version, searches, opens a
//! package's page and downloads a file from it; the page follows uploads
//! and deletes. Screenshots are kept under `target/tmp/browser/`.

use std::fs;

use sha2::{Digest, Sha256};

use crate::common::browser::Browser;
use crate::common::channel::TOKEN;
use crate::common::served::{
    client_trusting, operator_certificate, post, runtime, serve_args, Served,
};
use crate::serve_shards::{delete, fixture, PACKAGES};

fn get(client: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    runtime().block_on(async {
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    })
}

/// A served channel holding `serve_shards`' real packages, its URL and
/// a client for it.
fn channel_with_packages() -> (tempfile::TempDir, Served, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("team-channel");
    fs::create_dir_all(&channel).unwrap();
    let (cert, key) = operator_certificate(dir.path());
    let served = Served::start(
        dir.path(),
        &serve_args(&channel, Some((&cert, &key)), &[]),
        &[],
    );
    let client = client_trusting(&cert);
    for package in PACKAGES {
        assert_eq!(
            post(&client, &served.url, TOKEN, fixture(package)),
            201,
            "{package}"
        );
    }
    (dir, served, client)
}

#[test]
fn a_person_finds_a_package_and_downloads_it_in_a_browser() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let (_dir, served, client) = channel_with_packages();
    let today = time::OffsetDateTime::now_utc().date().to_string();

    browser.open(&served.url);
    let home = browser.text();
    browser.screenshot("channel-home");
    assert!(home.contains("team-channel"), "{home}");
    assert!(home.contains("noarch"), "{home}");
    for name in ["dependent", "dependency", "versioned", "test-package"] {
        assert!(home.contains(name), "{name} missing: {home}");
    }
    // The latest version, not the first uploaded or the last in text order.
    let versioned_row = browser.evaluate(
        "[...document.querySelectorAll('tr')].map(r => r.innerText)\
         .find(t => t.startsWith('versioned'))",
    );
    let versioned_row = versioned_row.as_str().unwrap();
    assert!(versioned_row.contains("2.0"), "{versioned_row}");
    assert!(versioned_row.contains(&today), "{versioned_row}");

    browser.click("input[name=q]");
    browser.type_text("VERSI");
    browser.press_enter();
    assert!(
        browser.location().ends_with("/?q=VERSI"),
        "{}",
        browser.location()
    );
    let found = browser.text();
    browser.screenshot("channel-search");
    assert!(found.contains("versioned"), "{found}");
    assert!(!found.contains("dependency"), "{found}");

    browser.follow_link("versioned");
    let page = browser.text();
    browser.screenshot("channel-package");
    assert!(
        browser.location().ends_with("/?package=versioned"),
        "{}",
        browser.location()
    );
    assert!(page.contains("Latest version 2.0"), "{page}");
    for (package, version) in [(PACKAGES[3], "2.0"), (PACKAGES[2], "1.0")] {
        let (name, bytes) = fixture(package);
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        assert!(page.contains(&name), "{name}: {page}");
        assert!(page.contains(&sha256), "{name}'s sha256: {page}");
        assert!(page.contains(version), "{page}");
    }
    assert!(page.contains(&today), "upload time: {page}");
    // Newest first: 2.0's row comes before 1.0's.
    assert!(
        page.find("versioned-2.0-0.conda") < page.find("versioned-1.0-0.conda"),
        "{page}"
    );

    // The download link gives the very file.
    let href = browser.evaluate(
        "[...document.querySelectorAll('a')].find(a => a.textContent === 'versioned-2.0-0.conda').href",
    );
    let (status, body) = get(&client, href.as_str().unwrap());
    assert_eq!(status, 200);
    assert_eq!(body, fixture(PACKAGES[3]).1);

    // Dependencies are shown on the dependent's page.
    browser.open(&format!("{}?package=dependent", served.url));
    let dependent = browser.text();
    assert!(dependent.contains("dependency"), "{dependent}");

    browser.open(&format!("{}?q=no-such-package", served.url));
    let none = browser.text();
    assert!(
        none.contains("No package matches “no-such-package”"),
        "{none}"
    );
}

#[test]
fn the_page_follows_uploads_and_deletes_and_refuses_what_it_cannot_show() {
    let (_dir, served, client) = channel_with_packages();
    let page = |query: &str| {
        let (status, body) = get(&client, &format!("{}{query}", served.url));
        (status, String::from_utf8(body).unwrap())
    };
    let (status, versioned) = page("?package=versioned");
    assert_eq!(status, 200);
    assert!(
        versioned.contains("Latest version <strong>2.0</strong>"),
        "{versioned}"
    );

    let deleted = delete(&client, &served.url, "noarch", "versioned-2.0-0.conda");
    assert_eq!(deleted, 200);
    let (_, versioned) = page("?package=versioned");
    assert!(
        versioned.contains("Latest version <strong>1.0</strong>"),
        "{versioned}"
    );
    assert!(!versioned.contains("versioned-2.0-0.conda"), "{versioned}");

    let (status, _) = page("?package=absent");
    assert_eq!(status, 404);
    // Markup in a search is shown as text, never run.
    let (status, search) = page("?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(status, 200);
    assert!(!search.contains("<script>"), "{search}");
    assert!(search.contains("&lt;script&gt;"), "{search}");
    // The subdirs' file listings are still there.
    let (status, listing) = page("noarch/");
    assert_eq!(status, 200);
    assert!(listing.contains("href=\"repodata.json\""), "{listing}");
}
