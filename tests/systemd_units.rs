//! The systemd unit and the Debian package that carries it: `systemd-analyze
//! verify` has nothing to say about the unit, `systemd-analyze security`
//! rates its exposure 2.0 or better, the package holds what it should and
//! lintian has no error or warning about it, and both work under a real
//! systemd (`tests/systemd/e2e.sh`).
//!
//! The analyses do not need systemd to be PID 1. `verify` exits 0 even on
//! unknown keys and bad values, so any output at all fails the test. The
//! unit is checked as an instance (`ringsync@a.service`) from a copy whose
//! `ExecStart=` points at the binary just built, since verify wants the
//! binary to exist.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::deb::{self, NoPackage};
use common::tools::{self, IfInstallFails, Tool};
use common::BIN;

const INSTALLED_BIN: &str = "/usr/local/bin/ringsync";
/// Where the package puts the binary, and its unit's `ExecStart=` with it.
const PACKAGED_BIN: &str = "/usr/bin/ringsync";
/// Highest exposure accepted, on systemd-analyze's 0 (best) to 10 scale.
const MAX_EXPOSURE: f64 = 2.0;

fn unit_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ringsync@.service")
}

/// `systemd-analyze`, from Debian's `systemd` package, which may not
/// install in a container: the tests skip then (outside CI).
const SYSTEMD_ANALYZE: Tool = Tool {
    command: "systemd-analyze",
    probe_arg: "--version",
    package: "systemd",
    if_install_fails: IfInstallFails::Skip,
};

/// Whether `systemd-analyze` runs here (see [`SYSTEMD_ANALYZE`]); prints
/// why it skips.
fn systemd_analyze() -> bool {
    match tools::ensure(&SYSTEMD_ANALYZE) {
        Ok(()) => true,
        Err(why) => {
            tools::skip(&why);
            false
        }
    }
}

/// A temp dir holding the unit as `ringsync@.service`, with `edit` applied
/// to its text after ExecStart= is pointed at the built binary.
fn unit_copy(edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(unit_source()).expect("read systemd/ringsync@.service");
    assert!(
        text.contains(&format!("ExecStart={INSTALLED_BIN} ")),
        "ExecStart= no longer starts {INSTALLED_BIN}:\n{text}"
    );
    let text = edit(text.replace(
        &format!("ExecStart={INSTALLED_BIN} "),
        &format!("ExecStart={BIN} "),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("ringsync@.service"), text).expect("write the unit copy");
    let instance = dir.path().join("ringsync@a.service");
    (dir, instance)
}

fn analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verify_has_nothing_to_say_about_the_unit() {
    if !systemd_analyze() {
        return;
    }
    let (_dir, unit) = unit_copy(|t| t);
    let out = analyze(&["verify"], &unit);
    assert!(
        out.status.success() && said(&out).trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{}",
        unit.display(),
        out.status,
        said(&out)
    );

    // The check can fail: a misspelt key is reported, though verify exits 0.
    let (_dir, unit) = unit_copy(|t| t.replace("UMask=0077", "UMask=0077\nNoNewPrivilege=yes"));
    let out = analyze(&["verify"], &unit);
    assert!(
        said(&out).contains("NoNewPrivilege"),
        "verify did not report an unknown key: {}",
        said(&out)
    );
}

#[test]
fn the_unit_says_what_the_service_needs() {
    let text = std::fs::read_to_string(unit_source()).expect("read the unit");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=ringsync/%i",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LoadCredential=secret:/etc/ringsync/secret",
        "LoadCredential=tokens:/etc/ringsync/tokens",
        "ExecStart=/usr/local/bin/ringsync node --topology /etc/ringsync/topology.toml --id %i --data-dir ${STATE_DIRECTORY}",
    ] {
        assert!(lines.contains(&want), "the unit lacks {want:?}");
    }
    // A credential file that is missing must not keep the unit from
    // starting: SetCredential= of the same id is the fallback.
    assert!(
        lines.iter().any(|l| l.starts_with("SetCredential=secret:")),
        "no SetCredential=secret: fallback"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("SetCredential=tokens:")),
        "no SetCredential=tokens: fallback"
    );
}

#[test]
fn security_exposure_is_at_most_2() {
    if !systemd_analyze() {
        return;
    }
    let (_dir, unit) = unit_copy(|t| t);
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
    let out = analyze(&["security", "--offline=true", &threshold], &unit);
    let text = said(&out);
    let score: Option<f64> = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for ringsync@a.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok());
    let Some(score) = score else {
        panic!("no overall exposure level in:\n{text}");
    };
    eprintln!("systemd-analyze security: exposure {score} (at most {MAX_EXPOSURE} accepted)");
    assert!(
        out.status.success() && score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE} ({}):\n{text}",
        out.status
    );
    // Nothing in the unit was ignored on the way.
    assert!(
        !text.contains("ignoring"),
        "systemd-analyze ignored part of the unit:\n{text}"
    );
}

/// The package of the binary under test (see [`common::deb`]), or `None`
/// when it cannot be built here (said why); a failed build fails the test.
fn package() -> Option<PathBuf> {
    match deb::package() {
        Ok(path) => Some(path),
        Err(NoPackage::CannotBuild(why)) => {
            tools::skip(&why);
            None
        }
        Err(NoPackage::Failed(why)) => panic!("{why}"),
    }
}

fn repo_file(path: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `command`, which must succeed; its stdout.
fn stdout_of(command: &mut Command) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} ({}):\n{}",
        out.status,
        said(&out)
    );
    out.stdout
}

fn bin_says(args: &[&str]) -> Vec<u8> {
    stdout_of(Command::new(BIN).args(args))
}

#[test]
fn the_package_holds_the_binary_the_unit_the_config_and_the_docs() {
    let Some(deb) = package() else { return };
    let field = |name: &str| {
        let out = stdout_of(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
        String::from_utf8_lossy(&out).trim().to_string()
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(field("Package"), "ringsync");
    assert_eq!(field("Version"), format!("{version}-1"));
    // Only what the binary links: libc.
    let depends = field("Depends");
    assert!(
        !depends.is_empty() && depends.split(',').all(|d| d.trim().starts_with("libc6 ")),
        "Depends: {depends}"
    );
    assert_eq!(field("Recommends"), "systemd");
    let changelog = String::from_utf8_lossy(&repo_file("debian/changelog")).to_string();
    assert!(
        changelog.starts_with(&format!("ringsync ({version}-1) ")),
        "debian/changelog's first entry is not for {version}-1"
    );

    let root = tempfile::tempdir().expect("temp dir");
    let files = root.path().join("files");
    let control = root.path().join("control");
    stdout_of(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&files));
    stdout_of(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let packed = |path: &str| {
        std::fs::read(files.join(path))
            .unwrap_or_else(|e| panic!("the package has no /{path}: {e}"))
    };

    let bin = files.join(PACKAGED_BIN.trim_start_matches('/'));
    let version_line = stdout_of(Command::new(&bin).arg("--version"));
    assert_eq!(
        version_line,
        bin_says(&["--version"]),
        "/usr/bin/ringsync is not the binary under test"
    );

    let unit = String::from_utf8_lossy(&repo_file("systemd/ringsync@.service")).to_string();
    let want = unit.replace(
        &format!("ExecStart={INSTALLED_BIN} "),
        &format!("ExecStart={PACKAGED_BIN} "),
    );
    assert_ne!(want, unit, "the unit has no ExecStart={INSTALLED_BIN}");
    assert_eq!(
        String::from_utf8_lossy(&packed("lib/systemd/system/ringsync@.service")),
        want,
        "the packaged unit is not systemd/ringsync@.service with ExecStart={PACKAGED_BIN}"
    );

    assert_eq!(
        packed("etc/ringsync/topology.toml"),
        repo_file("topology/example-production.toml"),
        "/etc/ringsync/topology.toml is not the commented example"
    );
    assert_eq!(
        String::from_utf8_lossy(
            &std::fs::read(control.join("conffiles")).expect("the package has conffiles")
        ),
        "/etc/ringsync/topology.toml\n",
        "conffiles"
    );

    let man = stdout_of(
        Command::new("gzip")
            .arg("-dc")
            .arg(files.join("usr/share/man/man1/ringsync.1.gz")),
    );
    assert_eq!(
        man,
        bin_says(&["man"]),
        "the man page is not `ringsync man`"
    );
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/ringsync"),
        ("zsh", "usr/share/zsh/vendor-completions/_ringsync"),
        ("fish", "usr/share/fish/vendor_completions.d/ringsync.fish"),
    ] {
        assert_eq!(
            packed(path),
            bin_says(&["completions", shell]),
            "/{path} is not `ringsync completions {shell}`"
        );
    }

    assert_eq!(
        packed("usr/share/doc/ringsync/README.md"),
        repo_file("README.md")
    );
    assert_eq!(
        packed("usr/share/doc/ringsync/copyright"),
        repo_file("debian/copyright")
    );
    for script in ["postinst", "prerm", "postrm"] {
        assert_eq!(
            std::fs::read(control.join(script)).unwrap_or_default(),
            repo_file(&format!("debian/{script}")),
            "the package's {script} is not debian/{script}"
        );
    }
}

/// Debian's lintian: a test that needs it fails where it cannot be had
/// (it installs wherever apt-get works).
const LINTIAN: Tool = Tool {
    command: "lintian",
    probe_arg: "--version",
    package: "lintian",
    if_install_fails: IfInstallFails::Fail,
};

#[test]
fn lintian_has_no_error_or_warning_about_the_package() {
    let Some(deb) = package() else { return };
    if let Err(why) = tools::ensure(&LINTIAN) {
        tools::skip(&why);
        return;
    }
    // Warnings it would give are fixed, or overridden with the reason in
    // debian/lintian-overrides; notes (I:) are explained in Cargo.toml.
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--info"])
        .arg(&deb)
        .output()
        .expect("run lintian");
    let text = said(&out);
    let tags: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        out.status.success() && tags.is_empty(),
        "lintian {} ({}):\n{text}",
        deb.display(),
        out.status
    );
    eprintln!("lintian: no error or warning about {}", deb.display());
}

/// The units under a real systemd: `tests/systemd/e2e.sh` boots Debian
/// containers with systemd-nspawn, installs the package in each exactly as
/// systemd/README.md says, and runs a write, a sync, a SIGKILL with
/// fallback, a restart with catch-up, an automatic restart, a reload, a
/// reinstall over a running node, a fourth server added by rolling reload,
/// and the package's removal and purge. Outside CI it skips (exit 77, with
/// the reason) where containers cannot run: not root, no nspawn, no Debian
/// mirror; in CI that fails. The first run builds the container root
/// (about 260 MB, a minute or two) in /var/cache/ringsync-test-root; later
/// runs take under a minute. `RINGSYNC_SKIP_E2E=1` skips it on purpose
/// (outside CI).
#[test]
fn end_to_end_in_systemd_containers() {
    if std::env::var_os("RINGSYNC_SKIP_E2E").is_some_and(|v| v == "1") {
        tools::skip("RINGSYNC_SKIP_E2E=1");
        return;
    }
    let Some(deb) = package() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/e2e.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&deb)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/systemd/e2e.sh");
    let text = said(&out);
    match out.status.code() {
        Some(0) => eprintln!(
            "{}",
            text.lines()
                .filter(|l| l.starts_with("---"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Some(77) => tools::skip(text.trim()),
        _ => panic!("{} failed ({}):\n{text}", script.display(), out.status),
    }
}
