//! Changing the ring of real node processes by rolling reload (issue 19,
//! DESIGN §15): a 3-node cluster taking writes grows to 5, loses one node
//! for good (killed, then removed: the rest leave fallback), has one
//! replaced on a new address with an empty disk, and is reordered. After
//! each change every node runs the new epoch in ring mode with the same
//! digest root, every write made (each acknowledged at once, before and
//! between the reloads) is on every node, and none was refused. Through
//! it all a writer thread keeps writing at the nodes that stay: every
//! write it got acknowledged is on every node at the end, and no stretch
//! of refused writes at one node lasts longer than one cycle.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use ringsync::core::Schedule;
use ringsync::http::client::{call_with, ClientAuth};
use ringsync::http::percent_encode;

const INTERVAL: &str = "300ms";

/// How long a change may take to settle: a few dozen cycles, generous for
/// a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);

/// The cycle length in milliseconds: the longest a node that stays may
/// refuse client writes.
const CYCLE_MS: u128 = 300;

/// A node the writer writes at: its index, address and credentials.
#[derive(Clone)]
struct Target {
    node: usize,
    url: String,
    auth: ClientAuth,
}

/// One write attempt of the writer, in the order made.
struct Attempt {
    node: usize,
    started: Instant,
    done: Instant,
    /// The key and value, if the node acknowledged it; else why not.
    outcome: Result<(String, String), String>,
}

/// A thread writing a fresh key at each of its targets in turn, as fast
/// as they answer, until stopped.
struct Writer {
    targets: Arc<Mutex<Vec<Target>>>,
    stop: Arc<AtomicBool>,
    /// Held for each round of writes; `true` inside while writes pause.
    paused: Arc<Mutex<bool>>,
    thread: Option<JoinHandle<Vec<Attempt>>>,
}

impl Writer {
    fn start(first: Target) -> Writer {
        let targets = Arc::new(Mutex::new(vec![first]));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(Mutex::new(false));
        let (t, s, p) = (Arc::clone(&targets), Arc::clone(&stop), Arc::clone(&paused));
        let thread = std::thread::spawn(move || {
            let mut attempts = Vec::new();
            // Bounded in count as well as by the stop flag.
            for seq in 0..200_000u32 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let gate = p.lock().unwrap_or_else(|e| e.into_inner());
                let now: Vec<Target> = if *gate {
                    Vec::new()
                } else {
                    t.lock().map(|g| g.clone()).unwrap_or_default()
                };
                for target in now {
                    let (k, v) = (format!("w{seq:06}@{}", target.node), format!("w{seq}"));
                    let started = Instant::now();
                    let path = format!("/v1/kv/{}", percent_encode(&k));
                    let res = call_with(
                        "PUT",
                        &target.url,
                        &path,
                        Some(v.clone().into_bytes()),
                        Duration::from_secs(5),
                        &target.auth,
                    );
                    let outcome = match res {
                        Ok((200, _)) => Ok((k, v)),
                        Ok((st, body)) => {
                            Err(format!("HTTP {st}: {}", String::from_utf8_lossy(&body)))
                        }
                        Err(e) => Err(e),
                    };
                    attempts.push(Attempt {
                        node: target.node,
                        started,
                        done: Instant::now(),
                        outcome,
                    });
                }
                drop(gate);
                std::thread::sleep(Duration::from_millis(20));
            }
            attempts
        });
        Writer {
            targets,
            stop,
            paused,
            thread: Some(thread),
        }
    }

    /// What pauses the writes: setting it waits for a round in progress.
    fn pause_handle(&self) -> Arc<Mutex<bool>> {
        Arc::clone(&self.paused)
    }

    fn add(&self, target: Target) {
        if let Ok(mut g) = self.targets.lock() {
            g.push(target);
        }
    }

    fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| panic!("the writer thread panicked"))
            })
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The longest stretch, per node, from a refused write to the next
/// acknowledged one (or the last attempt), with the first refusal's cause.
fn longest_refusal(attempts: &[Attempt], node: usize) -> (Duration, Option<String>) {
    let (mut worst, mut cause) = (Duration::ZERO, None);
    let mut since: Option<(Instant, String)> = None;
    for a in attempts.iter().filter(|a| a.node == node) {
        match &a.outcome {
            Err(e) => {
                if since.is_none() {
                    since = Some((a.started, e.clone()));
                }
            }
            Ok(_) => {
                if let Some((t, e)) = since.take() {
                    if a.done - t > worst {
                        (worst, cause) = (a.done - t, Some(e));
                    }
                }
            }
        }
    }
    if let (Some((t, e)), Some(last)) = (since, attempts.iter().rfind(|a| a.node == node)) {
        if last.done - t > worst {
            (worst, cause) = (last.done - t, Some(e));
        }
    }
    (worst, cause)
}

struct Run {
    c: Cluster,
    /// The writer's pause: a sync's report of agreement is only meaningful
    /// while nothing is written during it.
    pause: Option<Arc<Mutex<bool>>>,
    /// Keys written, each acknowledged, with its value.
    written: Vec<(String, String)>,
    seq: u32,
}

impl Run {
    /// Node `node` as the writer reaches it.
    fn target(&self, node: usize) -> Target {
        Target {
            node,
            url: self.c.url(node),
            auth: self.c.auth(node),
        }
    }

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
        for (k, &i) in reload.iter().enumerate() {
            self.c.signal(i, "HUP");
            if k == 0 {
                self.sync_across_epochs(i, epoch);
            }
            let running: Vec<usize> = ring
                .iter()
                .copied()
                .filter(|&j| self.c.is_running(j))
                .collect();
            self.write_at(&running[..1]);
        }
    }

    /// Once node `i` runs `epoch` while the others still run the one
    /// before, a manual sync it coordinates names each hop's nodes so that
    /// both ends find each other in their own ring: no hop fails for being
    /// misread, and every node it reaches ends with the same digest.
    fn sync_across_epochs(&mut self, i: usize, epoch: u64) {
        let c = &self.c;
        wait_for(SETTLE, "the reload applied", || {
            match c.status(i)["epoch"].as_u64() {
                Some(e) if e == epoch => Ok(()),
                e => Err(format!("{} at epoch {e:?}", c.id(i))),
            }
        });
        self.write_at(&[i]);
        // The writer's writes at n0 during the sync would leave the nodes
        // apart at its end (one run in a few failed so).
        let set = |to: bool| {
            if let Some(p) = &self.pause {
                *p.lock().unwrap_or_else(|e| e.into_inner()) = to;
            }
        };
        set(true);
        let r = self.c.sync(i);
        set(false);
        assert_eq!(r["failed_hops"], 0, "a sync across epochs: {r}");
        assert_eq!(r["reachable_agree"], true, "a sync across epochs: {r}");
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
        pause: None,
        written: Vec::new(),
        seq: 0,
    };
    run.write_at(&[0, 1, 2]);
    // n0 stays through every change; n3 joins it once started.
    let writer = Writer::start(run.target(0));
    run.pause = Some(writer.pause_handle());

    // Grow to 5: reload the three, then start the two new nodes.
    let (n3, n4) = (run.c.add_node(), run.c.add_node());
    let ring = [0, 1, n3, 2, n4];
    run.roll(1, &ring, &[0, 1, 2]);
    run.c.start_node(n3);
    run.c.start_node(n4);
    writer.add(run.target(n3));
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

    let attempts = writer.finish();
    for node in [0, n3] {
        let n = attempts.iter().filter(|a| a.node == node).count();
        let (worst, cause) = longest_refusal(&attempts, node);
        eprintln!(
            "writer at {}: {n} attempts, longest refusal {} ms{}",
            run.c.id(node),
            worst.as_millis(),
            cause
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        );
        assert!(
            n > 20,
            "the writer made only {n} attempts at {}",
            run.c.id(node)
        );
        assert!(
            worst.as_millis() <= CYCLE_MS,
            "{} refused client writes for {} ms, more than a cycle: {cause:?}",
            run.c.id(node),
            worst.as_millis()
        );
    }
    run.written
        .extend(attempts.into_iter().filter_map(|a| a.outcome.ok()));
    run.settled(4, &ring, "every write of the writer, after the changes");
}
