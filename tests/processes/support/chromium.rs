//! A headless Chromium driven over the DevTools protocol (the `headless_chrome` crate), for
//! tests of the dashboard page in a real browser.
//!
//! The browser is Debian's `chromium` (`.ci/run` installs it when missing), found as
//! `$HA_CHROMIUM`, else `/usr/bin/chromium`, else `chromium` or `google-chrome` on the `PATH`.
//! Under `CI=true` a browser that cannot be found or started fails the test; elsewhere the
//! test prints why and passes without running ([`Chromium::start_or_skip`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde::de::DeserializeOwned;

/// How long one DevTools call (navigate, evaluate, screenshot) may take before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The browser process closes itself when no DevTools call came for this long (a test that
/// hangs elsewhere still ends with the test process; this bounds a leaked browser).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The size of the browser window, in CSS pixels. Headless Chromium keeps about 140 px of it
/// for the browser's own frame, so the page and its screenshot get 1280 x ~1100: the whole
/// dashboard of a 3-node cluster.
pub const WINDOW_SIZE: (u32, u32) = (1280, 1240);

/// A running headless Chromium with one tab. Dropping it kills the browser by its process id.
pub struct Chromium {
    // Field order: the tab's connection goes before the browser process is killed.
    tab: Arc<Tab>,
    browser: Browser,
    executable: PathBuf,
}

impl Chromium {
    /// Start the browser, or explain why it cannot be: `Err` with the reason.
    pub fn start() -> Result<Self, String> {
        let executable = find_executable()?;
        // Root (CI, this machine) cannot use Chromium's sandbox; `--headless` in Chromium 132
        // and later is the new headless mode (the old one moved to chrome-headless-shell).
        let extra: [&OsStr; 2] = ["--headless=new".as_ref(), "--hide-scrollbars".as_ref()];
        let options = LaunchOptions::default_builder()
            .path(Some(executable.clone()))
            .headless(false)
            .sandbox(false)
            .window_size(Some(WINDOW_SIZE))
            // A port below the kernel's ephemeral range that no node of this test has.
            .port(Some(crate::support::cluster::free_tcp_addr().port()))
            .idle_browser_timeout(IDLE_TIMEOUT)
            .args(extra.to_vec())
            .build()
            .map_err(|error| format!("browser launch options: {error}"))?;
        let browser = Browser::new(options)
            .map_err(|error| format!("cannot start {}: {error:#}", executable.display()))?;
        let tab = browser
            .new_tab()
            .map_err(|error| format!("cannot open a tab in {}: {error:#}", executable.display()))?;
        tab.set_default_timeout(CALL_TIMEOUT);
        Ok(Self {
            tab,
            browser,
            executable,
        })
    }

    /// [`start`](Self::start), or `None` after printing why not, when not under `CI=true`.
    ///
    /// # Panics
    /// Under `CI=true`, when the browser cannot be started: CI installs it, so a green run
    /// means the page was really tested in a browser.
    pub fn start_or_skip() -> Option<Self> {
        match Self::start() {
            Ok(browser) => Some(browser),
            Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true and the browser cannot be started: {reason}")
            }
            Err(reason) => {
                eprintln!("SKIPPED (not under CI=true): {reason}");
                None
            }
        }
    }

    /// The browser's version string, such as `Chrome/148.0.7778.167`.
    pub fn version(&self) -> String {
        self.browser
            .get_version()
            .map(|version| version.product)
            .unwrap_or_else(|error| {
                format!("{} (version unknown: {error})", self.executable.display())
            })
    }

    /// Load `url` in the tab and wait for its load event.
    ///
    /// # Panics
    /// When the page does not load within the call timeout.
    pub fn open(&self, url: &str) {
        self.tab
            .navigate_to(url)
            .and_then(|tab| tab.wait_until_navigated())
            .unwrap_or_else(|error| panic!("cannot load {url}: {error:#}"));
    }

    /// Evaluate `expression` in the page; it must evaluate to a string (use
    /// `JSON.stringify(...)`), which is parsed as JSON into `T`.
    ///
    /// # Errors
    /// When the expression throws, does not give a string, or the string is not a `T`.
    pub fn evaluate_json<T: DeserializeOwned>(&self, expression: &str) -> Result<T, String> {
        let result = self
            .tab
            .evaluate(expression, false)
            .map_err(|error| format!("evaluate failed: {error:#}"))?;
        let Some(serde_json::Value::String(text)) = result.value else {
            return Err(format!(
                "expression gave {:?} (a {:?}), not a JSON string: {}",
                result.value,
                result.Type,
                result.description.unwrap_or_default()
            ));
        };
        serde_json::from_str(&text).map_err(|error| format!("{error}: {text}"))
    }

    /// Evaluate `expression` for its effect (it may give anything).
    ///
    /// # Panics
    /// When the call fails (the expression threw, or the browser is gone).
    pub fn run(&self, expression: &str) {
        self.tab
            .evaluate(expression, false)
            .unwrap_or_else(|error| panic!("cannot run {expression:?}: {error:#}"));
    }

    /// Poll `read` (a page snapshot) every 100 ms until `done` holds for it, for at most
    /// `timeout`; returns that snapshot.
    ///
    /// # Panics
    /// After `timeout`, with the last snapshot (or the last error reading it).
    pub fn wait_for<T: std::fmt::Debug>(
        &self,
        what: &str,
        timeout: Duration,
        mut read: impl FnMut(&Self) -> Result<T, String>,
        mut done: impl FnMut(&T) -> bool,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match read(self) {
                Ok(snapshot) if done(&snapshot) => return snapshot,
                last if Instant::now() >= deadline => {
                    panic!(
                        "the page did not show {what} within {timeout:?}; it last showed {last:#?}"
                    )
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Save a PNG screenshot of the window to `path` (its directory is created).
    ///
    /// # Panics
    /// When the screenshot cannot be taken or written.
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap_or_else(|error| panic!("cannot take a screenshot: {error:#}"));
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .unwrap_or_else(|error| panic!("create {}: {error}", directory.display()));
        }
        std::fs::write(path, &png)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }
}

/// The browser binary: `$HA_CHROMIUM`, `/usr/bin/chromium`, or `chromium`, `chromium-browser`
/// or `google-chrome` on the `PATH`.
fn find_executable() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("HA_CHROMIUM") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("HA_CHROMIUM={} is not a file", path.display()))
        };
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.is_file() {
        return Ok(debian.to_path_buf());
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(found) = std::env::split_paths(&search)
            .map(|directory| directory.join(name))
            .find(|candidate| candidate.is_file())
        {
            return Ok(found);
        }
    }
    Err(
        "no browser: install Debian's chromium (`apt-get install chromium`) or set HA_CHROMIUM"
            .into(),
    )
}
