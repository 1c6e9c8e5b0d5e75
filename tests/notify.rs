//! The real binary speaks systemd's notification protocol: READY=1 once it
//! serves, WATCHDOG=1 while it runs, STATUS= lines, RELOADING=1 and READY=1
//! around a SIGHUP reload, and STOPPING=1 on SIGTERM before exiting 0.
//!
//! The test plays systemd: it binds the datagram socket, passes it in
//! `NOTIFY_SOCKET` with `WATCHDOG_USEC`, and reads what arrives. Only node
//! `a` of a two-node ring runs. Every wait has a deadline; the child is
//! killed on every path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringsync");
/// From spawn to READY=1: a debug build opens an empty store in well under
/// a second; the margin is for a loaded machine.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// The watchdog timeout handed to the node: it must ping every 200 ms.
const WATCHDOG_USEC: u64 = 400_000;
/// Long enough for several pings at 200 ms even on a loaded machine.
const PINGS_DEADLINE: Duration = Duration::from_secs(10);
/// From SIGTERM or SIGHUP to the answer on the socket, and to exit.
const SIGNAL_DEADLINE: Duration = Duration::from_secs(10);

/// A running node, killed and reaped when dropped; its log is printed then
/// so a failure shows what the node said.
struct Node {
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the node to exit, up to `deadline`.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("the node runs");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "the node did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- node log ({}):\n{log}", self.log.display());
        }
    }
}

/// The test's end of the notification socket.
struct Systemd {
    sock: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Systemd {
    fn bind(dir: &Path) -> Systemd {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        Systemd {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// The next datagram, if one arrives within the socket's read timeout.
    fn recv(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                Some(msg)
            }
            Err(_) => None,
        }
    }

    /// Reads datagrams until one has the assignment `line`; calls `between`
    /// after each read. Panics at the deadline with everything seen.
    fn wait_for(&mut self, line: &str, deadline: Duration, mut between: impl FnMut()) -> String {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(msg) = self.recv() {
                if msg.lines().any(|l| l == line) {
                    return msg;
                }
            }
            between();
        }
        panic!(
            "no {line} within {deadline:?}; the socket got: {:?}",
            self.seen
        );
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    ringsync::proc_cluster::free_ports(n).expect("free ports on 127.0.0.1")
}

fn topology(name: &str, ports: &[u16], peer_timeout: &str) -> String {
    let mut t = format!(
        "[cluster]\nname = \"{name}\"\ninterval = \"200ms\"\npeer_timeout = \"{peer_timeout}\"\n"
    );
    for (id, port) in ["a", "b"].iter().zip(ports) {
        t.push_str(&format!(
            "\n[[node]]\nid = \"{id}\"\naddr = \"127.0.0.1:{port}\"\n"
        ));
    }
    t
}

/// The status code of `GET path`, or `None` if nothing answers.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

fn start(dir: &Path, topo: &Path, notify: &Path) -> Node {
    let log = dir.join("node.log");
    let out = std::fs::File::create(&log).expect("create the log");
    let err = out.try_clone().expect("clone the log handle");
    let child = Command::new(BIN)
        .args(["node", "--topology"])
        .arg(topo)
        .args(["--id", "a", "--data-dir"])
        .arg(dir.join("data-a"))
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn ringsync node");
    Node {
        child: Some(child),
        log,
    }
}

#[test]
fn ready_watchdog_status_and_stopping_reach_systemd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(2);
    let topo = dir.path().join("topology.toml");
    std::fs::write(&topo, topology("notify-test", &ports, "100ms")).expect("write topology");
    let mut systemd = Systemd::bind(dir.path());
    let mut node = start(dir.path(), &topo, &systemd.path);

    // Until READY=1, /readyz must not have answered 200 yet.
    let mut probes = Vec::new();
    let ready = systemd.wait_for("READY=1", READY_DEADLINE, || {
        probes.push(get_status(ports[0], "/readyz"));
    });
    // The moment READY=1 arrives, the node serves: the first probe is 200.
    assert_eq!(
        get_status(ports[0], "/readyz"),
        Some(200),
        "READY=1 came before /readyz answered 200"
    );
    // Every probe before READY found nothing listening or "not ready",
    // except possibly the very last, made between the flag and the datagram.
    let early_200 = probes
        .iter()
        .rev()
        .skip(1)
        .filter(|p| **p == Some(200))
        .count();
    assert_eq!(
        early_200, 0,
        "/readyz was 200 long before READY=1: {probes:?}"
    );
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=mode ")),
        "READY=1 came without a status line: {ready:?}"
    );

    // Pings every WATCHDOG_USEC/2.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        assert!(
            start.elapsed() < PINGS_DEADLINE,
            "only {pings} WATCHDOG=1 within {PINGS_DEADLINE:?}: {:?}",
            systemd.seen
        );
        if let Some(msg) = systemd.recv() {
            pings += msg.lines().filter(|l| *l == "WATCHDOG=1").count();
        }
    }

    // Cycles run: a STATUS= line names a cycle.
    systemd.wait_for_prefix("STATUS=mode ", "cycle ", PINGS_DEADLINE);

    node.signal("TERM");
    systemd.wait_for("STOPPING=1", SIGNAL_DEADLINE, || {});
    let status = node.wait(SIGNAL_DEADLINE);
    assert!(status.success(), "the node exited with {status}");
}

#[test]
fn sighup_reloads_what_it_can_and_refuses_another_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(2);
    let topo = dir.path().join("topology.toml");
    std::fs::write(&topo, topology("reload-test", &ports, "100ms")).expect("write topology");
    let mut systemd = Systemd::bind(dir.path());
    let mut node = start(dir.path(), &topo, &systemd.path);
    systemd.wait_for("READY=1", READY_DEADLINE, || {});

    let reload = |systemd: &mut Systemd, text: &str| -> String {
        std::fs::write(&topo, text).expect("rewrite topology");
        node.signal("HUP");
        systemd.wait_for("RELOADING=1", SIGNAL_DEADLINE, || {});
        let done = systemd.wait_for("READY=1", SIGNAL_DEADLINE, || {});
        done.lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_default()
            .to_string()
    };

    let s = reload(&mut systemd, &topology("reload-test", &ports, "150ms"));
    assert_eq!(s, "reloaded: peer_timeout 100ms -> 150ms");
    let s = reload(&mut systemd, &topology("reload-test", &ports, "150ms"));
    assert_eq!(s, "reloaded, nothing changed");
    let s = reload(&mut systemd, "[cluster]\nname = \n");
    assert!(s.starts_with("reload failed, topology kept: "), "{s}");
    let s = reload(&mut systemd, &topology("another-ring", &ports, "150ms"));
    // A renamed cluster is another cluster: no reload makes a node change
    // clusters (a changed ring with the next epoch is applied: see
    // tests/ring_change_processes.rs).
    assert!(
        s.starts_with("reload refused: the cluster name changed"),
        "{s}"
    );

    // Still serving after all that, and the log says why each was refused.
    assert_eq!(get_status(ports[0], "/readyz"), Some(200));
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(
        log.contains("reload: applied peer_timeout 100ms -> 150ms"),
        "{log}"
    );
    assert!(log.contains("keep the name"), "{log}");
    assert!(log.contains("the topology file is invalid"), "{log}");

    node.signal("TERM");
    systemd.wait_for("STOPPING=1", SIGNAL_DEADLINE, || {});
    assert!(node.wait(SIGNAL_DEADLINE).success());
}

impl Systemd {
    /// Reads until an assignment starting with `prefix` contains `needle`.
    fn wait_for_prefix(&mut self, prefix: &str, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(msg) = self.recv() {
                if msg
                    .lines()
                    .any(|l| l.starts_with(prefix) && l.contains(needle))
                {
                    return msg;
                }
            }
        }
        panic!(
            "no {prefix}...{needle}... within {deadline:?}; the socket got: {:?}",
            self.seen
        );
    }
}
