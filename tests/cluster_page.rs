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

fn screenshot(browser: &Browser, url: &str, dir: &Path, name: &str) {
    let to = dir.join(name);
    browser
        .screenshot(url, &to)
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    println!("screenshot: {}", to.display());
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
/// report of the last sync run from its node.
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
}
