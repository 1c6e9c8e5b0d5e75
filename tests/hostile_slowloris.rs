//! Slowloris: more connections than a node serves, each sending one byte
//! of a head a second. The node closes the slowest head to let a new
//! connection in, so `/livez` answers every time, its peers still
//! exchange (none is declared failed, the ring stays a ring), and a write
//! still reaches every node.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::raw::read_answer;
use common::{wait_for, Cluster};
use ringsync::core::Schedule;

/// Attacking connections: more than the node's limit of 512.
const ATTACKERS: usize = 600;

/// Cycle interval: the attack spans about four cycles.
const INTERVAL: &str = "2s";
const ATTACK: Duration = Duration::from_secs(9);

/// `/livez` tries during the attack, one every `TRY_EVERY`.
const TRIES: usize = 20;
const TRY_EVERY: Duration = Duration::from_millis(400);

/// One `/livez` on a new connection: its status, or why none came.
fn livez(addr: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        Duration::from_secs(3),
    )
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    read_answer(&mut s, Duration::from_secs(5)).map(|a| a.status)
}

/// Keeps `ATTACKERS` connections to `addr` open until `stop`, each sent
/// one more byte of an endless head a second; a connection the node
/// closes is opened again. Returns how many were opened in all.
fn slowloris(addr: &str, stop: &AtomicBool, opened: &AtomicUsize) {
    let target = addr.parse().expect("a socket address");
    let open = || {
        let s = TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()?;
        s.set_nonblocking(true).ok()?;
        opened.fetch_add(1, Ordering::Relaxed);
        Some((s, 0usize))
    };
    let head = b"GET /livez HTTP/1.1\r\nx-slow: ";
    let mut conns: Vec<Option<(TcpStream, usize)>> = (0..ATTACKERS).map(|_| open()).collect();
    let until = Instant::now() + ATTACK + Duration::from_secs(30);
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let tick = Instant::now();
        for c in conns.iter_mut() {
            let sent = match c {
                Some((s, at)) => {
                    let byte = head.get(*at).copied().unwrap_or(b'a');
                    let ok = s.write(&[byte]).is_ok_and(|n| n == 1);
                    *at += 1;
                    ok
                }
                None => false,
            };
            if !sent {
                *c = open();
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
        // The attack's own pace: a byte a second per connection.
        if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[test]
fn slow_heads_do_not_keep_peers_or_health_checks_out() {
    let c = Cluster::start(3, Schedule::Successor, INTERVAL, "");
    c.wait_steady(Duration::from_secs(40));
    c.put(0, "before", "1");
    wait_for(
        Duration::from_secs(30),
        "the first write everywhere",
        || {
            let missing: Vec<usize> = (0..3).filter(|&i| c.get(i, "before").is_none()).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("nodes {missing:?} lack it"))
            }
        },
    );
    let before: Vec<_> = (0..3).map(|i| c.data_and_root(i)).collect();
    let addr = c.url(0).trim_start_matches("http://").to_string();

    let stop = AtomicBool::new(false);
    let opened = AtomicUsize::new(0);
    let (answered, failures) = std::thread::scope(|s| {
        let attacker = s.spawn(|| slowloris(&addr, &stop, &opened));
        // Once the attack fills the node's connections with slow heads, as
        // the node sees it: it has evicted one. That the attacker opened
        // them all is not enough: a connection the node has read no byte
        // of yet is no slow head to it, and is not evicted (a /livez made
        // then was refused as one too many, 2 runs in 30 under load).
        wait_for(
            Duration::from_secs(20),
            "node 0 to evict a slow head",
            || match c.try_refused(0, "slow_head_evicted") {
                Ok(n) if n >= 1.0 => Ok(()),
                Ok(_) => Err(format!(
                    "none yet; the attacker opened {}",
                    opened.load(Ordering::Relaxed)
                )),
                Err(e) => Err(e),
            },
        );
        let start = Instant::now();
        let mut answered = 0;
        let mut failures = Vec::new();
        for i in 0..TRIES {
            match livez(&addr) {
                Ok(200) => answered += 1,
                r => failures.push(format!("try {i} at {:?}: {r:?}", start.elapsed())),
            }
            std::thread::sleep(TRY_EVERY);
        }
        // Let the attack run its length while the ring cycles.
        while start.elapsed() < ATTACK {
            std::thread::sleep(Duration::from_millis(100));
        }
        // A write made during the attack reaches every node.
        c.put(1, "during", "2");
        wait_for(
            Duration::from_secs(30),
            "the write made during the attack everywhere",
            || {
                let missing: Vec<usize> =
                    (0..3).filter(|&i| c.get(i, "during").is_none()).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("nodes {missing:?} lack it"))
                }
            },
        );
        for i in 0..3 {
            let st = c.status(i);
            assert_eq!(st["mode"], "ring", "node {i} left the ring: {st}");
            let failed: Vec<String> = st["peers"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["state"] == "failed")
                        .map(|p| p["id"].to_string())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                failed.is_empty(),
                "node {i} declared {failed:?} failed: {st}"
            );
        }
        stop.store(true, Ordering::SeqCst);
        attacker.join().expect("the attacker thread");
        (answered, failures)
    });
    assert_eq!(
        answered, TRIES,
        "/livez answered {answered} of {TRIES} tries under {ATTACKERS} slow connections: {failures:#?}"
    );
    // Nothing changed but the write made during the attack.
    for (i, (_, mut data)) in before.into_iter().enumerate() {
        data.insert("during".into(), Some("2".into()));
        assert_eq!(c.data_and_root(i).1, data, "node {i}'s data");
    }
    let roots: Vec<String> = (0..3).map(|i| c.root(i)).collect();
    assert!(
        roots.iter().all(|r| *r == roots[0]),
        "roots differ: {roots:?}"
    );
}
