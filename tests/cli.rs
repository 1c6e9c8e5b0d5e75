//! The client commands as a script sees them: the real binary against
//! real nodes, its bytes, its messages and its exit codes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ringsync::core::Schedule;
use ringsync::http::client::call;

use common::{free_ports, wait_for, Cluster, BIN};

const INTERVAL: &str = "300ms";

/// Runs `ringsync args` with only the environment given (no inherited
/// RINGSYNC_*), `stdin` as its input.
fn cli_in(args: &[&str], env: &[(&str, &Path)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RINGSYNC_NODE")
        .env_remove("RINGSYNC_TOKEN_FILE")
        .env_remove("RINGSYNC_SECRET_FILE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run ringsync");
    if let (Some(bytes), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(bytes).expect("write ringsync's stdin");
    }
    child.wait_with_output().expect("ringsync's output")
}

fn cli(args: &[&str], env: &[(&str, &Path)]) -> Output {
    cli_in(args, env, None)
}

fn said(o: &Output) -> String {
    format!(
        "[exit {:?}]\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, asserted with the output shown when it differs.
fn exits(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", said(o));
}

struct Creds {
    tokens: PathBuf,
    secret: PathBuf,
}

fn creds(c: &Cluster) -> Creds {
    Creds {
        tokens: c.dir().join("tokens"),
        secret: c.dir().join("secret"),
    }
}

#[test]
fn status_reads_no_credentials_and_a_refusal_says_what_to_set() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    let missing = c.dir().join("no-such-file");
    // Credentials named but unreadable: an open route does not read them.
    let o = cli(
        &["status", "--node", &url],
        &[
            ("RINGSYNC_TOKEN_FILE", &missing),
            ("RINGSYNC_SECRET_FILE", &missing),
        ],
    );
    exits(&o, 0);
    assert!(said(&o).contains("node n0"), "{}", said(&o));

    // A route that needs them, without them: refused (4), and told what to set.
    let o = cli(&["get", "k", "--node", &url], &[]);
    exits(&o, 4);
    assert!(stderr(&o).contains("missing_token"), "{}", said(&o));
    assert!(
        stderr(&o).contains("set RINGSYNC_TOKEN_FILE"),
        "{}",
        said(&o)
    );
    let o = cli(&["sync", "--node", &url], &[]);
    exits(&o, 4);
    assert!(
        stderr(&o).contains("set RINGSYNC_SECRET_FILE"),
        "{}",
        said(&o)
    );
    // A sync reads only the secret: a bad token file does not stop it.
    let k = creds(&c);
    let o = cli(
        &["sync", "--node", &url],
        &[
            ("RINGSYNC_SECRET_FILE", &k.secret),
            ("RINGSYNC_TOKEN_FILE", &missing),
        ],
    );
    exits(&o, 0);
}

#[test]
fn a_node_that_is_not_running_is_cannot_connect() {
    let port = free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["status", "--node", &url],
        vec!["get", "k", "--node", &url],
        vec!["list", "--node", &url],
    ] {
        let o = cli(&args, &[]);
        exits(&o, 5);
        assert_eq!(
            stderr(&o).trim(),
            format!("ringsync: cannot connect to {url} (connection refused): is the node running?"),
            "{args:?}"
        );
    }
}

#[test]
fn values_go_in_and_out_as_bytes() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    let k = creds(&c);
    let env: &[(&str, &Path)] = &[("RINGSYNC_TOKEN_FILE", &k.tokens)];
    let bytes: Vec<u8> = (0..=255u8).chain([0, 10, 13, 0xff]).collect();
    let file = c.dir().join("blob");
    std::fs::write(&file, &bytes).expect("write the blob");
    let file_arg = file.to_str().expect("utf-8 path");

    exits(
        &cli(&["put", "blob", "--file", file_arg, "--node", &url], env),
        0,
    );
    let o = cli(&["get", "blob", "--node", &url], env);
    exits(&o, 0);
    assert_eq!(o.stdout, bytes, "get's stdout is the value, untouched");
    let copy = c.dir().join("copy");
    let copy_arg = copy.to_str().expect("utf-8 path");
    exits(
        &cli(&["get", "blob", "--output", copy_arg, "--node", &url], env),
        0,
    );
    assert_eq!(std::fs::read(&copy).expect("the copy"), bytes);

    // --json: hex for bytes that are not UTF-8, text for text.
    let o = cli(&["get", "blob", "--json", "--node", &url], env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["value_hex"], hex.as_str(), "{}", said(&o));
    assert!(v.get("value").is_none());

    // From stdin, and from the argument: no newline is added to a pipe.
    let o = cli_in(&["put", "piped", "--node", &url], env, Some(&bytes[..100]));
    exits(&o, 0);
    let o = cli(&["get", "piped", "--node", &url], env);
    assert_eq!(o.stdout, &bytes[..100]);
    exits(&cli(&["put", "text", "hello", "--node", &url], env), 0);
    let o = cli(&["get", "text", "--node", &url], env);
    assert_eq!(o.stdout, b"hello");
    let o = cli(&["get", "text", "--json", "--node", &url], env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["value"], "hello");

    // An argument and --file at once is a usage error.
    let o = cli(&["put", "x", "v", "--file", file_arg, "--node", &url], env);
    exits(&o, 2);
}

#[test]
fn list_pages_through_a_prefix() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    let k = creds(&c);
    let env: &[(&str, &Path)] = &[("RINGSYNC_TOKEN_FILE", &k.tokens)];
    for i in 0..5 {
        c.put(0, &format!("p/{i}"), &format!("v{i}"));
    }
    c.put(0, "q", "other");
    c.put(0, "p/bin", "x");
    // A value that is not text is listed as hex.
    exits(
        &cli_in(&["put", "p/bin", "--node", &url], env, Some(&[0xff, 0x00])),
        0,
    );

    let o = cli(&["list", "p/", "--limit", "2", "--node", &url], env);
    exits(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "p/0\tv0\np/1\tv1\n");
    assert!(
        stderr(&o).contains("--after \"p/1\""),
        "a page that is not the last says how to go on: {}",
        said(&o)
    );
    let o = cli(
        &[
            "list", "p/", "--limit", "2", "--after", "p/1", "--node", &url,
        ],
        env,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "p/2\tv2\np/3\tv3\n");
    let o = cli(
        &["list", "p/", "--limit", "2", "--all", "--node", &url],
        env,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "p/0\tv0\np/1\tv1\np/2\tv2\np/3\tv3\np/4\tv4\np/bin\thex:ff00\n"
    );
    assert!(!stderr(&o).contains("--after"), "{}", said(&o));
    let o = cli(&["list", "--all", "--json", "--node", &url], env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 7, "{v}");
    assert_eq!(entries[5]["value_hex"], "ff00");
    assert_eq!(entries[6]["value"], "other");
    let o = cli(&["list", "--limit", "0", "--node", &url], env);
    exits(&o, 2);
}

#[test]
fn the_node_comes_from_the_environment_or_the_topology() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let k = creds(&c);
    c.put(1, "where", "here");
    let topology = c.topology().to_str().expect("utf-8 path").to_string();
    let url = c.url(1);
    let o = cli(
        &["get", "where"],
        &[
            ("RINGSYNC_TOKEN_FILE", &k.tokens),
            ("RINGSYNC_NODE", Path::new(&url)),
        ],
    );
    exits(&o, 0);
    assert_eq!(o.stdout, b"here");
    // --topology/--id wins over RINGSYNC_NODE.
    let o = cli(
        &["status", "--topology", &topology, "--id", "n1"],
        &[("RINGSYNC_NODE", Path::new("http://127.0.0.1:1"))],
    );
    exits(&o, 0);
    assert!(said(&o).contains("node n1"), "{}", said(&o));
    // Nothing names the node: a usage error that says how to.
    let o = cli(&["status"], &[]);
    exits(&o, 2);
    assert!(stderr(&o).contains("RINGSYNC_NODE"), "{}", said(&o));
    let o = cli(&["status", "--topology", &topology, "--id", "zz"], &[]);
    exits(&o, 2);
    assert!(stderr(&o).contains("not in"), "{}", said(&o));
    let o = cli(&["status", "--topology", &topology], &[]);
    exits(&o, 2);
}

#[test]
fn not_found_refused_and_not_converged_have_their_own_codes() {
    let mut c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    let k = creds(&c);
    let env: &[(&str, &Path)] = &[
        ("RINGSYNC_TOKEN_FILE", &k.tokens),
        ("RINGSYNC_SECRET_FILE", &k.secret),
    ];
    let o = cli(&["get", "absent", "--node", &url], env);
    exits(&o, 3);
    assert!(stderr(&o).contains("not_found"), "{}", said(&o));

    // del of a key the node never held: said, 3; of one it held: 0.
    let o = cli(&["del", "never", "--node", &url], env);
    exits(&o, 3);
    assert!(stderr(&o).contains("no key \"never\""), "{}", said(&o));
    assert!(stderr(&o).contains("nothing to delete"), "{}", said(&o));
    c.put(0, "held", "v");
    let o = cli(&["del", "held", "--node", &url], env);
    exits(&o, 0);
    assert!(said(&o).contains("deleted held"), "{}", said(&o));
    // Deleted already: nothing to delete again.
    exits(&cli(&["del", "held", "--node", &url], env), 3);

    // The empty key: 400 invalid_entry, refused (4).
    let o = cli(&["put", "", "v", "--node", &url], env);
    exits(&o, 4);
    assert!(stderr(&o).contains("400 invalid_entry"), "{}", said(&o));

    // A read token writing: refused (4).
    let read = c.dir().join("read-token");
    std::fs::write(&read, common::READ_TOKEN).expect("write the read token");
    let o = cli(
        &["put", "k", "v", "--node", &url],
        &[("RINGSYNC_TOKEN_FILE", &read)],
    );
    exits(&o, 4);

    c.kill(1);
    let o = wait_for(
        Duration::from_secs(20),
        "a sync that cannot reach n1",
        || {
            let o = cli(&["sync", "--node", &url], env);
            match o.status.code() {
                Some(6) => Ok(o),
                _ => Err(said(&o)),
            }
        },
    );
    assert!(
        stderr(&o).contains("n1 could not be reached"),
        "{}",
        said(&o)
    );
}

#[test]
fn the_empty_key_is_invalid_entry_not_no_route() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, common::NO_SECRETS);
    for method in ["GET", "PUT", "DELETE"] {
        let body = (method == "PUT").then(|| b"v".to_vec());
        let (status, answer) =
            call(method, &c.url(0), "/v1/kv/", body, Duration::from_secs(10)).expect("an answer");
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{method}: {text}");
        assert!(text.contains("invalid_entry"), "{method}: {text}");
    }
}

#[test]
fn usage_errors_exit_2_and_sim_lists_every_schedule() {
    let o = cli(&["sim", "--schedule", "ringy"], &[]);
    exits(&o, 2);
    assert!(
        stderr(&o).contains("successor, doubling, random or all"),
        "{}",
        said(&o)
    );
    exits(&cli(&["no-such-command"], &[]), 2);
    exits(&cli(&["get"], &[]), 2);
}

#[test]
fn completions_and_the_man_page_print_without_a_node() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = cli(&["completions", shell], &[]);
        exits(&o, 0);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("ringsync") && text.contains("list"),
            "{shell}: {text}"
        );
    }
    exits(&cli(&["completions", "tcsh"], &[]), 2);
    let o = cli(&["man"], &[]);
    exits(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(".TH ringsync 1"), "{text}");
    assert!(
        text.contains("RINGSYNC_NODE") && text.contains("Exit codes"),
        "{text}"
    );
}

#[test]
fn status_shows_the_mode_with_its_reason_and_age_and_times_as_ages() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    // Both nodes have run cycles and reached each other (a push answered
    // may be the catch-up pull at start, before any cycle).
    wait_for(
        Duration::from_secs(20),
        "a cycle run and a push from n0 answered",
        || {
            let s = c.status(0);
            match (
                s["peers"][0]["last_push_ok_ms"].as_u64(),
                s["cycles_run"].as_u64(),
            ) {
                (Some(_), Some(1..)) => Ok(()),
                _ => Err(s.to_string()),
            }
        },
    );
    let o = cli(&["status", "--node", &url, "--json"], &[]);
    exits(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let (since, cycle) = (
        v["mode_since_cycle"].as_u64().expect("mode_since_cycle"),
        v["cycle"].as_u64().expect("cycle"),
    );
    // Cycles are numbered from the clock: the mode began in a recent one.
    assert!(since > 0 && since <= cycle && cycle - since < 1000, "{v}");

    let o = cli(&["status", "--node", &url], &[]);
    exits(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("mode ring since "), "{text}");
    assert!(text.contains(" s ago: "), "{text}");
    assert!(
        text.contains("last push ok ") && text.contains(" s ago"),
        "{text}"
    );
    let now_s = v["now_ms"].as_u64().expect("now_ms") / 1000;
    assert!(
        !text.contains(&now_s.to_string()[..6]),
        "a Unix time in {text}"
    );
}

#[test]
fn status_and_logs_name_a_failed_peer_by_id_and_say_why_it_failed() {
    let mut c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    c.kill(1);
    wait_for(Duration::from_secs(20), "n0 in fallback", || {
        let s = c.status(0);
        if s["mode"] == "fallback" {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let o = cli(&["status", "--node", &url], &[]);
    exits(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("mode fallback since "), "{text}");
    assert!(text.contains(" s ago: node(s) n1 failed"), "{text}");
    assert!(text.contains("    last failure "), "{text}");
    let o = cli(&["status", "--node", &url, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let why = v["peers"][0]["last_failure"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "no last_failure in {v}");
    assert!(v["peers"][0]["last_failure_ms"].is_u64(), "{v}");
    let log = std::fs::read_to_string(c.log_path(0)).expect("n0's log");
    assert!(
        log.contains("mode is now fallback: node(s) n1 failed"),
        "{log}"
    );
}
