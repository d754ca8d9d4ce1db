//! molt-browser next to Playwright on the same Chromium binary and the same
//! local pages, in one run: screenshot latency (a 1280×720 PNG of a loaded
//! page) and pages per minute (navigate, wait for `load`, read the HTML).
//!
//! `cargo bench -p molt-browser --bench browser` (needs Chromium, Node and
//! `npm ci` in tests/browser; `./scripts/test` installs them). The two
//! clients alternate for `ROUNDS` rounds; medians are reported.

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::response::Html;
use axum::routing::get;
use molt_browser::{Browser, LaunchOptions, ScreenshotOptions, Viewport};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PAGES: usize = 10;
const SCREENSHOTS: usize = 40;
const PAGE_LOADS: usize = 60;
const ROUNDS: usize = 3;

/// A page of ordinary weight: headings, paragraphs, a table, some CSS.
fn page(n: usize) -> String {
    let mut html = format!(
        "<!doctype html><html><head><title>Page {n}</title><style>\
         body{{font-family:sans-serif;margin:2em}} td{{border:1px solid #ccc;padding:4px}}</style>\
         </head><body><h1>Page {n}</h1>"
    );
    for p in 0..40 {
        html.push_str(&format!(
            "<p>Paragraph {p} of page {n}: the quick brown fox jumps over the lazy dog, \
             <a href=\"/page/{}\">next</a>.</p>",
            (n + 1) % PAGES
        ));
    }
    html.push_str("<table>");
    for row in 0..20 {
        html.push_str(&format!("<tr><td>{row}</td><td>{}</td></tr>", row * n));
    }
    html.push_str("</table></body></html>");
    html
}

#[derive(Debug, Deserialize)]
struct Measured {
    screenshot_ms: Vec<f64>,
    pages_per_minute: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn molt(chromium: &Path, base: &str) -> Measured {
    let browser = Browser::launch(LaunchOptions {
        executable: Some(chromium.to_owned()),
        ..LaunchOptions::default()
    })
    .await
    .expect("Chromium starts");
    let page = browser.new_page().await.unwrap();
    page.set_viewport(Viewport::new(1280, 720)).await.unwrap();
    page.goto(&format!("{base}/page/0")).await.unwrap();
    let options = ScreenshotOptions::default();
    for _ in 0..3 {
        page.screenshot(&options).await.unwrap();
    }
    let mut screenshot_ms = Vec::new();
    for _ in 0..SCREENSHOTS {
        let start = Instant::now();
        page.screenshot(&options).await.unwrap();
        screenshot_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let started = Instant::now();
    for i in 0..PAGE_LOADS {
        page.goto(&format!("{base}/page/{}", i % PAGES))
            .await
            .unwrap();
        page.html().await.unwrap();
    }
    let pages_per_minute = PAGE_LOADS as f64 / started.elapsed().as_secs_f64() * 60.0;
    browser.close().await.unwrap();
    Measured {
        screenshot_ms,
        pages_per_minute,
    }
}

fn playwright(chromium: &Path, base: &str) -> Result<Measured, String> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/bench-playwright.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(chromium)
        .arg(base)
        .args([PAGES, SCREENSHOTS, PAGE_LOADS].map(|n| n.to_string()))
        .output()
        .map_err(|err| format!("node: {err}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())
}

#[tokio::main]
async fn main() {
    let app = Router::new().route(
        "/page/{n}",
        get(|UrlPath(n): UrlPath<usize>| async move { Html(page(n)) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let chromium = LaunchOptions::default()
        .find_executable()
        .expect("Chromium (set CHROMIUM_PATH)");

    let (mut molt_shots, mut molt_rates) = (Vec::new(), Vec::new());
    let (mut pw_shots, mut pw_rates) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let ours = molt(&chromium, &base).await;
        molt_shots.extend(ours.screenshot_ms);
        molt_rates.push(ours.pages_per_minute);
        let base = base.clone();
        let chromium = chromium.clone();
        match tokio::task::spawn_blocking(move || playwright(&chromium, &base))
            .await
            .unwrap()
        {
            Ok(theirs) => {
                pw_shots.extend(theirs.screenshot_ms);
                pw_rates.push(theirs.pages_per_minute);
            }
            Err(err) => eprintln!("Playwright round {round} failed: {err}"),
        }
        eprintln!("round {round} of {ROUNDS} done");
    }

    println!("Chromium: {}", chromium.display());
    println!("| client | screenshot median (ms) | pages per minute |");
    println!("|---|---|---|");
    let molt_shot = median(&mut molt_shots);
    let molt_rate = median(&mut molt_rates);
    println!("| molt-browser | {molt_shot:.1} | {molt_rate:.0} |");
    if pw_rates.is_empty() {
        println!("| playwright-core | (not run) | (not run) |");
        return;
    }
    let pw_shot = median(&mut pw_shots);
    let pw_rate = median(&mut pw_rates);
    println!("| playwright-core | {pw_shot:.1} | {pw_rate:.0} |");
    println!(
        "| ratio (molt / playwright) | {:.2} (lower is faster) | {:.2} (higher is faster) |",
        molt_shot / pw_shot,
        molt_rate / pw_rate
    );
}
