//! `ringsync demo --once`: starts a whole local cluster, writes, syncs,
//! reports, stops, and exits 0 when the sync converged.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{free_ports, wait_for, BIN};

/// A demo starts its nodes, waits for them (30 s at most), writes, runs one
/// manual sync and stops: seconds in a debug build. Past this, it is stuck.
const DEMO_DEADLINE: Duration = Duration::from_secs(60);

/// A running demo in its own process group. The demo kills its nodes when
/// it ends, but not if it is itself killed: dropping this SIGKILLs the
/// whole group, nodes included, and reaps the demo.
struct Demo {
    child: Child,
}

impl Demo {
    /// Sends `signal` to the demo's process group; true if any process got it.
    fn signal_group(&self, signal: &str) -> bool {
        // The group id is the demo's pid (process_group(0) below).
        Command::new("kill")
            .arg(signal)
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    }

    fn kill_group(&mut self) {
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

/// Runs `ringsync demo --once [args]` in `cwd`; returns its exit status and
/// its output (stdout then stderr). Output goes to files, not pipes, so a
/// chatty demo cannot block on a full pipe while we wait for it.
fn run_demo(args: &[&str], cwd: &Path, tmp: &Path) -> (ExitStatus, String) {
    let out_path = tmp.join("demo.out");
    let out = File::create(&out_path).expect("create the demo's output file");
    let err = out.try_clone().expect("clone the output handle");
    let child = Command::new(BIN)
        .arg("demo")
        .arg("--once")
        .args(args)
        .current_dir(cwd)
        // The demo keeps its nodes' data and logs under the temp dir: ours,
        // so nothing is left behind in /tmp even if it is killed.
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .expect("start ringsync demo");
    let mut demo = Demo { child };
    let read_out = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let status = wait_for(DEMO_DEADLINE, "the demo exits", || {
        match demo.child.try_wait() {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Err(format!("still running; output so far:\n{}", read_out())),
            Err(e) => Err(format!("try_wait failed: {e}")),
        }
    });
    // The demo reaps its nodes before it exits, so its group must be empty.
    let leftovers = demo.signal_group("-0");
    demo.kill_group();
    assert!(
        !leftovers,
        "the demo exited but left processes running:\n{}",
        read_out()
    );
    (status, read_out())
}

fn assert_converged(status: ExitStatus, out: &str) {
    assert!(status.success(), "the demo exited with {status}:\n{out}");
    assert!(
        out.contains("converged: true"),
        "the demo printed no \"converged: true\":\n{out}"
    );
}

#[test]
fn demo_once_over_local_3_on_free_ports_converges() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(manifest.join("topology/local-3.toml"))
        .expect("read topology/local-3.toml");
    // The checked-in file uses fixed ports 7101-7103; other tests may run at
    // the same time, so move its nodes to ports that are free now.
    let mut rewritten = text.clone();
    for (fixed, free) in [7101, 7102, 7103].iter().zip(free_ports(3)) {
        let from = format!("127.0.0.1:{fixed}");
        assert!(rewritten.contains(&from), "local-3.toml has no {from}");
        rewritten = rewritten.replace(&from, &format!("127.0.0.1:{free}"));
    }
    let topology = tmp.path().join("local-3.toml");
    std::fs::write(&topology, rewritten).expect("write the topology copy");
    let topology = topology.to_str().expect("a UTF-8 temp path");
    let (status, out) = run_demo(&["--topology", topology], manifest, tmp.path());
    assert_converged(status, &out);
}

#[test]
fn demo_once_with_the_default_topology_converges() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // topology/local-5.toml, the default, has fixed ports: only run when
    // they are free, e.g. not while someone's own demo is running.
    for port in 7201..=7205 {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            common::tools::skip(&format!(
                "port {port} of topology/local-5.toml is not free ({e})"
            ));
            return;
        }
    }
    let (status, out) = run_demo(&[], manifest, tmp.path());
    assert_converged(status, &out);
}
