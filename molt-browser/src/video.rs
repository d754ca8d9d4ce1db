//! Videos of pages: screencast frames from the browser, assembled by
//! `ffmpeg` (Moltworker's video skill: several URLs, optional scrolling).

use crate::error::CdpError;
use crate::page::{NavigateOptions, Page, Viewport};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How to record a video.
#[derive(Clone, Debug)]
pub struct VideoOptions {
    /// The viewport, which is also the video's size.
    pub viewport: Viewport,
    /// How long each page is shown once loaded.
    pub per_page: Duration,
    /// Scroll each page smoothly from top to bottom while it is shown.
    pub scroll: bool,
    /// JPEG quality of the captured frames, 0 to 100.
    pub frame_quality: u8,
    /// How each page is loaded.
    pub navigation: NavigateOptions,
    /// The `ffmpeg` binary; `None` reads `FFMPEG_PATH`, then searches `PATH`.
    pub ffmpeg: Option<PathBuf>,
    /// The most `ffmpeg` may take.
    pub ffmpeg_timeout: Duration,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            viewport: Viewport::new(1280, 720),
            per_page: Duration::from_secs(3),
            scroll: false,
            frame_quality: 80,
            navigation: NavigateOptions::default(),
            ffmpeg: None,
            ffmpeg_timeout: Duration::from_secs(120),
        }
    }
}

/// What was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoSummary {
    /// Distinct frames the browser sent (it sends one when the page changes).
    pub frames: usize,
    /// The video's length.
    pub duration: Duration,
    /// The size of the video file.
    pub bytes: u64,
}

/// The `ffmpeg` binary: the one given, `FFMPEG_PATH`, or the first on `PATH`.
pub fn find_ffmpeg(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_owned());
    }
    if let Some(path) = std::env::var_os("FFMPEG_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("ffmpeg"))
        .find(|candidate| candidate.is_file())
}

/// A captured frame and when it arrived.
struct Frame {
    at: Instant,
    jpeg: Vec<u8>,
}

impl Page {
    /// Shows each URL in turn (scrolling if asked), captures the screencast,
    /// and writes a video to `output` (its extension picks the container,
    /// such as `.mp4` or `.webm`). Needs `ffmpeg`.
    pub async fn record_video(
        &self,
        urls: &[&str],
        options: &VideoOptions,
        output: &Path,
    ) -> Result<VideoSummary, CdpError> {
        let ffmpeg = find_ffmpeg(options.ffmpeg.as_deref()).ok_or(CdpError::FfmpegMissing)?;
        self.set_viewport(options.viewport).await?;
        let (frames, started) = self.capture(urls, options).await?;
        let ended = Instant::now();
        if frames.is_empty() {
            return Err(CdpError::Ffmpeg("the browser sent no frames".into()));
        }
        let work = tempfile::Builder::new().prefix("molt-video-").tempdir()?;
        let mut list = String::new();
        for (index, frame) in frames.iter().enumerate() {
            let name = format!("frame-{index:05}.jpg");
            tokio::fs::write(work.path().join(&name), &frame.jpeg).await?;
            let from = if index == 0 { started } else { frame.at };
            let until = frames.get(index + 1).map_or(ended, |next| next.at);
            let seconds = until
                .saturating_duration_since(from)
                .as_secs_f64()
                .max(0.001);
            let _ = writeln!(list, "file '{name}'\nduration {seconds:.3}");
        }
        // The concat demuxer applies the last duration only if the last file
        // is listed once more.
        let _ = writeln!(list, "file 'frame-{:05}.jpg'", frames.len() - 1);
        tokio::fs::write(work.path().join("frames.txt"), list).await?;
        run_ffmpeg(
            &ffmpeg,
            work.path(),
            output,
            options.viewport,
            options.ffmpeg_timeout,
        )
        .await?;
        Ok(VideoSummary {
            frames: frames.len(),
            duration: ended - started,
            bytes: tokio::fs::metadata(output).await?.len(),
        })
    }

    /// Runs the screencast while the URLs are shown; returns the frames and
    /// when showing began.
    async fn capture(
        &self,
        urls: &[&str],
        options: &VideoOptions,
    ) -> Result<(Vec<Frame>, Instant), CdpError> {
        let connection = self.connection().clone();
        let session_id = self.session_id().to_owned();
        let mut events = connection.subscribe(Some(&session_id), &["Page.screencastFrame"]);
        let (stop, stopped) = oneshot::channel::<()>();
        let collector_connection = Arc::downgrade(&connection);
        let collector_session = session_id.clone();
        let viewport = options.viewport;
        let collector = tokio::spawn(async move {
            let mut frames = Vec::new();
            let mut stopped = stopped;
            loop {
                let event = tokio::select! {
                    _ = &mut stopped => break,
                    event = events.next() => match event { Some(event) => event, None => break },
                };
                // Each frame must be acknowledged before the browser sends another.
                if let Some(connection) = collector_connection.upgrade() {
                    connection.notify(
                        "Page.screencastFrameAck",
                        json!({ "sessionId": event.params["sessionId"] }),
                        Some(&collector_session),
                    );
                }
                // A frame painted before the viewport took effect has another
                // size; it would set the whole video's size, so it is dropped.
                let metadata = &event.params["metadata"];
                let size = (
                    metadata["deviceWidth"].as_f64().unwrap_or_default().round() as u32,
                    metadata["deviceHeight"]
                        .as_f64()
                        .unwrap_or_default()
                        .round() as u32,
                );
                if size != (viewport.width, viewport.height) {
                    continue;
                }
                if let Ok(jpeg) = crate::page::decode_data(&event.params) {
                    frames.push(Frame {
                        at: Instant::now(),
                        jpeg,
                    });
                }
            }
            frames
        });
        let started = Instant::now();
        let shown = async {
            self.call(
                "Page.startScreencast",
                json!({
                    "format": "jpeg",
                    "quality": options.frame_quality.min(100),
                    "maxWidth": options.viewport.width,
                    "maxHeight": options.viewport.height,
                }),
            )
            .await?;
            for url in urls {
                self.goto_with(url, options.navigation).await?;
                self.show(options).await?;
            }
            Ok::<(), CdpError>(())
        }
        .await;
        // Stopped on every path, so a failed recording leaves no screencast running.
        let stopped = self.call("Page.stopScreencast", json!({})).await;
        let _ = stop.send(());
        let frames = collector
            .await
            .map_err(|err| CdpError::Ffmpeg(format!("frame collector: {err}")))?;
        shown?;
        stopped?;
        Ok((frames, started))
    }

    /// Keeps the loaded page on screen for the time asked, scrolling it from
    /// top to bottom if asked.
    async fn show(&self, options: &VideoOptions) -> Result<(), CdpError> {
        if !options.scroll {
            tokio::time::sleep(options.per_page).await;
            return Ok(());
        }
        const STEP: Duration = Duration::from_millis(50);
        let steps = (options.per_page.as_millis() / STEP.as_millis()).max(1) as u32;
        let started = Instant::now();
        for step in 1..=steps {
            let expression = format!(
                "window.scrollTo(0, (document.documentElement.scrollHeight - innerHeight) * {})",
                f64::from(step) / f64::from(steps)
            );
            self.evaluate::<serde_json::Value>(&expression).await?;
            tokio::time::sleep_until(started + STEP * step).await;
        }
        Ok(())
    }
}

async fn run_ffmpeg(
    ffmpeg: &Path,
    work: &Path,
    output: &Path,
    size: Viewport,
    timeout: Duration,
) -> Result<(), CdpError> {
    // The viewport's size (rounded up to even numbers, which 4:2:0 chroma
    // needs), whatever size a frame came in.
    let (width, height) = (size.width.div_ceil(2) * 2, size.height.div_ceil(2) * 2);
    let filter = format!(
        "scale={width}:{height}:force_original_aspect_ratio=decrease,\
         pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,format=yuv420p"
    );
    let output = std::path::absolute(output)?;
    let running = tokio::process::Command::new(ffmpeg)
        .current_dir(work)
        .args(["-y", "-nostdin", "-loglevel", "error"])
        .args(["-f", "concat", "-safe", "0", "-i", "frames.txt"])
        .args(["-vf", filter.as_str(), "-r", "25"])
        .arg(&output)
        .kill_on_drop(true)
        .output();
    let finished = tokio::time::timeout(timeout, running)
        .await
        .map_err(|_| CdpError::Ffmpeg(format!("no result within {timeout:?}")))??;
    if !finished.status.success() {
        return Err(CdpError::Ffmpeg(
            String::from_utf8_lossy(&finished.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}
