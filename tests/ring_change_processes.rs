//! Changing the ring of real node processes by rolling reload (issue 19,
//! DESIGN §15): a 3-node cluster taking writes grows to 5, loses one node
//! for good (killed, then removed: the rest leave fallback), has one
//! replaced on a new address with an empty disk, and is reordered. After
//! each change every node runs the new epoch in ring mode with the same
//! digest root, every write made (each acknowledged at once, before and
//! between the reloads) is on every node, and none was refused.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use ringsync::core::Schedule;

const INTERVAL: &str = "300ms";

/// How long a change may take to settle: a few dozen cycles, generous for
/// a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);

struct Run {
    c: Cluster,
    /// Keys written, each acknowledged, with its value.
    written: Vec<(String, String)>,
    seq: u32,
}

impl Run {
    /// Writes a few keys at each running node of `members`: `put` panics if
    /// a node refuses or fails one, so every write here is acknowledged.
    fn write_at(&mut self, members: &[usize]) {
        for &i in members {
            for _ in 0..3 {
                self.seq += 1;
                let (k, v) = (format!("k{:04}", self.seq), format!("v{}@n{i}", self.seq));
                self.c.put(i, &k, &v);
                self.written.push((k, v));
            }
        }
    }

    /// Reloads `members` one at a time onto the ring `ring` at `epoch`,
    /// writing at the nodes that run between reloads.
    fn roll(&mut self, epoch: u64, ring: &[usize], reload: &[usize]) {
        self.c.write_ring(epoch, ring);
        for &i in reload {
            self.c.signal(i, "HUP");
            let running: Vec<usize> = ring
                .iter()
                .copied()
                .filter(|&j| self.c.is_running(j))
                .collect();
            self.write_at(&running[..1]);
        }
    }

    /// Waits until every node of `ring` runs `epoch` in ring mode with one
    /// digest root, then checks that each holds every write.
    fn settled(&mut self, epoch: u64, ring: &[usize], what: &str) {
        let c = &self.c;
        wait_for(SETTLE, what, || {
            let mut roots = Vec::new();
            for &i in ring {
                let s = c.status(i);
                let (e, mode) = (s["epoch"].as_u64(), s["mode"].as_str());
                if e != Some(epoch) || mode != Some("ring") {
                    return Err(format!("{} at epoch {e:?} in mode {mode:?}", c.id(i)));
                }
                roots.push(c.root(i));
            }
            if roots.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!("roots apart: {roots:?}"));
            }
            Ok(())
        });
        for &i in ring {
            for (k, v) in &self.written {
                assert_eq!(
                    c.get(i, k).as_deref(),
                    Some(v.as_str()),
                    "{what}: {} lacks {k}",
                    c.id(i)
                );
            }
        }
    }
}

#[test]
fn a_cluster_grows_loses_a_node_replaces_one_and_is_reordered_by_rolling_reload() {
    let c = Cluster::start(3, Schedule::Successor, INTERVAL, "");
    let mut run = Run {
        c,
        written: Vec::new(),
        seq: 0,
    };
    run.write_at(&[0, 1, 2]);

    // Grow to 5: reload the three, then start the two new nodes.
    let (n3, n4) = (run.c.add_node(), run.c.add_node());
    let ring = [0, 1, n3, 2, n4];
    run.roll(1, &ring, &[0, 1, 2]);
    run.c.start_node(n3);
    run.c.start_node(n4);
    run.write_at(&[n3, n4]);
    run.settled(1, &ring, "grown to 5 at epoch 1");

    // n1 dies for good: the rest fall back, then leave fallback once it is
    // removed from the ring.
    run.c.kill(1);
    let c = &run.c;
    wait_for(SETTLE, "fallback after n1 died", || {
        match c.status(0)["mode"].as_str() {
            Some("fallback") => Ok(()),
            m => Err(format!("n0 in mode {m:?}")),
        }
    });
    let ring = [0, n3, 2, n4];
    run.write_at(&[0]);
    run.roll(2, &ring, &[0, n3, 2, n4]);
    run.settled(2, &ring, "n1 removed at epoch 2");

    // n2 is replaced: a new server (an empty disk) on a new address.
    run.c.stop(2);
    std::fs::remove_dir_all(run.c.data_dir(2)).expect("the old server's disk goes");
    run.c.readdress(2);
    run.roll(3, &ring, &[0, n3, n4]);
    run.c.start_node(2);
    run.write_at(&[2]);
    run.settled(3, &ring, "n2 replaced at epoch 3");

    // Reorder the ring.
    let ring = [n4, 2, 0, n3];
    run.roll(4, &ring, &[0, 2, n3, n4]);
    run.write_at(&ring);
    run.settled(4, &ring, "reordered at epoch 4");
}
