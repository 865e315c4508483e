//! 1,000 uploads from 32 clients into a 100,000-package subdir on default
//! settings, none refused (issue 14.2). Ignored by default: generating the
//! channel and indexing it take minutes. Run it with
//! `cargo test --test it queue_load:: -- --ignored --nocapture`; the
//! result is in benches/README.md (`cargo bench --bench serve` does the
//! same on a release build).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use artifact_upload_handler::generate::{generate_channel, ChannelSpec, Sizes};

use crate::common;
use crate::common::channel::{listed_names, sized_package, TOKEN};
use crate::common::served::{runtime, serve_args, Served};

const PACKAGES: usize = 100_000;
const UPLOADS: usize = 1000;
const CLIENTS: usize = 32;
const SUBDIR: &str = "linux-64";

#[test]
#[ignore = "minutes: generates and indexes 100,000 packages"]
fn a_thousand_uploads_from_32_clients_into_100000_packages_on_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    let started = Instant::now();
    let spec = ChannelSpec {
        packages: PACKAGES,
        subdirs: vec![SUBDIR.to_owned()],
        sizes: Sizes::Tiny,
        ..ChannelSpec::default()
    };
    generate_channel(&channel, &spec).unwrap();
    eprintln!(
        "generated {PACKAGES} tiny packages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Index first (no time limit), so serve starts from the cache.
    let started = Instant::now();
    let output = common::index(&channel, &[]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    eprintln!("indexed in {:.1} s", started.elapsed().as_secs_f64());
    // Default limits: only the port and the token are given.
    let started = Instant::now();
    let served = Served::start(dir.path(), &serve_args(&channel, None, &[]), &[]);
    eprintln!("serve started in {:.1} s", started.elapsed().as_secs_f64());
    let cert = channel.join(".auh-tls/localhost-cert.pem");
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let set: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        (0..UPLOADS)
            .map(|i| sized_package(&format!("load{i}"), SUBDIR, 2000))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let runtime = runtime();
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (next, results, set) = (next.clone(), results.clone(), set.clone());
                let (client, url) = (client.clone(), served.url.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((name, bytes)) = set.get(i) else {
                            break;
                        };
                        let sent = Instant::now();
                        let form = reqwest::multipart::Form::new().text("token", TOKEN).part(
                            "artifact",
                            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
                        );
                        let status = match client.post(&url).multipart(form).send().await {
                            Ok(response) => response.status().as_u16().to_string(),
                            Err(err) => format!("{err}"),
                        };
                        results
                            .lock()
                            .unwrap()
                            .push((name.clone(), status, sent.elapsed()));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    let results = std::mem::take(&mut *results.lock().unwrap());
    let refused: Vec<_> = results.iter().filter(|(_, s, _)| s != "201").collect();
    let mut times: Vec<_> = results.iter().map(|(_, _, t)| t.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{UPLOADS} uploads into {SUBDIR} ({PACKAGES} packages) from {CLIENTS} clients on defaults: \
         {:.1} s, {:.0} uploads/s, {} not 201; upload to 201 median {:.2} s, p99 {:.2} s, max {:.2} s",
        elapsed.as_secs_f64(),
        UPLOADS as f64 / elapsed.as_secs_f64(),
        refused.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(
        refused.is_empty(),
        "not 201: {:?}",
        &refused[..refused.len().min(10)]
    );
    let names = listed_names(&channel, SUBDIR);
    assert_eq!(names.len(), PACKAGES + UPLOADS);
    for (name, _) in set.iter() {
        assert!(names.contains(name), "{name} is not listed");
    }
}
