//! The systemd unit: `systemd-analyze verify` has nothing to say about it,
//! and `systemd-analyze security` rates its exposure 2.0 or better.
//!
//! Neither needs systemd to be PID 1. `verify` exits 0 even on unknown keys
//! and bad values, so any output at all fails the test. The unit is checked
//! as an instance (`ringsync@a.service`) from a copy whose `ExecStart=`
//! points at the binary just built, since verify wants the binary to exist.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::tools::{self, IfInstallFails, Tool};
use common::BIN;

const INSTALLED_BIN: &str = "/usr/local/bin/ringsync";
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

/// The units under a real systemd: `tests/systemd/e2e.sh` boots three
/// Debian containers with systemd-nspawn, installs ringsync in each exactly
/// as systemd/README.md says, and runs a write, a sync, a SIGKILL with
/// fallback, a restart with catch-up, an automatic restart and a reload.
/// Outside CI it skips (exit 77, with the reason) where containers cannot
/// run: not root, no nspawn, no Debian mirror; in CI that fails. The first run builds the container
/// root (about 260 MB, a minute or two) in /var/cache/ringsync-test-root;
/// later runs take seconds. `RINGSYNC_SKIP_E2E=1` skips it on purpose
/// (outside CI).
#[test]
fn end_to_end_in_systemd_containers() {
    if std::env::var_os("RINGSYNC_SKIP_E2E").is_some_and(|v| v == "1") {
        tools::skip("RINGSYNC_SKIP_E2E=1");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/e2e.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(BIN)
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
