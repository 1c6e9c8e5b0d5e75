//! `ringsync topology check` against `ringsync node`, the real binary: the
//! check refuses what a node refuses at start, all of a file's problems at
//! once, with paths resolved as the node resolves them.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{free_ports, BIN};

/// Runs `ringsync args` in `cwd`, with no systemd credentials.
fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ringsync")
}

fn said(o: &Output) -> String {
    format!(
        "[exit {:?}]\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A topology of nodes `a` on `first` and `b` on loopback, with `cluster`
/// added to its `[cluster]` table.
fn topology(cluster: &str, first: &str) -> String {
    let ports = free_ports(2);
    format!(
        "[cluster]\nname = \"check\"\ninterval = \"1s\"\n{cluster}\n\
         [[node]]\nid = \"a\"\naddr = \"{first}:{}\"\ndata_dir = \"a\"\n\n\
         [[node]]\nid = \"b\"\naddr = \"127.0.0.1:{}\"\ndata_dir = \"b\"\n",
        ports[0], ports[1]
    )
}

#[test]
fn every_problem_a_node_refuses_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.toml");
    let text = topology(
        "peer_timeout = \"2s\"\nsecret_file = \"no-such-secret\"\nmax_value_size = 0\n",
        "0.0.0.0",
    )
    .replace("id = \"b\"", "id = \"b b\"");
    std::fs::write(&file, text).expect("write the topology");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let file_arg = file.to_str().expect("a UTF-8 path");

    let o = run(elsewhere.path(), &["topology", "check", file_arg]);
    let out = said(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    // The file's own problems, each with its line, and the secret file,
    // resolved against the file's folder (not the working directory).
    assert!(
        out.contains(&format!("{file_arg}:6: max_value_size = 0")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{file_arg}:14: node id \"b b\"")),
        "{out}"
    );
    let missing = dir.path().join("no-such-secret");
    assert!(
        out.contains(&format!("cannot read secret_file {}", missing.display())),
        "{out}"
    );
    assert!(out.contains("3 problem(s)"), "{out}");
    assert!(
        out.contains("warning: ") && out.contains("peer_timeout 2s is not below interval 1s"),
        "{out}"
    );

    // The node refuses the same file for the same reasons.
    let o = run(
        elsewhere.path(),
        &["node", "--topology", file_arg, "--id", "a"],
    );
    let node = said(&o);
    assert_eq!(o.status.code(), Some(1), "{node}");
    for problem in [
        "max_value_size = 0",
        "node id \"b b\"",
        "cannot read secret_file",
    ] {
        assert!(node.contains(problem), "{problem} in {node}");
    }
}

#[test]
fn a_node_off_loopback_needs_a_secret_and_a_relative_secret_is_found_beside_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.toml");
    let file_arg = file.to_str().expect("a UTF-8 path");
    std::fs::write(&file, topology("", "0.0.0.0")).expect("write the topology");

    // Without a secret_file the secret may come as a systemd credential:
    // a warning for the check, an error for the node started without one.
    let o = run(elsewhere.path(), &["topology", "check", file_arg]);
    let out = said(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warning: ")
            && out.contains("no cluster secret, and this node listens on 0.0.0.0:"),
        "{out}"
    );
    let o = run(
        elsewhere.path(),
        &["node", "--topology", file_arg, "--id", "a"],
    );
    let node = said(&o);
    assert_eq!(o.status.code(), Some(1), "{node}");
    assert!(
        node.contains("no cluster secret, and this node listens on 0.0.0.0:"),
        "{node}"
    );

    std::fs::write(
        dir.path().join("secret"),
        "a-secret-of-enough-length-0123456789\n",
    )
    .expect("write the secret");
    std::fs::write(&file, topology("secret_file = \"secret\"", "0.0.0.0"))
        .expect("write the topology");
    let o = run(elsewhere.path(), &["topology", "check", file_arg]);
    let out = said(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("ring of 2 nodes"), "{out}");
    assert!(!out.contains("warning"), "{out}");
}
