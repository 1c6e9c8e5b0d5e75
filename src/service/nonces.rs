//! Keeps a node's nonce book across a clean stop, and after any other
//! start refuses the signed requests its previous process may have
//! accepted (issue 13, item 4; docs/DESIGN.md §13).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::handle::NodeHandle;
use super::now_ms;

/// The file in a data dir that holds the nonce book a clean stop saved.
/// It is removed as soon as a start has read it, so that it vouches for
/// one clean stop only.
pub const NONCE_FILE: &str = "ringsync.nonces";

fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(NONCE_FILE)
}

/// At start, before anything is served: takes back the nonce book a clean
/// stop left in `data_dir`. Without one (a crash, a kill, a failed save),
/// and if the data dir held a store (`had_store`: a node ran here before),
/// every request signed at or before `started_ms` is refused.
pub(super) fn restore(node: &NodeHandle, data_dir: &Path, had_store: bool, started_ms: u64) {
    let path = path_in(data_dir);
    let why = match std::fs::read_to_string(&path) {
        Ok(text) => match std::fs::remove_file(&path) {
            Err(e) => format!(
                "{} cannot be removed ({e}), so it could vouch for a later crash",
                path.display()
            ),
            Ok(()) => match node.guard.restore_nonces(&text, now_ms()) {
                Ok(n) => {
                    log::info!(
                        "took back {n} nonce(s) from the clean stop before (they stay refused)"
                    );
                    return;
                }
                Err(e) => format!("{} is unreadable: {e}", path.display()),
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !had_store {
                return;
            }
            "the last stop was not clean (no nonce book saved)".to_string()
        }
        Err(e) => format!("cannot read {}: {e}", path.display()),
    };
    node.guard.refuse_signed_before(started_ms);
    log::warn!(
        "{why}: refusing every request signed at or before this start ({} s), which the previous process may have accepted",
        started_ms / 1000
    );
    // Requests are stamped in whole seconds, so the rest of the start's
    // second would be refused too: serve only once it is over, and a peer
    // whose clock agrees with ours is never refused.
    if node.guard.signed() {
        let next_second = (started_ms / 1000 + 1) * 1000;
        let left = next_second.saturating_sub(now_ms());
        std::thread::sleep(Duration::from_millis(left.min(1000)));
    }
}

/// At a clean stop, once nothing more is applied: saves the nonce book in
/// `data_dir` (written aside, synced, then renamed into place, so that a
/// crash midway leaves no file rather than half of one).
pub(super) fn save(node: &NodeHandle, data_dir: &Path) {
    let path = path_in(data_dir);
    let aside = data_dir.join(format!("{NONCE_FILE}.new"));
    let text = node.guard.saved_nonces(now_ms());
    let written = std::fs::File::create(&aside)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&aside, &path));
    match written {
        Ok(()) => log::info!("nonce book saved in {}", path.display()),
        Err(e) => log::error!(
            "cannot save the nonce book in {}: {e}; the next start refuses requests signed before it",
            path.display()
        ),
    }
}
