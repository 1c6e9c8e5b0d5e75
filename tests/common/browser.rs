//! Headless Chromium for the page tests: a page's DOM once its script has
//! run, and a screenshot, each run bounded in time and killed (with every
//! process it started) when it overruns.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::{IfInstallFails, Tool};

/// Debian's Chromium.
pub const CHROMIUM: Tool = Tool {
    command: "chromium",
    probe_arg: "--version",
    package: "chromium",
    if_install_fails: IfInstallFails::Fail,
};

/// One Chromium run may take this long: a start on a loaded 2-core machine
/// takes a few seconds; more means it hangs.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Virtual time a page gets to run its script before the DOM is taken:
/// its first read and two refreshes. Chromium holds virtual time while a
/// request is in flight, so slow answers do not shorten it.
const SCRIPT_BUDGET_MS: u32 = 2500;

/// Headless Chromium with a profile of its own under a test's folder.
pub struct Browser {
    dir: PathBuf,
}

impl Browser {
    /// A browser keeping its profile and output under `dir`.
    pub fn new(dir: &Path) -> Browser {
        Browser {
            dir: dir.join("chromium"),
        }
    }

    fn run(&self, what: &[String], url: &str, stdout: Stdio) -> Result<(), String> {
        let started = Instant::now();
        let mut child = Command::new(CHROMIUM.command)
            .args([
                "--headless",
                // Tests run as root in CI, where the sandbox refuses to start.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--window-size=1280,860",
            ])
            .arg(format!(
                "--user-data-dir={}",
                self.dir.join("profile").display()
            ))
            .arg(format!("--virtual-time-budget={SCRIPT_BUDGET_MS}"))
            .args(what)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(self.dir.join("stderr")).map_err(|e| e.to_string())?)
            // Its own process group, so that an overrun kills its helpers too.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start chromium: {e}"))?;
        loop {
            match child.try_wait().map_err(|e| e.to_string())? {
                Some(s) if s.success() => return Ok(()),
                Some(s) => {
                    let err = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
                    return Err(format!("chromium {what:?} {url} exited {s}: {err}"));
                }
                None if started.elapsed() > RUN_DEADLINE => {
                    let _ = Command::new("kill")
                        .args(["-KILL", &format!("-{}", child.id())])
                        .status();
                    let _ = child.wait();
                    return Err(format!("chromium {what:?} {url} ran over {RUN_DEADLINE:?}"));
                }
                None => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// The DOM of `url` after its script ran for a while.
    pub fn dom(&self, url: &str) -> Result<String, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let path = self.dir.join("dom.html");
        // To a file, not a pipe: nothing has to read while it writes.
        let out = File::create(&path).map_err(|e| e.to_string())?;
        self.run(&["--dump-dom".into()], url, out.into())?;
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A PNG of `url` after its script ran for a while, saved at `to`.
    pub fn screenshot(&self, url: &str, to: &Path) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        self.run(
            &[format!("--screenshot={}", to.display())],
            url,
            Stdio::null(),
        )?;
        let bytes = std::fs::read(to).map_err(|e| format!("{}: {e}", to.display()))?;
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Ok(())
        } else {
            Err(format!("{} is not a PNG", to.display()))
        }
    }
}

/// Every opening tag in `html` that starts with `start` (e.g. `<tr `),
/// up to its `>`.
pub fn tags<'a>(html: &'a str, start: &str) -> Vec<&'a str> {
    html.match_indices(start)
        .filter_map(|(i, _)| html[i..].find('>').map(|end| &html[i..i + end]))
        .collect()
}

/// The value of attribute `name` in an opening tag.
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].replace("&amp;", "&"))
}
