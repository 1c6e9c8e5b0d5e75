//! A man in the middle between two nodes cannot answer for one of them:
//! a reply altered on the way, stripped of its signature, or replaced by a
//! forged one (entries to inject, a GC floor that would make the node wipe
//! itself) is refused and counted, and no node's data moves. Nor can it
//! make a node read a reply of any length.
//!
//! Node n0 is a real process. The topology puts n1 at an address where
//! this test's proxy listens; n1 itself runs in this process (the same
//! code a node process runs: store, core, gate, routes) on another port,
//! behind the proxy. Every request n0 sends n1 crosses the proxy, and
//! every reply comes back through it.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{message_from, now_ms, read_answer, read_request, Answer, ANSWER_DEADLINE};
use common::{wait_for, wait_until, BIN, READY_DEADLINE, READ_TOKEN, SECRET, WRITE_TOKEN};
use ringsync::auth::{Secrets, HEADER_REPLY_SIGNATURE};
use ringsync::core::entry::{Entry, Version};
use ringsync::core::message::{decode, encode, Body, Digest};
use ringsync::core::Schedule;
use ringsync::http::client::HttpTransport;
use ringsync::proc_cluster::{free_ports, Credentials, ProcCluster, Spec};
use ringsync::service::NodeHandle;
use ringsync::topology::Topology;

/// Short cycles, so that n0 sends n1 a request every few tenths of a
/// second and each phase below sees several of them.
const INTERVAL: &str = "200ms";

/// Longest wait for a phase's effect: many cycles of [`INTERVAL`].
const DEADLINE: Duration = Duration::from_secs(30);

/// Replies refused per phase before its effect is judged: a few cycles'
/// worth, each a chance for a forged reply to do harm.
const REFUSALS_PER_PHASE: f64 = 4.0;

/// A key's value at a node, `None` when it holds none.
type Value = Option<Vec<u8>>;

/// What the proxy does to n1's replies.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Passes them on as they are.
    Pass = 0,
    /// Flips one bit of the body.
    Alter = 1,
    /// Drops the reply signature header.
    Strip = 2,
    /// Replaces the body with a forged message, keeping n1's genuine
    /// reply signature (of the genuine body).
    Forge = 3,
    /// Announces a body of 1 GiB.
    Bloat = 4,
}

/// The body length [`Mode::Bloat`] announces.
const BLOAT: u64 = 1 << 30;

struct Proxy {
    mode: AtomicU8,
    /// Replies it changed.
    tampered: AtomicU64,
    stop: AtomicBool,
    /// The cluster's topology, for forged messages.
    topology: Topology,
    upstream: String,
}

/// A forged answer to n0's peer message: entries for a key nobody wrote
/// and GC floors beyond anything n0 knows, which would make it wipe its
/// data; n1's genuine reply signature goes along.
fn forged_body(p: &Proxy, request: &[u8]) -> Vec<u8> {
    let start = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |e| e + 4);
    let now = now_ms();
    let floor = Version {
        ms: now,
        counter: 0,
        origin: 0,
    };
    let digest = Digest {
        hints: [(0, floor), (1, floor)].into_iter().collect(),
        gc_floors: [(0, floor), (1, Version { origin: 1, ..floor })]
            .into_iter()
            .collect(),
        root: 0x0bad_f00d,
        keys: 1,
        ..Digest::default()
    };
    let entries = vec![Entry {
        key: "forged".into(),
        value: Some(b"by the man in the middle".to_vec()),
        version: Version {
            ms: now - 1_000,
            counter: 0,
            origin: 1,
        },
    }];
    let body = match decode(&request[start..]).map(|m| m.body) {
        Ok(Body::Syn { .. }) => Body::SynAck {
            digest,
            entries,
            complete: true,
        },
        Ok(Body::Fetch { .. }) => Body::Fetched { entries },
        _ => Body::Ack { digest },
    };
    encode(&message_from(&p.topology, 1, body))
}

/// The answer, as the proxy passes it on.
fn rewrite(p: &Proxy, request: &[u8], mut a: Answer) -> Vec<u8> {
    let mode = p.mode.load(Ordering::SeqCst);
    let is_message = request.starts_with(b"POST /v1/peer/message ");
    let changed = if mode == Mode::Alter as u8 && !a.body.is_empty() {
        let last = a.body.len() - 1;
        a.body[last] ^= 1;
        true
    } else if mode == Mode::Strip as u8 {
        a.headers.retain(|(k, _)| k != HEADER_REPLY_SIGNATURE);
        true
    } else if mode == Mode::Forge as u8 && is_message {
        a.body = forged_body(p, request);
        a.status = 200;
        a.headers.retain(|(k, _)| k != "x-ringsync-refused");
        true
    } else {
        false
    };
    if changed {
        p.tampered.fetch_add(1, Ordering::SeqCst);
    }
    let bloat = mode == Mode::Bloat as u8;
    if bloat {
        p.tampered.fetch_add(1, Ordering::SeqCst);
    }
    let length = if bloat { BLOAT } else { a.body.len() as u64 };
    let mut out = format!("HTTP/1.1 {} X\r\n", a.status).into_bytes();
    for (k, v) in &a.headers {
        if k != "content-length" && k != "transfer-encoding" {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(format!("content-length: {length}\r\n\r\n").as_bytes());
    out.extend_from_slice(&a.body);
    out
}

/// Serves one connection of n0's: each request goes to n1 on a fresh
/// connection, its answer comes back as the mode makes it.
fn relay(p: &Proxy, mut down: TcpStream) {
    let _ = down.set_read_timeout(Some(Duration::from_millis(100)));
    while let Some(request) = read_request(&mut down, &p.stop) {
        let Ok(mut up) = TcpStream::connect(&p.upstream) else {
            return;
        };
        let _ = up.set_read_timeout(Some(Duration::from_millis(100)));
        if up.write_all(&request).is_err() {
            return;
        }
        let Ok(answer) = read_answer(&mut up, ANSWER_DEADLINE) else {
            return;
        };
        if down.write_all(&rewrite(p, &request, answer)).is_err() {
            return;
        }
    }
}

/// Accepts connections at `listener` until the proxy stops.
fn run_proxy(p: Arc<Proxy>, listener: TcpListener) {
    let _ = listener.set_nonblocking(true);
    while !p.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let p = Arc::clone(&p);
                std::thread::spawn(move || relay(&p, s));
            }
            // Nothing to accept: look again shortly (the stop flag too).
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Stops the proxy when the test ends, a failing one included.
struct StopOnDrop(Arc<Proxy>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// Node n1, served from this process at `addr` over its data dir.
fn serve_n1(topology: &Path, dir: &Path, addr: String) -> Arc<NodeHandle> {
    let t = Topology::load(topology).expect("the harness's topology");
    let secrets = Secrets::load(&t.cluster, None).expect("the harness's secret");
    assert!(secrets.keyring.is_some(), "n1 must run signed");
    std::fs::create_dir_all(dir).expect("n1's data dir");
    let node =
        NodeHandle::open_with(t, "n1", dir, secrets, Arc::new(HttpTransport)).expect("n1 opens");
    let served = Arc::clone(&node);
    std::thread::spawn(move || {
        let on_bound = {
            let node = Arc::clone(&served);
            Box::new(move || node.ready.store(true, Ordering::SeqCst))
        };
        if let Err(e) =
            async_std::task::block_on(ringsync::http::server::serve(served, addr, on_bound))
        {
            eprintln!("n1 stopped serving: {e}");
        }
    });
    wait_until(READY_DEADLINE, "n1 serves", || node.is_ready());
    node
}

#[test]
fn forged_and_altered_replies_are_refused_and_change_nothing() {
    let spec = Spec {
        extra: "peer_timeout = \"2s\"\nfailure_threshold = 1000\n".into(),
        credentials: Some(Credentials {
            secret: SECRET.into(),
            write_token: WRITE_TOKEN.into(),
            read_token: READ_TOKEN.into(),
        }),
        ready_deadline: READY_DEADLINE,
        call_timeout: Duration::from_secs(10),
        ..Spec::new(
            Path::new(BIN),
            "forged_replies",
            2,
            Schedule::Successor,
            INTERVAL,
        )
    };
    let mut c = ProcCluster::new(&spec).expect("the cluster's folder");
    let n1_addr = c.url(1).trim_start_matches("http://").to_string();
    let real = format!("127.0.0.1:{}", free_ports(1).expect("a free port")[0]);
    let topology = Topology::load(c.topology()).expect("the harness's topology");
    let proxy = Arc::new(Proxy {
        mode: AtomicU8::new(Mode::Pass as u8),
        tampered: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        topology,
        upstream: real.clone(),
    });
    let _stop = StopOnDrop(Arc::clone(&proxy));
    let listener = TcpListener::bind(&n1_addr).expect("the proxy binds n1's address");
    {
        let p = Arc::clone(&proxy);
        std::thread::spawn(move || run_proxy(p, listener));
    }
    let n1 = serve_n1(c.topology(), &c.data_dir(1), real);
    c.spawn(0).expect("n0 starts");
    c.wait_ready(0).expect("n0 ready");

    // Honest replies pass: the keys reach n1 through the proxy.
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    for k in &keys {
        c.put(0, k, format!("v-{k}").as_bytes())
            .expect("a put at n0");
    }
    let same = |c: &ProcCluster| -> Result<(String, String), String> {
        let n0 = c.status(0)?["digest_root"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let n1 = n1.digest().root;
        if n0 == n1 {
            Ok((n0, n1))
        } else {
            Err(format!("n0 root {n0}, n1 root {n1}"))
        }
    };
    let roots = wait_for(DEADLINE, "n1 holds what n0 holds", || same(&c));
    let state = |c: &ProcCluster| -> Vec<(Value, Value)> {
        keys.iter()
            .chain([&"forged".to_string()])
            .map(|k| {
                let a = c.get(0, k).expect("a get at n0");
                let b = n1.get(k).expect("a read at n1").and_then(|e| e.value);
                (a, b)
            })
            .collect()
    };
    let before = state(&c);
    assert_eq!(before[0].0.as_deref(), Some(b"v-k0".as_slice()));
    assert_eq!(before[0].1.as_deref(), Some(b"v-k0".as_slice()));
    let refused = |c: &ProcCluster, reason: &str| {
        c.metric(
            0,
            &format!("ringsync_peer_replies_refused_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused(&c, "bad_signature"), 0.0, "honest replies refused");

    for (mode, reason) in [
        (Mode::Alter, "bad_signature"),
        (Mode::Strip, "missing_signature"),
        (Mode::Forge, "bad_signature"),
        (Mode::Bloat, "too_large"),
    ] {
        let start = refused(&c, reason);
        let tampered = proxy.tampered.load(Ordering::SeqCst);
        proxy.mode.store(mode as u8, Ordering::SeqCst);
        wait_for(DEADLINE, "n0 refuses the tampered replies", || {
            let now = refused(&c, reason);
            let sent = proxy.tampered.load(Ordering::SeqCst) - tampered;
            if now - start >= REFUSALS_PER_PHASE {
                Ok(())
            } else {
                Err(format!(
                    "{} of {sent} tampered replies refused ({reason})",
                    now - start
                ))
            }
        });
        proxy.mode.store(Mode::Pass as u8, Ordering::SeqCst);
        assert_eq!(state(&c), before, "a key moved under a tampered reply");
        assert_eq!(same(&c), Ok(roots.clone()), "a digest root moved");
        assert_eq!(c.metric(0, "ringsync_wipes_total"), Ok(0.0), "n0 wiped");
    }
    assert_eq!(
        n1.get("forged").expect("a read at n1"),
        None,
        "the forged entry spread"
    );
}
