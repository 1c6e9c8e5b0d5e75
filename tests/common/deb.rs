//! The Debian package of the binary under test, built once per test binary
//! by `debian/build --binary BIN` (so from the very build `cargo test` made,
//! whatever its profile) into `target/PROFILE/deb-test/`.
//!
//! It needs cargo-deb, which `.ci/run` installs; without it the tests that
//! need the package skip, saying so (and fail in CI, see [`super::tools::skip`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::BIN;

/// Why there is no package.
#[derive(Debug, Clone)]
pub enum NoPackage {
    /// cargo-deb is not installed: the test cannot run here.
    CannotBuild(String),
    /// `debian/build` failed: a bug.
    Failed(String),
}

/// The package's path, built on first use.
pub fn package() -> Result<PathBuf, NoPackage> {
    static BUILT: OnceLock<Result<PathBuf, NoPackage>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<PathBuf, NoPackage> {
    let has_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        return Err(NoPackage::CannotBuild(
            "cargo-deb is not installed (cargo install cargo-deb --locked)".into(),
        ));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(BIN)
        .parent()
        .expect("the binary is in a folder")
        .join("deb-test");
    // A package left by an earlier run must not pass for this one.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("make the package's folder");
    let run = Command::new("bash")
        .arg(repo.join("debian/build"))
        .args(["--binary", BIN, "--output"])
        .arg(&out)
        .current_dir(repo)
        .output()
        .map_err(|e| NoPackage::Failed(format!("cannot run debian/build: {e}")))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    if !run.status.success() {
        return Err(NoPackage::Failed(format!(
            "debian/build --binary {BIN} failed ({}):\n{said}",
            run.status
        )));
    }
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("read the package's folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(NoPackage::Failed(format!(
            "debian/build made {} packages in {}, not one:\n{said}",
            debs.len(),
            out.display()
        ))),
    }
}
