//! Real `ringsync node` processes on 127.0.0.1: the schedules' bounds in
//! cycles, the manual sync, crash safety, the client API and clean stops.
//!
//! Each test builds its own cluster (ports, dirs and name of its own), so
//! they run in parallel. Bounds are counted in the cycle numbers the nodes
//! report, never in wall-clock time.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use ringsync::core::schedule::log2_ceil;
use ringsync::core::Schedule;
use ringsync::http::percent_encode;
use serde_json::Value;

use common::{quiet_interval, wait_for, wait_until, Cluster, BIN};

/// Cycle length of the tests that watch cycles run: long against a local
/// HTTP round trip (a few ms) and the timer jitter (interval/20 = 15 ms), so
/// a cycle's pushes land in that cycle; short, so a 5-node bound of 6 cycles
/// takes about 2 s.
const INTERVAL: &str = "300ms";

/// Long enough for any convergence by cycles seen here (tens of cycles of
/// 300 ms), short enough to fail fast when it never comes.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(20);

/// Writes one key at every node, follows each until every node serves it,
/// and checks the cycles that took against `bound`. A write's cycle is
/// exact (its version's); the cycle in which it reached the last node is
/// bracketed between two poll rounds from outside (see
/// `ringsync::proc_cluster::spread`): when the read that missed it and the
/// one that found it straddle a boundary, it could be in either cycle
/// ("4-5" below). The bound is checked against the lower end, so the slack
/// is that width, 0 or 1, and never more: a wider bracket fails as too
/// coarse to judge.
fn check_bound(n: usize, schedule: Schedule, bound: u64) {
    let c = Cluster::start(n, schedule, INTERVAL, "relay = false\n");
    // Writes made during the start-up catch-up would spread by push-pull,
    // faster than the schedule: measure the schedule itself.
    c.wait_steady(CONVERGE_DEADLINE);
    let spread = c
        .spread_one_write_each("bound/", CONVERGE_DEADLINE)
        .unwrap_or_else(|e| panic!("{schedule} N={n}: {e}"));
    assert!(
        spread.widest() <= 1,
        "{schedule} N={n}: the reads around an arrival were over a cycle apart, too slow to judge: {}",
        spread.describe()
    );
    for t in &spread.travels {
        let (at_least, _) = t.cycles();
        assert!(
            at_least <= bound,
            "{schedule} N={n}: {} written at n{} in cycle {} reached every node in cycle {}..={}, \
             at least {at_least} cycles > bound {bound}",
            t.key,
            t.writer,
            t.written,
            t.arrived.0,
            t.arrived.1
        );
    }
    // `spread_one_write_each` also waited until the data, not just the
    // keys, agree.
    println!("{schedule} N={n} bound {bound}: {}", spread.describe());
}

#[test]
fn successor_reaches_3_nodes_within_n_minus_1_cycles() {
    check_bound(3, Schedule::Successor, 3 - 1);
}

#[test]
fn successor_reaches_5_nodes_within_n_minus_1_cycles() {
    check_bound(5, Schedule::Successor, 5 - 1);
}

#[test]
fn doubling_reaches_5_nodes_within_log2_n_cycles() {
    check_bound(5, Schedule::Doubling, u64::from(log2_ceil(5)));
}

/// The most hop reports a manual sync of `schedule` may count: the
/// successor wave goes round the ring twice less two hops (the first N-1
/// gather everything at one node, the next N-1 spread it); the doubling
/// wave is ceil(log2 N) rounds in which every node makes one hop.
fn max_hops(schedule: Schedule, n: usize) -> u64 {
    let n = n as u64;
    match schedule {
        Schedule::Successor => 2 * n - 2,
        _ => n * u64::from(log2_ceil(n as u32)),
    }
}

/// Checks a finished sync report: converged, every node's root equal (and
/// equal to what each node now reports), hops within the wave's size.
fn check_report(c: &Cluster, schedule: Schedule, report: &Value) {
    let n = c.n();
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["converged"], true, "{report}");
    assert_eq!(report["reachable_agree"], true, "{report}");
    assert_eq!(report["schedule"], schedule.name(), "{report}");
    assert_eq!(report["mode"], schedule.name(), "{report}");
    let nodes = report["nodes"].as_array().expect("nodes in the report");
    assert_eq!(nodes.len(), n, "{report}");
    assert_eq!(report["unreachable"].as_array().map(Vec::len), Some(0));
    let roots: BTreeSet<&str> = nodes.iter().filter_map(|d| d["root"].as_str()).collect();
    assert_eq!(roots.len(), 1, "roots differ after the sync: {report}");
    let root = roots.into_iter().next().expect("one root");
    for i in 0..n {
        assert_eq!(c.root(i), root, "node {i} disagrees with the report");
    }
    let hops = report["hops"].as_u64().expect("hops");
    assert!(
        hops <= max_hops(schedule, n),
        "{hops} hops > {} for {schedule} N={n}: {report}",
        max_hops(schedule, n)
    );
    assert!(report["entries"].as_u64() > Some(0), "{report}");
}

/// Makes every node hold different data: two keys written at each node, a
/// key written at n1 and deleted later at the last node.
fn diverge(c: &Cluster, round: &str) -> Vec<String> {
    let n = c.n();
    let mut keys = Vec::new();
    for i in 0..n {
        for k in ["a", "b"] {
            let key = format!("{round}/n{i}/{k}");
            c.put(i, &key, &format!("{round} {k} at n{i}"));
            keys.push(key);
        }
    }
    let written = c.put(1, &format!("{round}/gone"), "soon deleted");
    // Later in wall-clock time at another node, so the delete's version is
    // the newer one: in a later millisecond, since within one the writers'
    // origins (hashes of their ids) would decide.
    let ms: u64 = written
        .split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a version's milliseconds in {written:?}"));
    wait_until(
        Duration::from_secs(5),
        "the clock past the write's millisecond",
        || common::raw::now_ms() > ms,
    );
    c.del(n - 1, &format!("{round}/gone"));
    let roots: BTreeSet<String> = (0..n).map(|i| c.root(i)).collect();
    assert_eq!(roots.len(), n, "nodes should all differ before the sync");
    keys
}

fn check_synced(c: &Cluster, round: &str, keys: &[String]) {
    for i in 0..c.n() {
        for key in keys {
            let owner = key.split('/').nth(1).expect("owner in key");
            let want = format!("{round} {} at {owner}", key.rsplit('/').next().unwrap());
            assert_eq!(
                c.get(i, key).as_deref(),
                Some(want.as_str()),
                "{key} at n{i}"
            );
        }
        assert_eq!(
            c.get(i, &format!("{round}/gone")),
            None,
            "deleted key at n{i}"
        );
    }
}

fn manual_sync_converges(schedule: Schedule) {
    let n = 4;
    // No cycle may run, so that only the manual sync can converge them.
    let c = Cluster::start(n, schedule, &quiet_interval(), "relay = false\n");

    let keys = diverge(&c, "blocking");
    let report = c.sync(2);
    check_report(&c, schedule, &report);
    check_synced(&c, "blocking", &keys);

    let keys = diverge(&c, "async");
    let v = c.call_json(0, "POST", "/v1/sync?wait=false", 202);
    let id = v["id"].as_str().expect("an id in the 202").to_string();
    assert!(
        v["state"] == "running" || v["state"] == "done",
        "202 body: {v}"
    );
    let path = format!("/v1/sync/{}", percent_encode(&id));
    let report = wait_for(
        Duration::from_secs(30),
        "the background sync is done",
        || {
            // The id must be known at once, not only after the sync ends.
            let r = c.call_json(0, "GET", &path, 200);
            if r["state"] == "done" {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        },
    );
    assert_eq!(report["id"], id.as_str());
    check_report(&c, schedule, &report);
    check_synced(&c, "async", &keys);

    for i in 0..n {
        assert_eq!(
            c.status(i)["cycles_run"],
            0,
            "node {i} ran a timer cycle; the test meant to see the sync alone"
        );
    }
}

#[test]
fn manual_sync_converges_a_diverged_cluster_at_once_successor() {
    manual_sync_converges(Schedule::Successor);
}

#[test]
fn manual_sync_converges_a_diverged_cluster_at_once_doubling() {
    manual_sync_converges(Schedule::Doubling);
}

#[test]
fn a_sync_with_nodes_down_does_not_claim_convergence_and_exits_non_zero() {
    let mut c = Cluster::start(3, Schedule::Successor, &quiet_interval(), "relay = false\n");
    c.put(0, "k", "v");
    c.kill(1);
    c.kill(2);
    let out = Command::new(BIN)
        .args(["sync", "--json", "--node", &c.url(0)])
        .env_remove("RINGSYNC_TOKEN_FILE")
        .env("RINGSYNC_SECRET_FILE", c.dir().join("secret"))
        .stdin(Stdio::null())
        .output()
        .expect("run ringsync sync");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "exit 0 with 2 of 3 nodes down:\n{stdout}{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("the report as JSON");
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["converged"], false, "{report}");
    assert_eq!(
        report["unreachable"],
        serde_json::json!([c.id(1), c.id(2)]),
        "{report}"
    );
    assert_eq!(report["mode"], "fallback", "{report}");
    assert!(
        report["schedule"]
            .as_str()
            .is_some_and(|s| s.contains("fallback")),
        "{report}"
    );
    for i in [1, 2] {
        assert!(
            stderr.contains(c.id(i)),
            "stderr names no {}: {stderr}",
            c.id(i)
        );
    }
}

#[test]
fn kill_9_keeps_acknowledged_writes_and_a_restarted_node_catches_up() {
    let mut c = Cluster::start(3, Schedule::Successor, INTERVAL, "");

    const DURABLE: usize = 200;
    for k in 0..DURABLE {
        c.put(0, &format!("durable/{k:03}"), &format!("value {k}"));
    }
    c.kill(0);
    c.restart(0);
    let (page, _) = c.list(0, "durable/", None, 1000);
    let want: Vec<(String, String)> = (0..DURABLE)
        .map(|k| (format!("durable/{k:03}"), format!("value {k}")))
        .collect();
    assert_eq!(page, want, "acknowledged writes lost across kill -9");

    const MISSED: usize = 50;
    c.kill(2);
    for k in 0..MISSED {
        c.put(
            1,
            &format!("missed/{k:02}"),
            &format!("while n2 was down {k}"),
        );
    }
    c.restart(2);
    wait_for(
        CONVERGE_DEADLINE,
        "n2 has every key written while it was down",
        || {
            let have = c.keys(2, "missed/").len();
            if have == MISSED {
                Ok(())
            } else {
                Err(format!("{have} of {MISSED}"))
            }
        },
    );
    assert_eq!(
        c.get(2, "missed/07").as_deref(),
        Some("while n2 was down 7")
    );
    // The durable/ keys lost their relay queue with n0's process, so they
    // reach the others by digest repair; everything must end up everywhere.
    wait_for(CONVERGE_DEADLINE, "all digest roots are equal", || {
        let roots: Vec<String> = (0..3).map(|i| c.root(i)).collect();
        if roots.iter().all(|r| *r == roots[0]) {
            Ok(())
        } else {
            Err(format!("roots {roots:?}"))
        }
    });
    for i in 0..3 {
        assert_eq!(c.keys(i, "durable/").len(), DURABLE, "durable/ at n{i}");
        assert_eq!(c.keys(i, "missed/").len(), MISSED, "missed/ at n{i}");
    }
}

#[test]
fn client_api_basics() {
    const LIMIT: usize = 1024;
    let c = Cluster::start(
        2,
        Schedule::Successor,
        &quiet_interval(),
        &format!("max_value_size = {LIMIT}"),
    );

    let (st, body) = c.call(0, "GET", "/livez", None);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));

    // A missing key: 404 with a JSON reason.
    let v = c.call_json(0, "GET", "/v1/kv/no-such-key", 404);
    assert_eq!(v["reason"], "not_found", "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");

    // A value one byte over the limit is refused, naming the limit, and
    // nothing is stored; one of exactly the limit is taken.
    let (st, body) = c.call(0, "PUT", "/v1/kv/big", Some(vec![b'x'; LIMIT + 1]));
    let text = String::from_utf8_lossy(&body);
    assert!(st == 413 || st == 400, "HTTP {st}: {text}");
    let v: Value = serde_json::from_slice(&body).expect("a JSON refusal");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&LIMIT.to_string()),
        "the message names no limit: {v}"
    );
    assert_eq!(c.get(0, "big"), None);
    assert_eq!(c.status(0)["keys"], 0, "the refused write stored something");
    let (st, body) = c.call(0, "PUT", "/v1/kv/big", Some(vec![b'x'; LIMIT]));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(c.get(0, "big").map(|v| v.len()), Some(LIMIT));

    // Awkward keys round-trip through the URL, in GET and in the list.
    let odd = [
        "odd/a/b/c",
        "odd/with space",
        "odd/ключ/値 ✓",
        "odd/100%",
        "odd/q?x=1&y=2#frag",
        "odd/+plus",
    ];
    for (k, key) in odd.iter().enumerate() {
        c.put(1, key, &format!("odd {k}"));
    }
    for (k, key) in odd.iter().enumerate() {
        assert_eq!(c.get(1, key), Some(format!("odd {k}")), "{key:?}");
    }
    let listed = c.keys(1, "odd/");
    let want: BTreeSet<String> = odd.iter().map(|k| k.to_string()).collect();
    assert_eq!(listed, want);
    c.del(1, "odd/with space");
    assert_eq!(c.get(1, "odd/with space"), None);

    // Paging: prefix, limit and after; deleted keys are skipped.
    for k in 0..10 {
        c.put(0, &format!("page/{k:02}"), &format!("p{k}"));
    }
    c.put(0, "pagex", "outside the prefix");
    c.del(0, "page/03");
    c.del(0, "page/07");
    let (p1, next) = c.list(0, "page/", None, 3);
    let keys_of = |p: &[(String, String)]| p.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys_of(&p1), ["page/00", "page/01", "page/02"]);
    assert_eq!(p1[1].1, "p1");
    assert_eq!(next.as_deref(), Some("page/02"));
    let (p2, next) = c.list(0, "page/", next.as_deref(), 3);
    assert_eq!(keys_of(&p2), ["page/04", "page/05", "page/06"]);
    let (p3, next) = c.list(0, "page/", next.as_deref(), 3);
    assert_eq!(keys_of(&p3), ["page/08", "page/09"]);
    assert_eq!(next, None, "a short page is the last");
    let all: Vec<String> = c.keys(0, "page/").into_iter().collect();
    assert_eq!(
        all,
        ["00", "01", "02", "04", "05", "06", "08", "09"].map(|k| format!("page/{k}"))
    );
}

/// `GET ?wait=`: a read at one node waits for a write made at another and
/// is answered when it arrives (the cycles here are an hour long, so only
/// the relay brings it); a wait the node cannot take is refused, naming
/// what is wrong.
#[test]
fn a_read_waits_for_a_write_made_at_another_node() {
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "relay = true");
    std::thread::scope(|s| {
        let read = s.spawn(|| {
            let t = std::time::Instant::now();
            let (st, body) = c.call(1, "GET", "/v1/kv/waited?wait=8s", None);
            (st, body, t.elapsed())
        });
        // The read is waiting at node 1 before the write.
        wait_until(Duration::from_secs(10), "the read waits", || {
            String::from_utf8_lossy(&c.call(1, "GET", "/metrics", None).1)
                .lines()
                .any(|l| l == "ringsync_waiting_reads 1")
        });
        c.put(0, "waited", "it came");
        let (st, body, took) = read.join().expect("the reader");
        assert_eq!(
            (st, String::from_utf8_lossy(&body).as_ref()),
            (200, "it came")
        );
        assert!(
            took < Duration::from_secs(8),
            "answered by the wait's end, {took:?}, not the write"
        );
    });
    // A version the key holds already: the wait runs out, and the answer is
    // what is there.
    let (st, _) = c.call(1, "GET", "/v1/kv/waited?wait=10ms", None);
    assert_eq!(st, 200);
    for (query, names) in [
        ("wait=soon", "soon"),
        ("wait=1h", "5m"),
        ("newer_than=1.0@0", "without wait"),
        ("wait=1s&newer_than=yesterday", "yesterday"),
    ] {
        let v = c.call_json(1, "GET", &format!("/v1/kv/waited?{query}"), 400);
        assert_eq!(v["reason"], "bad_query", "{query}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(names),
            "{query}: the message does not name {names:?}: {v}"
        );
    }
}

#[test]
fn sigterm_exits_0_and_keeps_the_data() {
    let mut c = Cluster::start(2, Schedule::Successor, INTERVAL, "");
    c.put(1, "kept", "across a clean stop");
    let st = c.stop(1);
    assert!(st.success(), "SIGTERM gave {st}; log:\n{}", c.log_tail(1));
    assert_eq!(st.code(), Some(0));
    assert!(c.is_running(0), "the other node stopped too");
    c.restart(1);
    assert_eq!(c.get(1, "kept").as_deref(), Some("across a clean stop"));
}
