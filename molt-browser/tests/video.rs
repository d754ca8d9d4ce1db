//! Screencast frames from real headless Chromium, assembled into a video by
//! ffmpeg (installed by ./scripts/test).

mod support;

use molt_browser::{CdpError, VideoOptions, Viewport};
use std::process::Command;
use std::time::Duration;

/// What ffprobe reads from a video: width, height and duration in seconds.
fn probe(path: &std::path::Path) -> (u32, u32, f64) {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (it comes with ffmpeg)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let probed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stream = &probed["streams"][0];
    (
        stream["width"].as_u64().unwrap() as u32,
        stream["height"].as_u64().unwrap() as u32,
        probed["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

#[tokio::test]
async fn several_pages_scrolled_become_one_video() {
    let site = support::serve_site().await;
    let browser = support::launch().await;
    let page = browser.new_page().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("tour.mp4");
    let options = VideoOptions {
        viewport: Viewport::new(640, 360),
        per_page: Duration::from_millis(1500),
        scroll: true,
        ..VideoOptions::default()
    };
    let urls = [
        format!("http://{site}/tall"),
        format!("http://{site}/article"),
    ];
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let summary = page.record_video(&urls, &options, &output).await.unwrap();

    assert!(
        summary.frames >= 5,
        "scrolling changes the page: {summary:?}"
    );
    assert!(summary.duration >= Duration::from_secs(3), "{summary:?}");
    let (width, height, seconds) = probe(&output);
    assert_eq!((width, height), (640, 360));
    let expected = summary.duration.as_secs_f64();
    assert!(
        (seconds - expected).abs() < 0.5,
        "video {seconds} s, recorded {expected} s"
    );
    assert_eq!(std::fs::metadata(&output).unwrap().len(), summary.bytes);
}

#[tokio::test]
async fn without_ffmpeg_the_error_says_so() {
    let browser = support::launch().await;
    let page = browser.new_page().await.unwrap();
    let options = VideoOptions {
        ffmpeg: Some("/nonexistent/ffmpeg".into()),
        ..VideoOptions::default()
    };
    let result = page
        .record_video(
            &["about:blank"],
            &options,
            std::path::Path::new("/tmp/never.mp4"),
        )
        .await;
    assert!(matches!(result, Err(CdpError::FfmpegMissing)), "{result:?}");
}
