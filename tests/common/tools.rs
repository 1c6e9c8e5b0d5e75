//! System tools some tests check with (promtool, systemd-analyze, ip):
//! found on the PATH, or installed from their Debian package when the test
//! runs as root with apt-get; otherwise the test skips, saying why, except
//! in CI, where a test that cannot run fails (see [`skip`]).

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// What a test does when it is root with apt-get and still has no tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfInstallFails {
    /// Fails: the tool should be there, the check matters.
    Fail,
    /// Skips, saying why (a package that cannot install in a container).
    Skip,
}

/// A tool and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The command.
    pub command: &'static str,
    /// An argument it answers with exit 0 when it works (`--version`).
    pub probe_arg: &'static str,
    /// The Debian package that has it.
    pub package: &'static str,
    /// See [`IfInstallFails`].
    pub if_install_fails: IfInstallFails,
}

impl Tool {
    fn runs(&self) -> bool {
        Command::new(self.command)
            .arg(self.probe_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Runs `args` of apt-get; `Err` holds what it said when it failed.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(args)
        .args(["-qq", "-o", "DPkg::Lock::Timeout=600"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Installs `package`, refreshing the package lists only if the first try
/// fails (a fresh machine has none).
fn apt_install(package: &str) -> Result<(), String> {
    if apt_get(&["install", "-y", package]).is_ok() {
        return Ok(());
    }
    let updated = apt_get(&["update"]);
    apt_get(&["install", "-y", package]).map_err(|e| match updated {
        Ok(()) => e,
        Err(u) => format!("{u}; then {e}"),
    })
}

/// Makes sure `tool` runs, installing its package when it does not and this
/// is root with apt-get. `Err` is why the test should skip; a failed
/// install panics instead where the tool says [`IfInstallFails::Fail`].
pub fn ensure(tool: &Tool) -> Result<(), String> {
    // Tests of one binary run in parallel: one apt-get at a time.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if tool.runs() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = Command::new("apt-get").arg("--version").output().is_ok();
    let (command, package) = (tool.command, tool.package);
    if !(root && apt) {
        return Err(format!(
            "{command} is not installed and this is not root with apt-get; install Debian's `{package}` package to run it"
        ));
    }
    let failed = match apt_install(package) {
        Ok(()) if tool.runs() => return Ok(()),
        Ok(()) => format!("{package} is installed but {command} does not run"),
        Err(e) => format!("{command} is missing and {package} could not be installed: {e}"),
    };
    match tool.if_install_fails {
        IfInstallFails::Fail => panic!("{failed}"),
        IfInstallFails::Skip => Err(failed),
    }
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or
/// `false`, as CI services and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A test that cannot run here: outside CI it skips, saying why on stderr;
/// in CI it fails, because a check that did not run must not look passed.
/// Call it, then return from the test.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("cannot run in CI, where nothing may skip: {why}");
    }
    eprintln!("SKIPPED: {why}");
}
