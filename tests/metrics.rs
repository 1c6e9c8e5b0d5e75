//! `GET /metrics`: rendered from real cores that exchanged real messages,
//! checked for content and by `promtool check metrics`, and served by the
//! tide app in-process; and the listener's count of peer traffic on the
//! wire, on real processes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use ringsync::core::{Config, Node, Schedule};
use ringsync::http::metrics::{render, CONTENT_TYPE};
use ringsync::service::NodeHandle;
use ringsync::store::MemoryStore;
use ringsync::topology::Topology;

use common::tools::{self, IfInstallFails, Tool};
use common::{quiet_interval, wait_until, Cluster};
use std::time::Duration;

const INTERVAL_MS: u64 = 1000;
/// Start of the simulated time: any cycle boundary far from zero.
const T0: u64 = 1_700_000_000_000;

fn ids() -> Vec<String> {
    ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
}

fn node(me: u32) -> Node<MemoryStore> {
    let cfg = Config::new(7, 3, me, Schedule::Successor, INTERVAL_MS);
    Node::open(cfg, MemoryStore::new(), u64::from(me) + 1).expect("open a memory node")
}

/// Delivers every request between `a` (position 0) and `b` (position 1)
/// until none is left; requests to `c` (position 2, which is down) fail.
fn deliver(nodes: &mut [Node<MemoryStore>; 2], now: u64) {
    for _ in 0..100 {
        let mut moved = false;
        for from in 0..2 {
            while let Some(t) = nodes[from].poll_transmit() {
                moved = true;
                if t.to == 2 {
                    nodes[from].handle_failure(t.id);
                    continue;
                }
                let reply = nodes[t.to as usize].handle_request(now, &t.payload);
                nodes[from].handle_reply(now, t.id, &reply);
            }
            while nodes[from].poll_event().is_some() {}
        }
        if !moved {
            return;
        }
    }
    panic!("requests kept coming after 100 rounds");
}

/// a and b run cycles; c never answers, so b's pushes to it fail and b
/// falls back to random push-pull after the failure threshold.
fn exercised() -> ([Node<MemoryStore>; 2], u64) {
    let mut nodes = [node(0), node(1)];
    for i in 0..5 {
        nodes[0]
            .write(T0, &format!("key{i}"), Some(b"value".to_vec()))
            .expect("write");
    }
    nodes[0].write(T0, "key0", None).expect("delete");
    let mut now = T0;
    for _ in 0..6 {
        now += INTERVAL_MS;
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        deliver(&mut nodes, now);
    }
    (nodes, now)
}

/// `name{labels} value` lines as (name, labels, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{l}: {e}"));
            (name.to_string(), labels.to_string(), value)
        })
        .collect()
}

fn value(text: &str, name: &str, labels: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| v)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in:\n{text}"))
}

/// `promtool`, from Debian's `prometheus` package. Where it cannot be had
/// the check is skipped; as root with apt-get it must install.
const PROMTOOL: Tool = Tool {
    command: "promtool",
    probe_arg: "--version",
    package: "prometheus",
    if_install_fails: IfInstallFails::Fail,
};

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(text: &str) {
    if let Err(why) = tools::ensure(&PROMTOOL) {
        tools::skip(&format!("the promtool check: {why}"));
        return;
    }
    let mut child = Command::new(PROMTOOL.command)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics complained ({}):\n{said}\n--- the metrics:\n{text}",
        out.status
    );
}

/// Every sample belongs to a family declared by exactly one HELP and one
/// TYPE line, before its samples; counters end in `_total`.
fn check_families(text: &str) {
    let mut help = BTreeSet::new();
    let mut kind: BTreeMap<String, String> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').expect("HELP has text");
            assert!(!h.trim().is_empty(), "empty HELP for {name}");
            assert!(help.insert(name.to_string()), "two HELP lines for {name}");
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, k) = rest.split_once(' ').expect("TYPE has a type");
            assert!(
                kind.insert(name.to_string(), k.to_string()).is_none(),
                "two TYPE lines for {name}"
            );
        } else if !l.is_empty() {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            assert!(name.starts_with("ringsync_"), "{l}");
            assert!(help.contains(name), "{name} has no HELP before it");
            let k = kind
                .get(name)
                .unwrap_or_else(|| panic!("{name} has no TYPE"));
            assert_eq!(k == "counter", name.ends_with("_total"), "{name} is a {k}");
        }
    }
}

#[test]
fn metrics_count_what_the_cores_did_and_pass_promtool() {
    let (nodes, now) = exercised();
    let a = render(&nodes[0], &ids(), now);
    let b = render(&nodes[1], &ids(), now);
    for text in [&a, &b] {
        check_families(text);
        promtool_check(text);
    }

    for family in [
        "ringsync_build_info",
        "ringsync_cycles_total",
        "ringsync_pushes_total",
        "ringsync_bytes_sent_total",
        "ringsync_bytes_received_total",
        "ringsync_entries_sent_total",
        "ringsync_entries_received_total",
        "ringsync_entries_applied_total",
        "ringsync_mode",
        "ringsync_peer_cycles_since_last_push_ok",
        "ringsync_keys",
        "ringsync_tombstones",
        "ringsync_refused_requests_total",
        "ringsync_held_back_entries_total",
        "ringsync_peer_clock_ahead_seconds",
        "ringsync_peer_staleness_seconds",
        "ringsync_repairs_total",
        "ringsync_wipes_total",
        "ringsync_tombstones_collected_total",
        "ringsync_gc_proofs_total",
        "ringsync_gc_claims_refused_total",
        "ringsync_refutations_total",
        "ringsync_members_failed_total",
        "ringsync_probes_started_total",
        "ringsync_probes_unanswered_total",
        "ringsync_exchanges_skipped_busy_total",
        "ringsync_stream_batches_lost_total",
        "ringsync_stream_key_order_batches_total",
    ] {
        assert!(
            a.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{a}"
        );
    }
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&a, "ringsync_build_info", &version), 1.0);

    let st = nodes[1].stats();
    assert_eq!(value(&b, "ringsync_cycles_total", ""), st.cycles as f64);
    assert_eq!(value(&a, "ringsync_cycles_total", ""), 6.0);
    for (family, count) in [
        ("ringsync_refutations_total", st.refutations),
        ("ringsync_members_failed_total", st.members_failed),
        ("ringsync_probes_started_total", st.probes_started),
        ("ringsync_probes_unanswered_total", st.probes_unanswered),
    ] {
        assert_eq!(value(&b, family, ""), count as f64, "{family}");
    }
    // a wrote 5 keys and deleted one: b holds the same after the pushes.
    assert_eq!(value(&a, "ringsync_keys", ""), 4.0);
    assert_eq!(value(&a, "ringsync_tombstones", ""), 1.0);
    assert_eq!(value(&b, "ringsync_keys", ""), 4.0);
    assert_eq!(value(&b, "ringsync_tombstones", ""), 1.0);
    assert!(value(&a, "ringsync_entries_sent_total", "") >= 5.0, "{a}");
    assert_eq!(
        value(&b, "ringsync_entries_applied_total", ""),
        st.entries_applied as f64
    );
    assert!(st.entries_applied >= 5, "{st:?}");
    assert!(value(&b, "ringsync_entries_received_total", "") >= 5.0);
    assert!(value(&a, "ringsync_bytes_sent_total", "") > 0.0);
    assert!(value(&b, "ringsync_bytes_received_total", "") > 0.0);
    assert!(value(&a, "ringsync_pushes_total", "result=\"ok\"") >= 1.0);
    // b pushes to c, which never answers: b gives up on it and falls back.
    assert!(value(&b, "ringsync_pushes_total", "result=\"failed\"") >= 3.0);
    assert_eq!(value(&b, "ringsync_mode", "mode=\"fallback\""), 1.0, "{b}");
    assert_eq!(value(&b, "ringsync_mode", "mode=\"ring\""), 0.0);
    assert_eq!(
        value(&b, "ringsync_peer_state", "peer=\"c\",state=\"failed\""),
        1.0
    );
    // a's last push to b was answered this cycle; c was never heard from.
    assert_eq!(
        value(&a, "ringsync_peer_cycles_since_last_push_ok", "peer=\"b\""),
        0.0
    );
    assert_eq!(
        value(&b, "ringsync_peer_cycles_since_last_push_ok", "peer=\"c\""),
        st.cycles as f64
    );
    // Each node lists its two peers and never itself.
    let peers: Vec<String> = samples(&a)
        .into_iter()
        .filter(|(n, _, _)| n == "ringsync_peer_cycles_since_last_push_ok")
        .map(|(_, l, _)| l)
        .collect();
    assert_eq!(peers, ["peer=\"b\"", "peer=\"c\""]);
    // Every refusal reason has a series from the start.
    assert_eq!(
        value(
            &a,
            "ringsync_refused_requests_total",
            "reason=\"future_version\""
        ),
        0.0
    );
    assert_eq!(value(&a, "ringsync_held_back_entries_total", ""), 0.0);
}

#[test]
fn future_entries_are_held_back_counted_and_their_senders_skew_shown() {
    let mut a = node(0);
    let mut b = node(1);
    // a's clock is an hour ahead of b's: b holds a's entry back as from the
    // future, and takes the rest of the batch.
    let later = T0 + 3_600_000;
    a.write(later, "k", Some(b"v".to_vec())).expect("write");
    a.handle_timeout(later + INTERVAL_MS);
    let mut delivered = false;
    while let Some(t) = a.poll_transmit() {
        if t.to == 1 {
            let reply = b.handle_request(T0, &t.payload);
            a.handle_reply(T0, t.id, &reply);
            delivered = true;
        } else {
            a.handle_failure(t.id);
        }
    }
    assert!(delivered, "a sent nothing to b");
    assert_eq!(b.get("k").expect("get"), None, "a future entry was applied");
    let text = render(&b, &ids(), T0);
    assert!(
        value(&text, "ringsync_held_back_entries_total", "") >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "ringsync_peer_clock_ahead_seconds", "peer=\"a\""),
        3600.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "ringsync_peer_clock_ahead_seconds", "peer=\"c\""),
        0.0,
        "{text}"
    );
    // Held back, not refused: neither side counts a refusal.
    assert_eq!(
        value(
            &text,
            "ringsync_refused_requests_total",
            "reason=\"future_version\""
        ),
        0.0,
        "{text}"
    );
    let text = render(&a, &ids(), T0);
    assert_eq!(
        value(
            &text,
            "ringsync_refused_by_peers_total",
            "reason=\"future_version\""
        ),
        0.0,
        "{text}"
    );
}

#[test]
fn the_app_serves_metrics_in_the_text_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No eager relay: the write would be relayed at once to node b, whose
    // address refuses connections, and the failed relay's retries could
    // judge b failed (fallback mode) before /metrics is read.
    let topo = Topology::parse(
        "[cluster]\nname = \"metrics-test\"\nrelay = false\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n",
        "<text>",
        None,
    )
    .expect("topology");
    let shared: Arc<NodeHandle> = NodeHandle::open(topo, "a", dir.path()).expect("open node a");
    shared
        .with_node(|n| n.write(T0, "x", Some(b"1".to_vec())))
        .expect("write");
    let app = ringsync::http::server::app(shared);
    let url = tide::http::Url::parse("http://localhost/metrics").expect("url");
    let req = tide::http::Request::new(tide::http::Method::Get, url);
    let mut res: tide::http::Response =
        async_std::task::block_on(app.respond(req)).expect("respond");
    assert_eq!(res.status(), tide::StatusCode::Ok);
    let ct = res
        .header("content-type")
        .map(|h| h.as_str().to_string())
        .unwrap_or_default();
    assert_eq!(ct, CONTENT_TYPE);
    let body = async_std::task::block_on(res.body_string()).expect("body");
    check_families(&body);
    promtool_check(&body);
    assert_eq!(value(&body, "ringsync_keys", ""), 1.0);
    assert_eq!(value(&body, "ringsync_mode", "mode=\"ring\""), 1.0);
}

/// Node `i`'s peer traffic through its listener: (received, sent).
fn peer_wire(c: &Cluster, i: usize) -> (u64, u64) {
    let text = String::from_utf8(c.call(i, "GET", "/metrics", None).1).expect("metrics are UTF-8");
    let get = |d: &str| {
        value(
            &text,
            "ringsync_peer_wire_bytes_total",
            &format!("direction=\"{d}\""),
        ) as u64
    };
    (get("received"), get("sent"))
}

#[test]
fn peer_traffic_is_counted_on_the_wire_with_its_heads_and_client_calls_are_not() {
    // No cycle runs during the test: the only peer traffic is each node's
    // catch-up pull as it starts, and then the relay of the one write.
    let c = Cluster::start(2, Schedule::Successor, &quiet_interval(), "");
    wait_until(Duration::from_secs(5), "the start pulls to end", || {
        (0..2).all(|i| c.status(i)["requests_in_flight"] == 0)
    });
    let before = [peer_wire(&c, 0), peer_wire(&c, 1)];
    let payload_before = c.status(0)["bytes_sent"].as_u64().expect("bytes_sent");
    for (i, was) in before.iter().enumerate() {
        c.status(i);
        c.get(i, "k");
        assert_eq!(
            peer_wire(&c, i),
            *was,
            "node {i} counted the client's calls as peer traffic"
        );
    }
    c.put(0, "k", "v");
    // n1 serves the entry as soon as it is merged, and answers the relay
    // once its disk has it: wait for the answer too.
    wait_until(Duration::from_secs(5), "the write is relayed to n1", || {
        c.get(1, "k").is_some() && c.status(0)["requests_in_flight"] == 0
    });
    let payload = c.status(0)["bytes_sent"].as_u64().expect("bytes_sent") - payload_before;
    let (received, sent) = peer_wire(&c, 1);
    let (received, sent) = (received - before[1].0, sent - before[1].1);
    assert!(payload > 0, "n0 sent no payload");
    // The request's head (request line, host, length, the signature
    // headers) comes on top of its payload, and the answer has a head too.
    assert!(
        received > payload + 100,
        "n1 read {received} bytes of peer requests for n0's {payload} bytes of payload"
    );
    assert!(sent > 0, "n1's answers were not counted");
    assert_eq!(peer_wire(&c, 0), before[0], "n0 answered no peer request");
}

/// The HELP text of `name`.
fn help_of<'a>(text: &'a str, name: &str) -> &'a str {
    let prefix = format!("# HELP {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no HELP for {name} in:\n{text}"))
}

/// What a lone node's own writes count in, and that each help says so:
/// a client write changes the store without arriving from a peer.
#[test]
fn a_local_write_counts_as_applied_and_the_help_says_so() {
    let mut n = node(0);
    n.write(T0, "k", Some(b"v".to_vec())).expect("write");
    n.write(T0, "gone", Some(b"v".to_vec())).expect("write");
    n.write(T0, "gone", None).expect("delete");
    let text = render(&n, &ids(), T0);
    assert_eq!(value(&text, "ringsync_entries_applied_total", ""), 3.0);
    assert_eq!(value(&text, "ringsync_entries_received_total", ""), 0.0);
    assert_eq!(value(&text, "ringsync_keys", ""), 1.0);
    assert_eq!(value(&text, "ringsync_tombstones", ""), 1.0);
    assert_eq!(value(&text, "ringsync_mode_since_cycle", ""), 0.0);
    let applied = help_of(&text, "ringsync_entries_applied_total");
    assert!(
        applied.contains("own client writes and deletes") && applied.contains("received entries"),
        "{applied}"
    );
    assert!(
        help_of(&text, "ringsync_entries_received_total").contains("whether or not they changed"),
        "received entries are counted before the merge decides"
    );
    assert!(help_of(&text, "ringsync_keys").contains("tombstones, not counted"));
    assert!(help_of(&text, "ringsync_mode_since_cycle").contains("the first cycle the node ran"));
}

/// A request that fails counts as failed whatever it asked, while ok
/// counts only pushes and push-pulls: tree and bucket queries and probes
/// that were answered are in neither, as the help says.
#[test]
fn pushes_ok_and_failed_count_what_their_help_says() {
    let (nodes, now) = exercised();
    let text = render(&nodes[1], &ids(), now);
    let st = nodes[1].stats();
    assert!(st.pushes_failed > 0, "b's requests to c failed");
    assert_eq!(
        value(&text, "ringsync_pushes_total", "result=\"failed\""),
        st.pushes_failed as f64
    );
    assert!(
        st.pushes_ok + st.pushes_failed <= st.messages_sent,
        "ok and failed never count more than the requests sent"
    );
    let help = help_of(&text, "ringsync_pushes_total");
    assert!(help.contains("ok: pushes and push-pulls"), "{help}");
    assert!(help.contains("failed: requests of any kind"), "{help}");
    assert!(help_of(&text, "ringsync_messages_sent_total").contains("indirect probes"));
}
