//! Fuzzing on stable Rust: a deterministic, seeded, time-bounded mutation
//! fuzzer in a plain test (harness in `tests/common/fuzzing.rs`), over
//! three targets here and one in `tests/fuzz_http.rs`:
//!
//! - `decode_and_handle`: peer message bytes through
//!   `core::message::decode` and `Node::handle_request` of a node on a
//!   `MemoryStore`. Nothing may panic; whatever decodes must encode back
//!   to the same message; every request gets a reply that decodes; a
//!   refused request leaves the node's data and digest root as they were.
//! - `topology_parse`: topology text through `Topology::parse`. Nothing may
//!   panic; a file that parses has at least two nodes with unique ids and
//!   addresses, and parses again to the same topology.
//! - `merge`: random batches of entries pushed to two nodes in different
//!   orders, groupings and with duplicates. Both end with the same digest
//!   root and data, which is exactly the last-writer-wins maximum of every
//!   accepted entry; a refused batch changes nothing.
//!
//! Inputs come from a corpus of valid ones, mutated: bit flips, bytes set
//! to edge values, insertions, deletions, truncations, duplications and
//! splices with another corpus entry. Iteration `i` runs on seed
//! `RINGSYNC_FUZZ_SEED + i` (default seed 1), and everything it does
//! follows from that seed. Each target runs for `RINGSYNC_FUZZ_SECS`
//! seconds (default 5), or `RINGSYNC_FUZZ_ITERS` iterations if set. A
//! failure prints the seed and the command that replays it.
//!
//! Crashes found are kept in `REGRESSIONS_*` below and replayed on every
//! run, before any fuzzing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::fuzzing::{fuzz, mutate, pick};

const CLUSTER: u64 = 0xF022;
/// Ring size of the fuzzed nodes: node 0 receives from 1, 2 and 3.
const N: u32 = 4;
/// The time requests arrive at; generated versions lie around it.
const NOW_MS: u64 = 1_700_000_000_000;
use ringsync::core::digest_diff::{diff, fingerprint, Coded, Form};
use ringsync::core::entry::{Entry, Version};
use ringsync::core::membership::State;
use ringsync::core::message::{decode, encode, Body, Digest, Message, PushKind, Refusal};
use ringsync::core::rng::Rng;
use ringsync::core::{Config, Event, Node, Schedule};
use ringsync::store::MemoryStore;
use ringsync::topology::Topology;

// ----- target: decode and handle -----------------------------------------

fn node(me: u32, seed: u64) -> Node<MemoryStore> {
    let cfg = Config::new(CLUSTER, N, me, Schedule::Successor, 1000);
    Node::open(cfg, MemoryStore::new(), seed).expect("a memory store opens")
}

/// Drops what the node asked to send; true if it wiped its data.
fn drain(n: &mut Node<MemoryStore>) -> bool {
    while n.poll_transmit().is_some() {}
    let mut wiped = false;
    while let Some(e) = n.poll_event() {
        wiped |= matches!(e, Event::Wiped { .. });
    }
    wiped
}

fn version(rng: &mut Rng) -> Version {
    Version {
        ms: NOW_MS - 20_000 + rng.below(25_000),
        counter: rng.below(3) as u32,
        origin: rng.below(u64::from(N)) as u32,
    }
}

fn arb_entry(rng: &mut Rng) -> Entry {
    Entry {
        key: format!("k{}", rng.below(12)),
        value: if rng.chance(0.25) {
            None
        } else {
            Some((0..rng.below(6)).map(|_| rng.next_u64() as u8).collect())
        },
        version: version(rng),
    }
}

fn arb_digest(rng: &mut Rng) -> Digest {
    let mut d = Digest::default();
    for _ in 0..rng.below(4) {
        let v = version(rng);
        d.hints.insert(v.origin, v);
    }
    if rng.chance(0.1) {
        let v = version(rng);
        d.gc_floors.insert(v.origin, v);
    }
    d.root = rng.next_u64();
    d.keys = rng.below(100);
    d.quiet = rng.chance(0.5);
    d.resyncing = rng.chance(0.1);
    for _ in 0..rng.below(3) {
        let state = *pick(rng, &[State::Alive, State::Suspect, State::Failed]);
        d.news
            .push((rng.below(u64::from(N)) as u32, rng.below(4), state));
    }
    d
}

/// Valid messages of every kind, from the node's peers.
fn message_corpus(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..4 {
        let from = 1 + rng.below(u64::from(N) - 1) as u32;
        let entries: Vec<Entry> = (0..rng.below(6)).map(|_| arb_entry(rng)).collect();
        let kind = *pick(
            rng,
            &[
                PushKind::Cycle,
                PushKind::Repair,
                PushKind::PushPull,
                PushKind::Sync,
                PushKind::Relay,
            ],
        );
        // A partner's whole digest, then a delta against it.
        let base = arb_digest(rng);
        let base_fp = fingerprint(&base);
        let bodies = vec![
            Body::Push {
                kind,
                digest: arb_digest(rng),
                entries: entries.clone(),
                complete: rng.chance(0.5),
            },
            Body::PartnerPush {
                kind,
                digest: Coded {
                    have: rng.next_u64(),
                    digest: Form::Full(base.clone()),
                },
                entries: entries.clone(),
                complete: rng.chance(0.5),
            },
            Body::PartnerPush {
                kind,
                digest: Coded {
                    have: 0,
                    digest: Form::Delta(diff(&base, base_fp, &arb_digest(rng))),
                },
                entries: entries.clone(),
                complete: false,
            },
            Body::PartnerAck {
                digest: Coded {
                    have: base_fp,
                    digest: Form::Full(arb_digest(rng)),
                },
            },
            Body::Syn {
                digest: arb_digest(rng),
            },
            Body::Ack {
                digest: arb_digest(rng),
            },
            Body::SynAck {
                digest: arb_digest(rng),
                entries,
                complete: true,
            },
            Body::TreeQuery {
                level: rng.below(5) as u8,
                salt: rng.next_u64() as u32,
                nodes: (0..rng.below(4)).map(|_| rng.below(64) as u32).collect(),
            },
            Body::TreeReply {
                level: 1,
                children: vec![3, 0, 7, 7, 7, 7, 8, 8, 8, 8],
            },
            Body::SketchQuery {
                level: rng.below(6) as u8,
                ranges: (0..rng.below(3))
                    .map(|_| (rng.below(1 << 12) as u32, rng.below(4) as u32))
                    .collect(),
                start: rng.below(64) as u32,
                cells: rng.below(64) as u32,
            },
            Body::SketchReply {
                start: 0,
                cells: (0..34 * rng.below(3))
                    .map(|_| rng.below(256) as u8)
                    .collect(),
            },
            Body::Fetch {
                keys: rng.next_u64().to_le_bytes().to_vec(),
            },
            Body::Fetched {
                entries: vec![arb_entry(rng)],
            },
            Body::Refused {
                reason: Refusal::StaleSender,
                digest: Some(arb_digest(rng)),
            },
        ];
        for body in bodies {
            out.push(encode(&Message {
                cluster: CLUSTER,
                name: CLUSTER,
                epoch: 0,
                from,
                body,
            }));
        }
    }
    out
}

/// Crashes once found by `decode_and_handle`, as hex: replayed first.
const REGRESSIONS_MESSAGES: &[&str] = &[];

/// What became of an input: (decoded, answered without a refusal).
type Outcome = (bool, bool);

/// Checks one input against a node: see the module docs.
fn decode_and_handle_one(n: &mut Node<MemoryStore>, bytes: &[u8]) -> Outcome {
    let decoded = decode(bytes);
    if let Ok(msg) = &decoded {
        let again = encode(msg);
        assert_eq!(
            decode(&again).as_ref(),
            Ok(msg),
            "a decoded message does not survive encode and decode"
        );
    }
    let (root, counts) = (n.root(), n.counts());
    let reply = n.handle_request(NOW_MS, bytes);
    let wiped = drain(n);
    let reply = decode(&reply).expect("every reply decodes");
    assert_eq!((reply.cluster, reply.from), (CLUSTER, 0));
    // By design (DESIGN.md §7), a digest whose GC floors are above what
    // this node knows wipes it, even on a Syn that is then refused as from
    // a stale sender (and a push's entries are applied after the wipe).
    // Only the cluster secret keeps a stranger from sending such a digest.
    let answered = !matches!(reply.body, Body::Refused { .. });
    if !wiped {
        if let Body::Refused { reason, .. } = reply.body {
            assert_eq!(
                (n.root(), n.counts()),
                (root, counts),
                "a request refused as {reason} changed the data"
            );
        }
    }
    (decoded.is_ok(), answered)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn decode_and_handle() {
    for hex in REGRESSIONS_MESSAGES {
        let mut n = node(0, 1);
        decode_and_handle_one(&mut n, &unhex(hex));
    }
    let corpus = message_corpus(&mut Rng::new(0xC0));
    // One node for a run of inputs, so that later inputs meet the state
    // earlier ones left; a fresh one now and then.
    let mut n = node(0, 7);
    let mut used = 0;
    let (mut decoded, mut answered) = (0u64, 0u64);
    fuzz("fuzz", "decode_and_handle", |rng| {
        if used >= 500 {
            n = node(0, rng.next_u64());
            used = 0;
        }
        used += 1;
        let input = pick(rng, &corpus);
        let bytes = if rng.chance(0.05) {
            input.clone()
        } else {
            let other: &Vec<u8> = pick(rng, &corpus);
            mutate(rng, input, other)
        };
        let (d, a) = decode_and_handle_one(&mut n, &bytes);
        decoded += u64::from(d);
        answered += u64::from(a);
    });
    eprintln!("decode_and_handle: {decoded} inputs decoded, {answered} answered without a refusal");
    assert!(
        decoded > 0 && answered > 0,
        "the fuzzer never got past decoding"
    );
}

// ----- target: topology parsing -----------------------------------------

/// Fragments that mean something in TOML or to the topology checks.
const TOML_BITS: [&str; 24] = [
    "[cluster]\n",
    "[[node]]\n",
    "id = \"x\"\n",
    "addr = \"127.0.0.1:7000\"\n",
    "addr = \"[::1]:1\"\n",
    "name = \"\"\n",
    "interval = \"0s\"\n",
    "interval = \"999999999999 years\"\n",
    "max_value_size = 9223372036854775807\n",
    "failure_threshold = -1\n",
    "relay = 1\n",
    "secret_file = \"\"\n",
    "tokens_file = \"/\"\n",
    "request_timeout = \"1ns\"\n",
    "data_dir = \"../../\"\n",
    "\"\"\"",
    "'''",
    "= ",
    "\\u0000",
    "1e999",
    "[cluster.x]\n",
    "node = []\n",
    "{ a = 1 }",
    "#",
];

fn topology_corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .expect("the topology folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    out.sort();
    out.push(
        "[cluster]\nname = \"f\"\nschedule = \"doubling\"\nsecret_file = \"s\"\ntokens_file = \"t\"\nrequest_timeout = \"2s\"\n[[node]]\nid = \"a\"\naddr = \"h:1\"\n[[node]]\nid = \"b\"\naddr = \"[::1]:2\"\ndata_dir = \"d\"\n"
            .into(),
    );
    assert!(out.len() >= 4, "the topology corpus is too small");
    out
}

/// Crashes once found by `topology_parse`, as text: replayed first.
const REGRESSIONS_TOPOLOGY: &[&str] = &[];

fn topology_one(text: &str) {
    let Ok(t) = Topology::parse(text, "<fuzz>", Some(Path::new("/etc/x"))) else {
        return;
    };
    assert!(t.nodes.len() >= 2, "a ring of {} parsed", t.nodes.len());
    let mut ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), t.nodes.len(), "duplicate ids parsed");
    assert!(!t.cluster.request_timeout.is_zero());
    assert!(t.cluster.interval >= Duration::from_millis(10));
    let _ = t.describe();
    let again = Topology::parse(text, "<fuzz>", Some(Path::new("/etc/x")));
    assert_eq!(again.as_ref(), Ok(&t), "parsing is not deterministic");
    assert_eq!(again.map(|a| a.fingerprint()), Ok(t.fingerprint()));
}

#[test]
fn topology_parse() {
    for text in REGRESSIONS_TOPOLOGY {
        topology_one(text);
    }
    let corpus = topology_corpus();
    fuzz("fuzz", "topology_parse", |rng| {
        let input = pick(rng, &corpus);
        let text = if rng.chance(0.5) {
            // Structure-aware: splice TOML fragments in at line starts.
            let mut lines: Vec<String> = input.lines().map(str::to_string).collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(lines.len() as u64 + 1) as usize;
                let bit = pick(rng, &TOML_BITS).to_string();
                if rng.chance(0.3) && !lines.is_empty() {
                    lines.remove(at.min(lines.len() - 1));
                }
                lines.insert(at.min(lines.len()), bit);
            }
            lines.join("\n")
        } else {
            let other = pick(rng, &corpus);
            String::from_utf8_lossy(&mutate(rng, input.as_bytes(), other.as_bytes())).into_owned()
        };
        topology_one(&text);
    });
}

// ----- target: merge ----------------------------------------------------

fn push(from: u32, entries: Vec<Entry>, kind: PushKind) -> Vec<u8> {
    encode(&Message {
        cluster: CLUSTER,
        name: CLUSTER,
        epoch: 0,
        from,
        body: Body::Push {
            kind,
            digest: Digest::default(),
            entries,
            complete: false,
        },
    })
}

/// Everything a node stores, tombstones included, in key order.
fn contents(n: &Node<MemoryStore>) -> Vec<Entry> {
    n.store_range("", None, usize::MAX)
        .expect("the memory store reads")
}

/// A version this far ahead of the receiver's clock is from the future:
/// beyond any drift a node allows, so held back, never applied.
const FUTURE_MS: u64 = NOW_MS + 60_000;

#[test]
fn merge() {
    fuzz("fuzz", "merge", |rng| {
        // A set of writes: one payload per (key, version), as in reality.
        let mut writes: BTreeMap<(String, Version), Entry> = BTreeMap::new();
        for _ in 0..1 + rng.below(30) {
            let e = arb_entry(rng);
            writes.entry((e.key.clone(), e.version)).or_insert(e);
        }
        let writes: Vec<Entry> = writes.into_values().collect();
        // Cut into batches; some get a poisoned entry and must be refused whole.
        let mut batches: Vec<(Vec<Entry>, bool)> = Vec::new();
        let mut rest = writes.as_slice();
        while !rest.is_empty() {
            let k = (1 + rng.below(6) as usize).min(rest.len());
            let mut batch = rest[..k].to_vec();
            rest = &rest[k..];
            // A bad key refuses the batch whole (any origin may have
            // written: a member removed since, or added); an entry from
            // the future is only held back, and the rest is applied.
            let mut poisoned = false;
            if rng.chance(0.15) {
                let mut bad = arb_entry(rng);
                match rng.below(4) {
                    0 => bad.key = String::new(),
                    1 => bad.key = "x".repeat(1025),
                    2 => bad.key = "y".repeat(1024 + 1 + rng.below(4096) as usize),
                    _ => bad.version.ms = FUTURE_MS,
                }
                poisoned = bad.version.ms != FUTURE_MS;
                let at = rng.below(batch.len() as u64 + 1) as usize;
                batch.insert(at, bad);
            }
            batches.push((batch, poisoned));
        }
        // Node a takes them in order; node b reversed, some twice, with
        // every kind of push.
        let kinds = [
            PushKind::Cycle,
            PushKind::Repair,
            PushKind::PushPull,
            PushKind::Sync,
            PushKind::Relay,
        ];
        let mut a = node(0, 1);
        let mut b = node(0, 2);
        let deliver =
            |n: &mut Node<MemoryStore>, batch: &[Entry], poisoned: bool, rng: &mut Rng| {
                let before = (n.root(), contents(n));
                let from = 1 + rng.below(u64::from(N) - 1) as u32;
                let reply =
                    n.handle_request(NOW_MS, &push(from, batch.to_vec(), *pick(rng, &kinds)));
                assert!(!drain(n), "a push without GC floors wiped a node");
                let refused = matches!(decode(&reply).map(|m| m.body), Ok(Body::Refused { .. }));
                assert_eq!(refused, poisoned, "batch {batch:?}");
                if refused {
                    assert_eq!(
                        (n.root(), contents(n)),
                        before,
                        "a refused batch changed data"
                    );
                }
            };
        for (batch, poisoned) in &batches {
            deliver(&mut a, batch, *poisoned, rng);
        }
        for (batch, poisoned) in batches.iter().rev() {
            deliver(&mut b, batch, *poisoned, rng);
            if rng.chance(0.3) {
                deliver(&mut b, batch, *poisoned, rng);
            }
        }
        // The expected state: per key, the accepted entry of highest version.
        let mut want: BTreeMap<String, Entry> = BTreeMap::new();
        for (batch, poisoned) in &batches {
            if *poisoned {
                continue;
            }
            for e in batch.iter().filter(|e| e.version.ms < FUTURE_MS) {
                match want.get(&e.key) {
                    Some(w) if w.version >= e.version => {}
                    _ => {
                        want.insert(e.key.clone(), e.clone());
                    }
                }
            }
        }
        let want: Vec<Entry> = want.into_values().collect();
        assert_eq!(contents(&a), want, "node a is not the LWW maximum");
        assert_eq!(contents(&b), want, "node b is not the LWW maximum");
        assert_eq!(a.root(), b.root(), "equal data, different roots");
    });
}
