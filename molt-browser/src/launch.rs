//! Starting a local headless Chromium, and ending it with every process it
//! spawned.
//!
//! The browser runs in its own process group with a temporary profile; when
//! the handle drops, the whole group is killed and the profile removed, so no
//! Chromium process or profile directory outlives it.

use crate::error::CdpError;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The only variables the browser inherits: locale, time zone, fonts, a
/// display and the temporary directory. Everything else (the gateway's tokens, provider and bucket keys)
/// stays out of its processes; `HOME` is its temporary profile.
const INHERITED_ENV: [&str; 12] = [
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "FONTCONFIG_FILE",
    "FONTCONFIG_PATH",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
];
/// `PATH` for the browser (Debian's `chromium` is a shell script).
const BROWSER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Binary names tried on `PATH`, in order, when no executable is given.
const CANDIDATES: [&str; 6] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "chrome-headless-shell",
];

/// Flags that keep an idle browser quiet (no updates, sync, telemetry,
/// safe-browsing downloads or first-run work) and keep pages driven over CDP
/// at full speed even when no window shows them. `CDPScreenshotNewSurface`
/// captures screenshots from a fresh surface: about 30% faster here.
const QUIET_FLAGS: [&str; 22] = [
    "--enable-features=CDPScreenshotNewSurface",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,\
AutofillServerCommunication,CertificateTransparencyComponentUpdater,\
InterestFeedContentSuggestions,PrivacySandboxSettings4",
];

/// How to start a local Chromium.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The browser binary; `None` reads `CHROMIUM_PATH`, then searches `PATH`.
    pub executable: Option<PathBuf>,
    /// Run without a window (the default).
    pub headless: bool,
    /// Use Chromium's sandbox. `None`: on, unless running as root (where
    /// Chromium refuses to start with it).
    pub sandbox: Option<bool>,
    /// The initial window size, in CSS pixels.
    pub window_size: (u32, u32),
    /// More command-line flags.
    pub extra_args: Vec<String>,
    /// Let WebRTC send UDP straight to any address. Off by default: UDP
    /// cannot pass the egress proxy of policed pages, so with it on a page
    /// could reach any host with STUN packets.
    pub webrtc_udp: bool,
    /// Send every connection of every browser context through this proxy
    /// (`http://127.0.0.1:port`), loopback included. A context created with
    /// its own `proxyServer` would not use it; the `/cdp` relay strips that.
    pub proxy_server: Option<String>,
    /// How long the browser may take to announce its DevTools URL.
    pub startup_timeout: Duration,
    /// How long each CDP command may wait for its answer.
    pub command_timeout: Duration,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            executable: None,
            headless: true,
            sandbox: None,
            window_size: (1280, 720),
            extra_args: Vec::new(),
            webrtc_udp: false,
            proxy_server: None,
            startup_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
        }
    }
}

impl LaunchOptions {
    /// The browser binary these options would start, if one is found.
    pub fn find_executable(&self) -> Option<PathBuf> {
        if let Some(path) = &self.executable {
            return Some(path.clone());
        }
        if let Some(path) = std::env::var_os("CHROMIUM_PATH").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH")?;
        CANDIDATES.iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| is_executable(candidate))
        })
    }

    fn args(&self, profile: &Path) -> Vec<String> {
        let mut args = vec![
            "--remote-debugging-port=0".to_owned(),
            "--remote-debugging-address=127.0.0.1".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!(
                "--window-size={},{}",
                self.window_size.0, self.window_size.1
            ),
        ];
        if self.headless {
            args.push("--headless".into());
        }
        let sandbox = self
            .sandbox
            .unwrap_or_else(|| !nix::unistd::Uid::effective().is_root());
        if !sandbox {
            args.push("--no-sandbox".into());
        }
        args.extend(QUIET_FLAGS.iter().map(|flag| (*flag).to_owned()));
        if !self.webrtc_udp {
            // What the profile's preferences say too (see `write_preferences`),
            // for builds that read this switch instead.
            args.push("--force-webrtc-ip-handling-policy=disable_non_proxied_udp".into());
        }
        if let Some(proxy) = &self.proxy_server {
            args.push(format!("--proxy-server={proxy}"));
            args.push(format!(
                "--proxy-bypass-list={}",
                crate::proxy::PROXY_LOOPBACK
            ));
            // QUIC is UDP, which the proxy does not carry.
            args.push("--disable-quic".into());
        }
        args.extend(self.extra_args.iter().cloned());
        args.push("about:blank".into());
        args
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A running local browser. Dropping it kills its whole process group and
/// removes its temporary profile.
pub(crate) struct ChromiumProcess {
    child: Child,
    pid: u32,
    profile: tempfile::TempDir,
}

impl ChromiumProcess {
    /// Starts the browser and waits for it to announce its DevTools URL.
    pub(crate) async fn start(options: &LaunchOptions) -> Result<(Self, String), CdpError> {
        let executable = options.find_executable().ok_or_else(|| {
            CdpError::Launch("no Chromium found: install chromium or set CHROMIUM_PATH".to_owned())
        })?;
        let profile = tempfile::Builder::new()
            .prefix("molt-chromium-")
            .tempdir()
            .map_err(|err| CdpError::Launch(format!("temporary profile: {err}")))?;
        write_preferences(profile.path(), options.webrtc_udp)
            .map_err(|err| CdpError::Launch(format!("profile preferences: {err}")))?;
        let inherited = INHERITED_ENV
            .iter()
            .filter_map(|name| Some((*name, std::env::var_os(name)?)));
        let mut child = Command::new(&executable)
            .args(options.args(profile.path()))
            .env_clear()
            .envs(inherited)
            .env("HOME", profile.path())
            .env("PATH", BROWSER_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| CdpError::Launch(format!("{}: {err}", executable.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| CdpError::Launch("the browser exited at once".into()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut process = Self {
            child,
            pid,
            profile,
        };

        let (announced, announcement) = oneshot::channel();
        tokio::spawn(read_announcement(stderr, announced));
        let waited = tokio::time::timeout(options.startup_timeout, announcement).await;
        match waited {
            Ok(Ok(Ok(url))) => {
                tracing::debug!(pid, %url, "Chromium started");
                Ok((process, url))
            }
            Ok(Ok(Err(last_lines))) => {
                let status = process.child.wait().await.ok();
                Err(CdpError::Launch(format!(
                    "the browser exited ({}) without a DevTools URL: {last_lines}",
                    status.map_or("unknown status".into(), |s| s.to_string())
                )))
            }
            Ok(Err(_)) => Err(CdpError::Launch("the browser's output ended".into())),
            Err(_) => Err(CdpError::Launch(format!(
                "no DevTools URL within {:?}",
                options.startup_timeout
            ))),
        }
    }

    /// The browser's process id (also its process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary profile directory.
    pub(crate) fn profile(&self) -> &Path {
        self.profile.path()
    }
}

/// Writes the preferences the profile starts with. Unless `webrtc_udp`,
/// WebRTC may send UDP only through a proxy, and the proxy speaks no UDP.
fn write_preferences(profile: &Path, webrtc_udp: bool) -> std::io::Result<()> {
    let policy = if webrtc_udp {
        "default"
    } else {
        "disable_non_proxied_udp"
    };
    let preferences = serde_json::json!({
        "webrtc": {
            "ip_handling_policy": policy,
            "multiple_routes_enabled": webrtc_udp,
            "nonproxied_udp_enabled": webrtc_udp,
        }
    });
    let default = profile.join("Default");
    std::fs::create_dir_all(&default)?;
    std::fs::write(default.join("Preferences"), preferences.to_string())
}

/// Reads the browser's stderr until `DevTools listening on ws://...`, then
/// keeps draining it (at trace level) so the browser never blocks on a full
/// pipe. If the output ends first, the last lines explain why.
async fn read_announcement(
    stderr: tokio::process::ChildStderr,
    announced: oneshot::Sender<Result<String, String>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    let mut announced = Some(announced);
    let mut last_lines: Vec<String> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("DevTools listening on ") {
            if let Some(announced) = announced.take() {
                let _ = announced.send(Ok(url.trim().to_owned()));
            }
            continue;
        }
        tracing::trace!(target: "molt_browser::chromium", "{line}");
        if announced.is_some() {
            last_lines.push(line);
            if last_lines.len() > 5 {
                last_lines.remove(0);
            }
        }
    }
    if let Some(announced) = announced {
        let _ = announced.send(Err(last_lines.join(" | ")));
    }
}

/// Kills the processes outside the browser's group that belong to it: the
/// crash handlers Chromium starts in sessions of their own, whose command
/// lines name the profile (their crash database is under its `HOME`).
fn kill_strays(profile: &Path) {
    let needle = profile.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|window| window == needle) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        // The group holds the zygote, renderers and GPU process too.
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        kill_strays(self.profile.path());
        // Reap the browser so no zombie is left, and let it go before its
        // profile directory is removed. SIGKILL makes this quick.
        for _ in 0..200 {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
        tracing::debug!(pid = self.pid, "Chromium ended");
    }
}
