//! Tests of the cluster view: how members' statuses are judged together,
//! and that viewers share one fan-out a second.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::auth::Secrets;
use crate::service::handle::AnyStore;
use crate::service::transport::{Call, HopResult, NodeDigest, PeerError, Reply, Transport};
use crate::service::transport::{Hop, Offline};
use crate::store::MemoryStore;
use crate::topology::Topology;

fn members(n: u32) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("n{i}"), format!("127.0.0.1:{}", 7000 + i)))
        .collect()
}

fn status(i: u32, mode: &str, root: &str, peers: &[(u32, &str)]) -> MemberStatus {
    MemberStatus {
        id: format!("n{i}"),
        mode: mode.into(),
        mode_reason: "because".into(),
        cycle: 11,
        last_cycle: Some(10),
        now_ms: Some(10_250),
        digest_root: root.into(),
        keys: 3,
        relay_queue: Some(0),
        peers: peers
            .iter()
            .map(|&(p, s)| MemberPeer {
                id: format!("n{p}"),
                state: s.into(),
            })
            .collect(),
        ..MemberStatus::default()
    }
}

fn answered(pos: u32, s: MemberStatus, sent_ms: u64, received_ms: u64) -> Probe {
    Probe {
        pos,
        result: Ok(s),
        sent_ms,
        received_ms,
    }
}

fn silent(pos: u32) -> Probe {
    Probe {
        pos,
        result: Err("connection refused".into()),
        sent_ms: 0,
        received_ms: 1,
    }
}

fn states(views: &[NodeView]) -> Vec<&str> {
    views.iter().map(|v| v.state.as_str()).collect()
}

#[test]
fn a_whole_ring_shows_its_modes_agreeing_roots_and_this_cycles_pushes() {
    let m = members(4);
    let ring = Ring {
        members: &m,
        schedule: Schedule::Doubling,
        interval_ms: 1000,
    };
    let probes = (0..4)
        .rev()
        .map(|i| answered(i, status(i, "ring", "r", &[]), 10_000, 10_100))
        .collect();
    let views = judge(ring, probes);
    assert_eq!(states(&views), ["ring"; 4], "in ring order: {views:?}");
    assert!(views.iter().all(|v| v.root_agrees && v.reachable));
    // Cycle 11 of a ring of 4 under doubling: offset 2^(11 mod 2) = 2.
    assert_eq!(views[3].pushes.as_deref(), Some("doubling"));
    assert_eq!(views[3].pushes_to.as_deref(), Some("n1"));
    // Its clock read 10 250 at the middle (10 050) of our round trip.
    assert_eq!(views[0].clock_skew_ms, Some(200));
    assert_eq!(views[0].round_trip_ms, Some(100));
    assert_eq!(views[0].cycle_age_ms, Some(250));
}

#[test]
fn a_dead_member_held_failed_shows_failed_and_the_rest_fallback() {
    let m = members(3);
    let ring = Ring {
        members: &m,
        schedule: Schedule::Successor,
        interval_ms: 1000,
    };
    let probes = vec![
        answered(
            0,
            status(0, "fallback", "r", &[(1, "alive"), (2, "failed")]),
            0,
            0,
        ),
        answered(
            1,
            status(1, "fallback", "r", &[(0, "alive"), (2, "suspect")]),
            0,
            0,
        ),
        silent(2),
    ];
    let views = judge(ring, probes);
    assert_eq!(states(&views), ["fallback", "fallback", "failed"]);
    assert_eq!(views[2].held_by, ["n0", "n1"]);
    assert_eq!(views[2].error.as_deref(), Some("connection refused"));
    assert!(!views[2].root_agrees && views[2].pushes.is_none());
    assert_eq!(views[0].pushes.as_deref(), Some("random"));
    assert_eq!(views[0].pushes_to, None);

    // No one holds it failed yet: it is only unreachable from here.
    let probes = vec![
        answered(0, status(0, "ring", "r", &[]), 0, 0),
        answered(1, status(1, "ring", "q", &[]), 0, 0),
        silent(2),
    ];
    let views = judge(ring, probes);
    assert_eq!(states(&views), ["ring", "ring", "unreachable"]);
    // A tie goes to the first root met: n1 stands apart.
    assert!(views[0].root_agrees && !views[1].root_agrees);
}

/// Answers every status read, counting them.
#[derive(Default)]
struct Counting {
    reads: AtomicU32,
}

impl Transport for Counting {
    fn message<'a>(&'a self, call: Call<'a>, payload: Vec<u8>) -> Reply<'a, Vec<u8>> {
        Offline.message(call, payload)
    }

    fn digest<'a>(&'a self, call: Call<'a>) -> Reply<'a, NodeDigest> {
        Offline.digest(call)
    }

    fn hop<'a>(&'a self, call: Call<'a>, hop: Hop) -> Reply<'a, HopResult> {
        Offline.hop(call, hop)
    }

    fn status<'a>(&'a self, call: Call<'a>) -> Reply<'a, MemberStatus> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let s = MemberStatus {
            id: call.to.to_string(),
            mode: "ring".into(),
            ..MemberStatus::default()
        };
        Box::pin(std::future::ready(Ok::<_, PeerError>(s)))
    }
}

fn node_over(transport: Arc<dyn Transport>) -> Arc<NodeHandle> {
    let topo = Topology::parse(
        "[cluster]\nname = \"view-test\"\n[[node]]\nid = \"a\"\naddr = \"127.0.0.1:1\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:2\"\n[[node]]\nid = \"c\"\naddr = \"127.0.0.1:3\"\n",
        "<text>",
        None,
    )
    .expect("topology");
    let store: AnyStore = Box::new(MemoryStore::new());
    NodeHandle::new(topo, "a", store, Secrets::default(), transport).expect("open")
}

fn own() -> MemberStatus {
    MemberStatus {
        id: "a".into(),
        mode: "ring".into(),
        ..MemberStatus::default()
    }
}

#[test]
fn viewers_within_a_second_share_one_fan_out() {
    let counting = Arc::new(Counting::default());
    let node = node_over(counting.clone());
    let cache = ClusterCache::default();
    async_std::task::block_on(async {
        let first = cache.view(&node, own).await;
        assert_eq!(states(&first.nodes), ["ring"; 3]);
        assert!(first.roots_agree && first.sync_from_browser);
        assert_eq!(first.reachable, 3);
        for _ in 0..20 {
            let again = cache.view(&node, own).await;
            assert_eq!(again.taken_ms, first.taken_ms);
        }
        // One read of each of the two others, for 21 viewers.
        assert_eq!(counting.reads.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_member_that_cannot_be_read_says_why() {
    let node = node_over(Arc::new(Offline));
    let view = async_std::task::block_on(node.cluster_view(own()));
    assert_eq!(states(&view.nodes), ["ring", "unreachable", "unreachable"]);
    let why = view.nodes[1].error.as_deref().unwrap_or_default();
    assert!(why.contains("127.0.0.1:2"), "{why}");
    assert!(view.roots_agree, "the one root read agrees with itself");
}
