//! Fuzzing on stable Rust: a deterministic, seeded, time-bounded mutation
//! fuzzer in a plain test, over four targets:
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
//! - `http_framing`: pipelined HTTP/1.1 requests through the listener's
//!   `http::framing::Framer`, in pieces of random size. Nothing may
//!   panic; what it hands on is the input, in order, with nothing left out
//!   or made up; every head it hands on ends at the first blank line and
//!   at no other, every body is as long as its head said, no head passes
//!   the budget, and how the bytes were split changes none of it.
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

use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use ringsync::core::entry::{Entry, Version};
use ringsync::core::membership::State;
use ringsync::core::message::{decode, encode, Body, Digest, Message, PushKind, Refusal};
use ringsync::core::rng::Rng;
use ringsync::core::{Config, Event, Node, Schedule};
use ringsync::http::framing::{FrameError, Framer, Phase};
use ringsync::store::MemoryStore;
use ringsync::topology::Topology;

/// Seconds per target when `RINGSYNC_FUZZ_SECS` is not set: long enough
/// for tens of thousands of inputs in a release build, short enough for
/// every CI run.
const DEFAULT_SECS: f64 = 5.0;

const CLUSTER: u64 = 0xF022;
/// Ring size of the fuzzed nodes: node 0 receives from 1, 2 and 3.
const N: u32 = 4;
/// The time requests arrive at; generated versions lie around it.
const NOW_MS: u64 = 1_700_000_000_000;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `f` on seed after seed for the target's budget; on a panic, says
/// how to replay that seed and fails.
fn fuzz(target: &str, mut f: impl FnMut(&mut Rng)) {
    let secs: f64 = env("RINGSYNC_FUZZ_SECS").unwrap_or(DEFAULT_SECS);
    let budget = Duration::from_secs_f64(secs.max(0.0));
    let iters: Option<u64> = env("RINGSYNC_FUZZ_ITERS");
    let base: u64 = env("RINGSYNC_FUZZ_SEED").unwrap_or(1);
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let more = match iters {
            Some(n) => i < n,
            None => i == 0 || start.elapsed() < budget,
        };
        if !more {
            break;
        }
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&mut rng))) {
            eprintln!(
                "fuzz target {target} failed on seed {seed}; replay it with:\n  \
                 RINGSYNC_FUZZ_SEED={seed} RINGSYNC_FUZZ_ITERS=1 cargo test --test fuzz {target}"
            );
            resume_unwind(p);
        }
        i += 1;
    }
    eprintln!(
        "fuzz target {target}: {i} inputs in {:.1?} from seed {base}",
        start.elapsed()
    );
}

// ----- mutation ---------------------------------------------------------

/// Bytes that break parsers: zero, the top of signed and unsigned ranges,
/// varint continuation bits.
const EDGE_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x20, 0x0a];

/// One to eight mutations of `input`, `other` being a second corpus entry
/// to splice from.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = b.len() as u64;
        let at = |rng: &mut Rng| rng.below(len.max(1)) as usize;
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = at(rng);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = at(rng);
                b[i] = EDGE_BYTES[rng.below(EDGE_BYTES.len() as u64) as usize];
            }
            2 if !b.is_empty() => {
                let i = at(rng);
                b[i] = rng.next_u64() as u8;
            }
            3 => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let n = 1 + rng.below(8) as usize;
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, junk);
            }
            4 if !b.is_empty() => {
                let i = at(rng);
                let n = (1 + rng.below(16) as usize).min(b.len() - i);
                b.drain(i..i + n);
            }
            5 => {
                let keep = rng.below(len + 1) as usize;
                b.truncate(keep);
            }
            6 if !b.is_empty() => {
                let i = at(rng);
                let n = (1 + rng.below(32) as usize).min(b.len() - i);
                let copy = b[i..i + n].to_vec();
                let j = at(rng);
                b.splice(j..j, copy);
            }
            7 if !other.is_empty() => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let j = rng.below(other.len() as u64) as usize;
                let n = (1 + rng.below(64) as usize).min(other.len() - j);
                b.splice(i..(i + n).min(b.len()), other[j..j + n].iter().copied());
            }
            // A run of 0xff: a huge varint length or count.
            _ => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let n = 1 + rng.below(10) as usize;
                b.splice(i..i, std::iter::repeat_n(0xff, n));
            }
        }
    }
    b
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

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
        let bodies = vec![
            Body::Push {
                kind,
                digest: arb_digest(rng),
                entries: entries.clone(),
                complete: rng.chance(0.5),
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
                nodes: (0..rng.below(4)).map(|_| rng.below(64) as u32).collect(),
            },
            Body::TreeReply {
                level: 1,
                children: vec![[7; 16]],
            },
            Body::BucketQuery {
                buckets: (0..rng.below(3))
                    .map(|_| (rng.below(1 << 20) as u32, vec![rng.next_u64()]))
                    .collect(),
            },
            Body::BucketReply {
                entries: vec![arb_entry(rng)],
                want: vec![1, 2],
            },
            Body::Refused {
                reason: Refusal::StaleSender,
                digest: Some(arb_digest(rng)),
            },
        ];
        for body in bodies {
            out.push(encode(&Message {
                cluster: CLUSTER,
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
    fuzz("decode_and_handle", |rng| {
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
    fuzz("topology_parse", |rng| {
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
    fuzz("merge", |rng| {
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
            // A bad key or origin refuses the batch whole; an entry from
            // the future is only held back, and the rest is applied.
            let mut poisoned = false;
            if rng.chance(0.15) {
                let mut bad = arb_entry(rng);
                match rng.below(4) {
                    0 => bad.key = String::new(),
                    1 => bad.key = "x".repeat(1025),
                    2 => bad.version.origin = N + rng.below(5) as u32,
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

// ----- target: HTTP framing ----------------------------------------------

/// The framer's head budget in this target: small, so that mutations
/// reach it.
const FUZZ_HEAD_BUDGET: usize = 512;

fn framing_corpus() -> Vec<Vec<u8>> {
    let get = "GET /livez HTTP/1.1\r\nhost: x\r\n\r\n";
    let put = "PUT /v1/kv/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    let chunked = "POST /v1/peer/message HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let empty = "POST /v1/sync HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    [
        get.repeat(3),
        format!("{put}{get}{put}"),
        format!("{get}{chunked}{get}"),
        format!("{empty}{put}\r\n\r\n{get}"),
        format!("{get}\r\r\n\n{put}"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// What a reader of the framed stream takes for a head's body, as async-h1
/// does: a Content-Length, or no framing when a Transfer-Encoding is there.
fn body_of(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let mut len = Some(0);
    for line in text.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            len = Some(v.trim().parse().unwrap_or(0));
        }
        if line.starts_with("transfer-encoding:") {
            return None;
        }
    }
    len
}

/// One framed part of a stream: a head, a body, or unframed bytes.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Head(Vec<u8>),
    Body(Vec<u8>),
    Rest(Vec<u8>),
}

/// Feeds `input` to a framer in pieces whose sizes `rng` picks, as the
/// listener does; returns the parts handed on and the error that stopped
/// it, if one did.
fn frame_all(input: &[u8], rng: &mut Rng) -> (Vec<Part>, Option<FrameError>) {
    let mut f = Framer::new(FUZZ_HEAD_BUDGET);
    let mut parts: Vec<Part> = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let piece = 1 + rng.below(64) as usize;
        let avail = &input[at..(at + piece).min(input.len())];
        let before = f.phase();
        let n = match f.take(avail) {
            Ok(n) => n,
            Err(e) => return (parts, Some(e)),
        };
        assert!(n <= avail.len(), "handed on {n} of {} bytes", avail.len());
        assert!(
            n > 0,
            "nothing handed on from {before:?} with bytes waiting"
        );
        let bytes = avail[..n].to_vec();
        at += n;
        let open = match (before, parts.last_mut()) {
            (Phase::Head { len, .. }, Some(Part::Head(h))) if len > 0 => Some(h),
            (Phase::Body(_), Some(Part::Body(b))) => Some(b),
            (Phase::Unframed, Some(Part::Rest(r))) => Some(r),
            _ => None,
        };
        match open {
            Some(p) => p.extend_from_slice(&bytes),
            None => parts.push(match before {
                Phase::Head { .. } => Part::Head(bytes),
                Phase::Body(_) => Part::Body(bytes),
                _ => Part::Rest(bytes),
            }),
        }
        if f.phase() == Phase::Parsed {
            let Some(Part::Head(h)) = parts.last() else {
                panic!("a head ended that was not handed on as one");
            };
            f.body(body_of(h));
        }
    }
    (parts, None)
}

fn framing_one(input: &[u8], rng: &mut Rng) {
    let (parts, err) = frame_all(input, rng);
    let handed: Vec<u8> = parts
        .iter()
        .flat_map(|p| match p {
            Part::Head(b) | Part::Body(b) | Part::Rest(b) => b.clone(),
        })
        .collect();
    assert!(
        input.starts_with(&handed),
        "what was handed on is not the input"
    );
    if err.is_none() {
        assert_eq!(handed.len(), input.len(), "bytes were left out");
    }
    let mut body_due: Option<u64> = None;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match p {
            Part::Head(h) => {
                assert!(h.len() <= FUZZ_HEAD_BUDGET, "a head of {} bytes", h.len());
                let end = h.windows(4).position(|w| w == b"\r\n\r\n");
                match end {
                    Some(e) => assert_eq!(e + 4, h.len(), "a head went past its blank line"),
                    None => assert!(last, "a head was cut before its blank line"),
                }
                if end.is_some() {
                    body_due = body_of(h);
                }
            }
            Part::Body(b) => {
                let due = body_due
                    .take()
                    .unwrap_or_else(|| panic!("a body after no head"));
                if last {
                    assert!(b.len() as u64 <= due, "a body longer than its head said");
                } else {
                    assert_eq!(b.len() as u64, due, "a body not as long as its head said");
                }
            }
            Part::Rest(_) => {
                assert_eq!(body_due, None, "unframed bytes after a framed head");
                assert!(last, "anything after unframed bytes");
            }
        }
    }
    if err == Some(FrameError::HeadTooLong) {
        assert!(
            matches!(parts.last(), Some(Part::Head(h)) if h.len() == FUZZ_HEAD_BUDGET),
            "the head budget was hit before the budget"
        );
    }
    assert_ne!(err, Some(FrameError::NotFramed), "the driver always frames");
    // Another split of the same bytes frames them the same.
    let mut other = Rng::new(rng.next_u64());
    let (again, err_again) = frame_all(input, &mut other);
    assert_eq!(
        (shape(&again), err_again),
        (shape(&parts), err),
        "the split changed the framing"
    );
}

/// The shape of a framing: each part's kind and length (the pieces of
/// one part are already joined by [`frame_all`]).
fn shape(parts: &[Part]) -> Vec<(u8, usize)> {
    parts
        .iter()
        .map(|p| match p {
            Part::Head(b) => (0, b.len()),
            Part::Body(b) => (1, b.len()),
            Part::Rest(b) => (2, b.len()),
        })
        .collect()
}

const REGRESSIONS_FRAMING: &[&str] = &[];

#[test]
fn http_framing() {
    for text in REGRESSIONS_FRAMING {
        framing_one(text.as_bytes(), &mut Rng::new(0));
    }
    let corpus = framing_corpus();
    fuzz("http_framing", |rng| {
        let a = pick(rng, &corpus).clone();
        let b = pick(rng, &corpus).clone();
        let input = if rng.chance(0.1) {
            a
        } else {
            mutate(rng, &a, &b)
        };
        framing_one(&input, rng);
    });
}
