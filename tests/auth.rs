//! Authentication with real processes: where the secret comes from, what
//! happens without one, a mismatched secret, a key rolled over without
//! downtime, and the CLI's credentials. And, in process, the 503 a peer
//! gets from a stopping node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringsync::core::Schedule;
use ringsync::http::client::call;
use ringsync::service::NodeHandle;
use ringsync::topology::Topology;

use common::raw::{now_ms, request, send, signed};
use common::{
    free_ports, quiet_interval, tail, wait_for, Cluster, BIN, NO_SECRETS, READY_DEADLINE, SECRET,
};

/// Cycle length where data must move by cycles as well as by relay.
const INTERVAL: &str = "300ms";

/// Long against the few cycles any wait here needs.
const DEADLINE: Duration = Duration::from_secs(20);

/// A node process of our own (outside the harness), killed when dropped.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Proc {
    fn spawn(topology: &Path, id: &str, data: &Path, args: &[&str], env: &[(&str, &Path)]) -> Proc {
        let log = data.with_extension("log");
        let out = std::fs::File::create(&log).expect("create a log");
        let err = out.try_clone().expect("clone the log");
        let mut cmd = Command::new(BIN);
        cmd.arg("node")
            .arg("--topology")
            .arg(topology)
            .args(["--id", id, "--data-dir"])
            .arg(data)
            .args(args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: Some(cmd.spawn().expect("spawn ringsync node")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own; its status.
    fn exits(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let st = wait_for(READY_DEADLINE, "the node exits", || {
            match child.try_wait() {
                Ok(Some(st)) => Ok(st),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(e.to_string()),
            }
        });
        self.child = None;
        st
    }

    fn ready(&mut self, url: &str) {
        let child = self.child.as_mut().expect("running");
        wait_for(READY_DEADLINE, &format!("{url} is ready"), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the node exited with {st}:\n{}", tail(&self.log, 30));
            }
            match call("GET", url, "/readyz", None, Duration::from_secs(1)) {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
}

fn two_node_topology(dir: &Path, first_addr: &str, second_port: u16, extra: &str) -> PathBuf {
    let t = format!(
        "[cluster]\nname = \"auth-test-{}\"\ninterval = \"{}\"\n{extra}\n[[node]]\nid = \"a\"\naddr = \"{first_addr}\"\n\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:{second_port}\"\n",
        std::process::id(),
        quiet_interval()
    );
    let path = dir.join("topology.toml");
    std::fs::write(&path, t).expect("write the topology");
    path
}

#[test]
fn off_loopback_without_a_secret_it_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(2);
    // 0.0.0.0 is every interface, not loopback; the test talks to it on
    // 127.0.0.1 only.
    let topo = two_node_topology(dir.path(), &format!("0.0.0.0:{}", ports[0]), ports[1], "");
    let data = dir.path().join("a");

    let mut p = Proc::spawn(&topo, "a", &data, &[], &[]);
    let st = p.exits();
    assert_eq!(st.code(), Some(1), "{}", p.log());
    let log = p.log();
    for says in [
        "no cluster secret",
        "not a loopback address",
        "secret new",
        "--insecure",
    ] {
        assert!(
            log.contains(says),
            "the refusal does not say {says:?}:\n{log}"
        );
    }

    let url = format!("http://127.0.0.1:{}", ports[0]);
    let mut p = Proc::spawn(&topo, "a", &data, &["--insecure"], &[]);
    p.ready(&url);
    assert!(
        p.log().contains("--insecure: anyone who can reach"),
        "{}",
        p.log()
    );
    // Open: a write without a token is taken.
    assert_eq!(
        call(
            "PUT",
            &url,
            "/v1/kv/k",
            Some(b"v".to_vec()),
            Duration::from_secs(5)
        )
        .expect("an answer")
        .0,
        200
    );
    drop(p);

    // With a secret it needs no flag, and refuses unsigned peers.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write the secret");
    let topo = two_node_topology(
        dir.path(),
        &format!("0.0.0.0:{}", ports[0]),
        ports[1],
        "secret_file = \"secret\"",
    );
    let mut p = Proc::spawn(&topo, "a", &data, &[], &[]);
    p.ready(&url);
    let a = format!("127.0.0.1:{}", ports[0]);
    send(&a, &request("GET", "/v1/peer/digest", &[], b"")).expect(
        401,
        "missing_signature",
        "unsigned",
    );
    let h = signed(SECRET, "b", "a", "GET", "/v1/peer/digest", b"", now_ms(), 1);
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &h, b"")).status,
        200
    );
}

#[test]
fn on_loopback_without_a_secret_it_runs_open_and_warns() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), NO_SECRETS);
    let a = c.url(0).trim_start_matches("http://").to_string();
    assert!(
        c.log_tail(0).contains("no cluster secret"),
        "no warning:\n{}",
        c.log_tail(0)
    );
    let ans = send(&a, &request("PUT", "/v1/kv/open", &[], b"yes"));
    assert_eq!(ans.status, 200, "{}", ans.message());
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &[], b"")).status,
        200
    );
    assert_eq!(c.sync(0)["converged"], true);
}

#[test]
fn systemd_credentials_win_and_a_lone_newline_is_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(2);
    let topo = two_node_topology(dir.path(), &format!("127.0.0.1:{}", ports[0]), ports[1], "");
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let a = format!("127.0.0.1:{}", ports[0]);

    // The unit's fallback for a missing /etc/ringsync/secret.
    std::fs::write(creds.join("secret"), "\n").expect("write");
    let mut p = Proc::spawn(
        &topo,
        "a",
        &dir.path().join("a"),
        &[],
        &[("CREDENTIALS_DIRECTORY", &creds)],
    );
    p.ready(&url);
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &[], b"")).status,
        200
    );
    drop(p);

    std::fs::write(creds.join("secret"), "the-credential-secret-0123456\n").expect("write");
    std::fs::write(creds.join("tokens"), "credential-token-0123456789 read\n").expect("write");
    let mut p = Proc::spawn(
        &topo,
        "a",
        &dir.path().join("a"),
        &[],
        &[("CREDENTIALS_DIRECTORY", &creds)],
    );
    p.ready(&url);
    send(&a, &request("GET", "/v1/peer/digest", &[], b"")).expect(
        401,
        "missing_signature",
        "unsigned",
    );
    let h = signed(
        "the-credential-secret-0123456",
        "b",
        "a",
        "GET",
        "/v1/peer/digest",
        b"",
        now_ms(),
        1,
    );
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &h, b"")).status,
        200
    );
    let bearer = vec![(
        "authorization",
        "Bearer credential-token-0123456789".to_string(),
    )];
    assert_eq!(
        send(&a, &request("GET", "/v1/kv", &bearer, b"")).status,
        200
    );
    send(&a, &request("PUT", "/v1/kv/x", &bearer, b"v")).expect(
        403,
        "read_only_token",
        "read token",
    );
    assert!(p.log().contains("credentials/secret"), "{}", p.log());
}

/// How many times node `i` has logged that it re-read its secrets.
fn reloads(c: &Cluster, i: usize) -> usize {
    std::fs::read_to_string(c.log_path(i))
        .unwrap_or_default()
        .matches("secrets re-read")
        .count()
}

/// Replaces the cluster's secret file and reloads node `i`.
fn rekey(c: &Cluster, i: usize, keys: &[&str]) {
    let before = reloads(c, i);
    std::fs::write(c.dir().join("secret"), keys.join("\n") + "\n").expect("write the secret");
    c.signal(i, "HUP");
    wait_for(DEADLINE, &format!("n{i} re-read its secret"), || {
        if reloads(c, i) > before {
            Ok(())
        } else {
            Err(c.log_tail(i))
        }
    });
}

/// Writes `key` at node `from` and waits until node `to` holds it.
fn reaches(c: &Cluster, from: usize, to: usize, key: &str) {
    c.put(from, key, "v");
    wait_for(
        DEADLINE,
        &format!("{key} from n{from} reaches n{to}"),
        || match c.get(to, key) {
            Some(_) => Ok(()),
            None => Err(format!("n{to} lacks it")),
        },
    );
}

#[test]
fn a_node_with_another_secret_is_refused_and_told() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    reaches(&c, 0, 1, "before");
    rekey(&c, 1, &["a-different-secret-for-n1-only"]);
    c.put(0, "after", "v");
    wait_for(DEADLINE, "n1 counts refused signatures", || {
        let (_, m) = c.call(1, "GET", "/metrics", None);
        let m = String::from_utf8_lossy(&m).into_owned();
        let line = m
            .lines()
            .find(|l| l.starts_with("ringsync_refused_requests_total{reason=\"bad_signature\"}"))
            .unwrap_or_default()
            .to_string();
        if line.ends_with(" 0") || line.is_empty() {
            Err(line)
        } else {
            Ok(())
        }
    });
    wait_for(DEADLINE, "n0 logs that n1 refused it", || {
        let log = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
        if log.contains("node n1 refused our request") && log.contains("same secret") {
            Ok(())
        } else {
            Err(c.log_tail(0))
        }
    });
    assert_eq!(
        c.get(1, "after"),
        None,
        "data crossed between different secrets"
    );
    let log1 = std::fs::read_to_string(c.log_path(1)).unwrap_or_default();
    assert!(log1.contains("refused (bad_signature)"), "{log1}");
}

#[test]
fn the_secret_rolls_over_without_downtime() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let old = SECRET;
    let new = "the-next-cluster-secret-0123456789";
    reaches(&c, 0, 1, "step0");
    // 1. Every node accepts the new key, still signs with the old.
    for i in 0..2 {
        rekey(&c, i, &[old, new]);
        reaches(&c, 0, 1, &format!("step1/{i}/a"));
        reaches(&c, 1, 0, &format!("step1/{i}/b"));
    }
    // 2. Every node signs with the new key, still accepts the old.
    for i in 0..2 {
        rekey(&c, i, &[new, old]);
        reaches(&c, 0, 1, &format!("step2/{i}/a"));
        reaches(&c, 1, 0, &format!("step2/{i}/b"));
    }
    // 3. The old key goes.
    for i in 0..2 {
        rekey(&c, i, &[new]);
        reaches(&c, 0, 1, &format!("step3/{i}/a"));
        reaches(&c, 1, 0, &format!("step3/{i}/b"));
    }
    for i in 0..2 {
        let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
        assert!(
            !log.contains("refused"),
            "a refusal during the rollover:\n{log}"
        );
    }
    let a = c.url(0).trim_start_matches("http://").to_string();
    let h = signed(old, "n1", "n0", "GET", "/v1/peer/digest", b"", now_ms(), 1);
    send(&a, &request("GET", "/v1/peer/digest", &h, b"")).expect(
        401,
        "bad_signature",
        "the old key",
    );
    let h = signed(new, "n1", "n0", "GET", "/v1/peer/digest", b"", now_ms(), 2);
    assert_eq!(
        send(&a, &request("GET", "/v1/peer/digest", &h, b"")).status,
        200
    );
}

fn cli(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RINGSYNC_TOKEN_FILE")
        .env_remove("RINGSYNC_SECRET_FILE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ringsync")
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_cli_takes_its_credentials_from_files_the_environment_names() {
    let c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    let url = c.url(0);
    let tokens = c.dir().join("tokens");
    let secret = c.dir().join("secret");

    let o = cli(&["put", "k", "v", "--node", &url], &[]);
    // 4: refused by the node.
    assert_eq!(o.status.code(), Some(4), "{}", said(&o));
    assert!(said(&o).contains("401"), "{}", said(&o));
    assert!(said(&o).contains("RINGSYNC_TOKEN_FILE"), "{}", said(&o));

    let o = cli(
        &["put", "k", "v", "--node", &url],
        &[("RINGSYNC_TOKEN_FILE", &tokens)],
    );
    assert!(o.status.success(), "{}", said(&o));
    let o = cli(
        &["get", "k", "--node", &url],
        &[("RINGSYNC_TOKEN_FILE", &tokens)],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "v",
        "{}",
        said(&o)
    );
    // With the secret instead of a token, the CLI signs as an operator.
    let o = cli(
        &["get", "k", "--node", &url],
        &[("RINGSYNC_SECRET_FILE", &secret)],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "v",
        "{}",
        said(&o)
    );

    let o = cli(
        &["sync", "--node", &url],
        &[("RINGSYNC_TOKEN_FILE", &tokens)],
    );
    assert!(
        !o.status.success(),
        "a sync with only a token: {}",
        said(&o)
    );
    assert!(
        said(&o).contains("RINGSYNC_SECRET_FILE") || said(&o).contains("signed"),
        "{}",
        said(&o)
    );
    let o = cli(
        &["sync", "--node", &url],
        &[("RINGSYNC_SECRET_FILE", &secret)],
    );
    assert!(o.status.success(), "{}", said(&o));
    assert!(said(&o).contains("converged: true"), "{}", said(&o));
    // Status stays open.
    let o = cli(&["status", "--node", &url], &[]);
    assert!(o.status.success(), "{}", said(&o));

    // `secret new`: a private file, never overwritten.
    let out = c.dir().join("made");
    let o = cli(
        &["secret", "new", "--out", out.to_str().expect("utf-8")],
        &[],
    );
    assert!(o.status.success(), "{}", said(&o));
    let text = std::fs::read_to_string(&out).expect("the secret");
    assert_eq!(text.trim().len(), 64);
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let o = cli(
        &["secret", "new", "--out", out.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(said(&o).contains("never overwritten"), "{}", said(&o));
    assert_eq!(std::fs::read_to_string(&out).expect("the secret"), text);
    let o = cli(&["secret", "new"], &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim().len(), 64);
}

#[test]
fn a_stopping_node_answers_peers_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topo = Topology::parse(
        "[cluster]\nname = \"stop-test\"\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n",
        "<text>",
        None,
    )
    .expect("topology");
    let shared: Arc<NodeHandle> = NodeHandle::open(topo, "a", dir.path()).expect("open node a");
    let app = ringsync::http::server::app(Arc::clone(&shared));
    let respond = |method: tide::http::Method, path: &str| {
        let url = tide::http::Url::parse(&format!("http://localhost{path}")).expect("url");
        let mut req = tide::http::Request::new(method, url);
        req.set_body(vec![1u8, 2, 3]);
        let mut res: tide::http::Response =
            async_std::task::block_on(app.respond(req)).expect("respond");
        let body = async_std::task::block_on(res.body_string()).unwrap_or_default();
        (u16::from(res.status()), body)
    };
    let (st, _) = respond(tide::http::Method::Post, "/v1/peer/message");
    assert_eq!(st, 400, "garbage is malformed while running");
    shared.stopping.store(true, Ordering::SeqCst);
    let (st, body) = respond(tide::http::Method::Post, "/v1/peer/message");
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("shutting_down"), "{body}");
    let (st, body) = respond(tide::http::Method::Put, "/v1/kv/k");
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("shutting_down"), "{body}");
}
