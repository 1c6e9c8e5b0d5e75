//! The cluster page in a real browser: five node processes, the page of one
//! of them opened in headless Chromium, and what its script drew read back
//! from the rendered DOM. Whole, every node shows in ring mode with
//! agreeing roots; with one SIGKILLed, the page shows it failed and the
//! others in fallback within the failure-detection bound; restarted, the
//! ring again. A screenshot of each stage is saved in the test's folder.
//!
//! Bounds are counted in the cycles the nodes report (the page shows each
//! node's `mode_since_cycle`), as in tests/failover.rs; wall-clock
//! deadlines bound the waits, with room for the page's own delay.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ringsync::core::Schedule;

use common::browser::{attr, tags, Browser, CHROMIUM};
use common::tools::{ensure, skip};
use common::{wait_for, Cluster, NO_SECRETS};

const N: usize = 5;

/// The node killed: not the one whose page is open, and in the middle of
/// the ring.
const VICTIM: usize = 2;

/// The node whose page is read.
const VIEWER: usize = 0;

/// As in tests/failover.rs: long against a local round trip, short enough
/// for tens of cycles in seconds.
const INTERVAL: &str = "300ms";
const PEER_TIMEOUT: &str = "200ms";

/// `failure_threshold`, left at its default.
const THRESHOLD: u64 = 3;

/// Cycles the nodes' reports may lag what they report (tests/failover.rs).
const CYCLE_SLACK: u64 = 2;

/// Cycles from the kill until every live node runs in fallback: the
/// predecessor's THRESHOLD-th miss fails the victim, and the news walks
/// back along the ring one node a cycle (tests/failover.rs has the why).
fn fallback_bound() -> u64 {
    THRESHOLD + (N as u64 - 2) + CYCLE_SLACK
}

/// How late the page may show what the nodes did: the view is cached for
/// a second and read every second, and one Chromium start on a loaded
/// 2-core machine takes a few seconds.
const PAGE_LAG: Duration = Duration::from_secs(10);

/// Stops a wait that would otherwise never end.
const DEADLINE: Duration = Duration::from_secs(60);

/// One node as the page drew it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drawn {
    state: String,
    agrees: bool,
    /// From the table: the cycle in which its mode last changed.
    mode_since: Option<u64>,
}

/// What the page shows: each node by id, and whether it calls its data
/// stale.
#[derive(Debug)]
struct Shown {
    nodes: BTreeMap<String, Drawn>,
    stale: bool,
    dom: String,
}

fn shown(browser: &Browser, url: &str) -> Result<Shown, String> {
    let dom = browser.dom(url)?;
    let since: BTreeMap<String, Option<u64>> = tags(&dom, "<tr data-node=")
        .into_iter()
        .filter_map(|t| {
            let since = attr(t, "data-mode-since").and_then(|s| s.parse().ok());
            Some((attr(t, "data-node")?, since))
        })
        .collect();
    let nodes = tags(&dom, "<g class=\"node\"")
        .into_iter()
        .filter_map(|t| {
            let id = attr(t, "data-node")?;
            let drawn = Drawn {
                state: attr(t, "data-state")?,
                agrees: attr(t, "data-agrees")? == "true",
                mode_since: since.get(&id).copied().flatten(),
            };
            Some((id, drawn))
        })
        .collect();
    let stale = tags(&dom, "<p id=\"fresh\"")
        .first()
        .and_then(|t| attr(t, "data-stale"))
        .is_none_or(|s| s != "false");
    Ok(Shown { nodes, stale, dom })
}

/// Waits until the page shows what `want` accepts; returns it.
fn wait_page(
    browser: &Browser,
    url: &str,
    deadline: Duration,
    what: &str,
    want: impl Fn(&Shown) -> bool,
) -> Shown {
    wait_for(deadline, what, || {
        let s = shown(browser, url)?;
        if want(&s) {
            Ok(s)
        } else {
            Err(format!("the page shows {:?} (stale: {})", s.nodes, s.stale))
        }
    })
}

fn whole_ring(c: &Cluster, s: &Shown) -> bool {
    !s.stale
        && s.nodes.len() == N
        && (0..N).all(|i| {
            s.nodes
                .get(c.id(i))
                .is_some_and(|d| d.state == "ring" && d.agrees)
        })
}

fn browser_or_skip(what: &str) -> bool {
    if let Err(why) = ensure(&CHROMIUM) {
        skip(&format!("{what}: {why}"));
        return false;
    }
    true
}

/// Saves a screenshot of `url` in the test's folder, and a copy under
/// the target's folder for tests, which outlives the cluster's.
fn screenshot(browser: &Browser, url: &str, dir: &Path, name: &str) {
    let to = dir.join(name);
    browser
        .screenshot(url, &to)
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster_page");
    let copied = std::fs::create_dir_all(&kept).and_then(|()| std::fs::copy(&to, kept.join(name)));
    match copied {
        Ok(_) => println!(
            "screenshot: {} (kept as {})",
            to.display(),
            kept.join(name).display()
        ),
        Err(e) => println!("screenshot: {} (not kept: {e})", to.display()),
    }
}

#[test]
fn the_page_shows_the_ring_a_killed_node_failed_and_the_ring_again() {
    if !browser_or_skip("the cluster page test") {
        return;
    }
    let mut c = Cluster::start(
        N,
        Schedule::Successor,
        INTERVAL,
        &format!("peer_timeout = \"{PEER_TIMEOUT}\"\n"),
    );
    let browser = Browser::new(c.dir());
    let url = format!("{}/", c.url(VIEWER));
    c.wait_steady(DEADLINE);
    for i in 0..N {
        c.put(i, &format!("k{i}"), "before");
    }

    let s = wait_page(
        &browser,
        &url,
        DEADLINE,
        "the page shows every node in the ring with agreeing roots",
        |s| whole_ring(&c, s),
    );
    // A signed cluster: no button, the command to run instead.
    assert!(
        s.dom.contains("ringsync sync --node"),
        "no CLI hint: {}",
        s.dom
    );
    assert!(
        tags(&s.dom, "<button id=\"sync-now\"")
            .first()
            .is_some_and(|t| t.contains(" hidden")),
        "a sync button on a signed cluster: {}",
        s.dom
    );
    screenshot(&browser, &url, c.dir(), "ring.png");

    let kill_cycle = c.cycle(VIEWER);
    let killed = Instant::now();
    c.kill(VICTIM);
    for i in (0..N).filter(|&i| i != VICTIM) {
        c.put(i, &format!("k{i}"), "during");
    }
    let detection = Duration::from_millis(fallback_bound() * c.interval_ms());
    let s = wait_page(
        &browser,
        &url,
        DEADLINE,
        "the page shows the killed node failed and the others in fallback",
        |s| {
            s.nodes.len() == N
                && (0..N).all(|i| {
                    let want = if i == VICTIM { "failed" } else { "fallback" };
                    s.nodes.get(c.id(i)).is_some_and(|d| d.state == want)
                })
        },
    );
    let took = killed.elapsed();
    println!(
        "the page showed the failure {took:?} after the kill (detection bound {} cycles = {detection:?}, page lag allowed {PAGE_LAG:?})",
        fallback_bound()
    );
    assert!(
        took <= detection + PAGE_LAG,
        "the page took {took:?} to show the failure"
    );
    for i in (0..N).filter(|&i| i != VICTIM) {
        let d = &s.nodes[c.id(i)];
        let since = d
            .mode_since
            .unwrap_or_else(|| panic!("no cycle for {}: {d:?}", c.id(i)));
        assert!(
            since >= kill_cycle && since - kill_cycle <= fallback_bound(),
            "{} fell back in cycle {since}, the kill was in cycle {kill_cycle}: bound {}",
            c.id(i),
            fallback_bound()
        );
    }
    screenshot(&browser, &url, c.dir(), "failed.png");

    c.restart(VICTIM);
    wait_page(
        &browser,
        &url,
        DEADLINE,
        "the page shows the ring again, every root agreeing",
        |s| whole_ring(&c, s),
    );
    screenshot(&browser, &url, c.dir(), "ring-again.png");
}

/// Where nothing is signed, the page offers the sync itself, and shows the
/// report of the last sync run from its node; `ringsync status --cluster`
/// prints the same view.
#[test]
fn an_open_cluster_page_offers_sync_and_shows_the_last_report() {
    if !browser_or_skip("the open cluster page test") {
        return;
    }
    let c = Cluster::start(3, Schedule::Doubling, INTERVAL, NO_SECRETS);
    let browser = Browser::new(c.dir());
    let url = format!("{}/", c.url(VIEWER));
    c.wait_steady(DEADLINE);
    let report = c.sync(VIEWER);
    assert_eq!(report["converged"], true, "{report}");
    let id = report["id"].as_str().expect("a sync id").to_string();
    let s = wait_page(
        &browser,
        &url,
        DEADLINE,
        "the page shows its last sync",
        |s| s.dom.contains(&id),
    );
    let button = tags(&s.dom, "<button id=\"sync-now\"");
    assert!(
        button.first().is_some_and(|t| !t.contains(" hidden")),
        "no sync button on an open cluster: {}",
        s.dom
    );
    assert!(s.dom.contains("data-converged=\"true\""), "{}", s.dom);

    // The same view in the terminal.
    let out = std::process::Command::new(common::BIN)
        .args(["status", "--cluster", "--node", &c.url(VIEWER)])
        .output()
        .expect("run ringsync status --cluster");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("3 of 3 reachable, their roots agree"),
        "{text}"
    );
    for i in 0..3 {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", c.id(i))));
        assert!(row.is_some_and(|r| r.contains(" ring ")), "{text}");
    }
    assert!(text.contains(&format!("last sync {id} (done)")), "{text}");
}

/// Serves the page's own files and canned answers to `/v1/cluster` (the
/// `k`-th from `answer(k)`) on 127.0.0.1, until dropped.
struct CannedNode {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CannedNode {
    fn start(answer: impl Fn(usize) -> (u16, String) + Send + 'static) -> CannedNode {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = std::sync::Arc::clone(&stop);
        let page = |f: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/http/page")
                .join(f);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let files = [
            ("/", "text/html", page("index.html")),
            ("/ui/page.css", "text/css", page("page.css")),
            ("/ui/page.js", "text/javascript", page("page.js")),
        ];
        let thread = std::thread::spawn(move || {
            let mut reads = 0;
            while !halt.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = if path == "/v1/cluster" {
                    let (status, body) = answer(reads);
                    reads += 1;
                    (status, "application/json", body)
                } else {
                    match files.iter().find(|(p, _, _)| *p == path) {
                        Some((_, kind, body)) => (200, *kind, body.clone()),
                        None => (404, "text/plain", "not here".into()),
                    }
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        CannedNode {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CannedNode {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A view with a node in each of the five states, judged by the service's
/// own rules, `age_ms` old.
fn five_states(age_ms: u64) -> String {
    use ringsync::service::cluster::{judge, ClusterView, MemberPeer, MemberStatus, Probe, Ring};
    let members: Vec<(String, String)> = (0..5)
        .map(|i| (format!("n{i}"), format!("127.0.0.1:{}", 7300 + i)))
        .collect();
    let status = |i: usize, mode: &str, peers: &[(usize, &str)]| MemberStatus {
        id: format!("n{i}"),
        mode: mode.into(),
        digest_root: "00000000000000aa".into(),
        epoch: (i == 1).then(|| serde_json::json!(7)),
        peers: peers
            .iter()
            .map(|&(p, s)| MemberPeer {
                id: format!("n{p}"),
                state: s.into(),
            })
            .collect(),
        ..MemberStatus::default()
    };
    let ok = |i: usize, s: MemberStatus| Probe {
        pos: i as u32,
        result: Ok(s),
        sent_ms: 0,
        received_ms: 2,
    };
    let down = |i: usize| Probe {
        pos: i as u32,
        result: Err("connection refused".into()),
        sent_ms: 0,
        received_ms: 1,
    };
    let probes = vec![
        ok(0, status(0, "fallback", &[(2, "suspect"), (3, "failed")])),
        ok(1, status(1, "ring", &[])),
        ok(2, status(2, "ring", &[])),
        down(3),
        down(4),
    ];
    let ring = Ring {
        members: &members,
        schedule: Schedule::Successor,
        interval_ms: 1000,
    };
    let view = ClusterView {
        node: "n0".into(),
        cluster: "canned".into(),
        schedule: "successor".into(),
        interval_ms: 1000,
        taken_ms: 0,
        took_ms: 2,
        age_ms,
        reachable: 3,
        roots_agree: true,
        nodes: judge(ring, probes),
        last_sync: None,
        sync_from_browser: false,
    };
    serde_json::to_string(&view).expect("a view serializes")
}

/// Every state is drawn as its own word; the page calls its data stale
/// when the view was old when served, and when a read fails after a good
/// one (keeping what it showed).
#[test]
fn the_page_draws_every_state_and_says_when_its_data_is_stale() {
    if !browser_or_skip("the stale page test") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let browser = Browser::new(dir.path());
    let want: BTreeMap<String, String> = [
        ("n0", "fallback"),
        ("n1", "ring"),
        ("n2", "suspect"),
        ("n3", "failed"),
        ("n4", "unreachable"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let fresh = CannedNode::start(|_| (200, five_states(20)));
    let s = shown(&browser, &format!("http://{}/", fresh.addr)).expect("the page");
    let states: BTreeMap<String, String> = s
        .nodes
        .iter()
        .map(|(k, d)| (k.clone(), d.state.clone()))
        .collect();
    assert_eq!(states, want, "{}", s.dom);
    assert!(!s.stale, "fresh data called stale: {}", s.dom);
    assert!(
        s.dom.contains(">7</td>"),
        "the epoch is not shown: {}",
        s.dom
    );
    drop(fresh);

    let old = CannedNode::start(|_| (200, five_states(10_000)));
    let s = shown(&browser, &format!("http://{}/", old.addr)).expect("the page");
    assert!(s.stale, "a view 10 s old not called stale: {}", s.dom);
    drop(old);

    let gone = CannedNode::start(|k| {
        if k == 0 {
            (200, five_states(20))
        } else {
            (503, "{\"error\": \"gone\"}".into())
        }
    });
    let s = shown(&browser, &format!("http://{}/", gone.addr)).expect("the page");
    assert!(s.stale, "a failed read not called stale: {}", s.dom);
    assert!(
        s.dom.contains("HTTP 503"),
        "the failure is not named: {}",
        s.dom
    );
    assert_eq!(s.nodes.len(), 5, "the last view is not kept: {}", s.dom);
}
