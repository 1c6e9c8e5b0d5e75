//! Requests on a kept-alive connection are answered at once (issue 15):
//! a response written in two pieces without `TCP_NODELAY` waits for the
//! client's delayed ACK (about 40 ms on Linux) before its second piece
//! leaves, and a request sent by a client in two pieces waits for the
//! server's. The node is served from this process, over memory, so that
//! no fsync is timed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_ports, wait_until, READY_DEADLINE};
use ringsync::auth::Secrets;
use ringsync::service::handle::AnyStore;
use ringsync::service::transport::Offline;
use ringsync::service::NodeHandle;
use ringsync::store::MemoryStore;
use ringsync::topology::Topology;

/// Requests timed per connection.
const REQUESTS: usize = 50;

/// The median a kept-alive request may take: a local round trip is well
/// under a millisecond even in a debug build on a loaded machine, and a
/// delayed-ACK stall is about 40 ms.
const P50_LIMIT: Duration = Duration::from_millis(20);

/// Longest wait for one answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// Node `a` of a two-node open ring, served from this process at the
/// address it returns.
fn serve() -> (Arc<NodeHandle>, String) {
    let ports = free_ports(2);
    let addr = format!("127.0.0.1:{}", ports[0]);
    let text = format!(
        "[cluster]\nname = \"keepalive\"\n[[node]]\nid = \"a\"\naddr = \"{addr}\"\n[[node]]\nid = \"b\"\naddr = \"127.0.0.1:{}\"\n",
        ports[1]
    );
    let topology = Topology::parse(&text, "<keepalive>", None).expect("the test's topology");
    let store: AnyStore = Box::new(MemoryStore::new());
    let node = NodeHandle::new(topology, "a", store, Secrets::default(), Arc::new(Offline))
        .expect("node a opens");
    let served = Arc::clone(&node);
    let at = addr.clone();
    std::thread::spawn(move || {
        let on_bound = {
            let node = Arc::clone(&served);
            Box::new(move || node.ready.store(true, Ordering::SeqCst))
        };
        if let Err(e) =
            async_std::task::block_on(ringsync::http::server::serve(served, at, on_bound))
        {
            eprintln!("node a stopped serving: {e}");
        }
    });
    wait_until(READY_DEADLINE, "node a serves", || node.is_ready());
    (node, addr)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Reads one answer off a kept-alive connection: its status and body.
fn read_answer(r: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut status = 0;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("an answer's head");
        assert!(n > 0, "the connection closed before an answer");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if status == 0 {
            status = l
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("a status line");
        } else if let Some((k, v)) = l.split_once(':') {
            assert!(
                !k.eq_ignore_ascii_case("transfer-encoding"),
                "a /livez answer has a length"
            );
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().expect("a content-length");
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("the answer's body");
    (status, body)
}

/// The median time of [`REQUESTS`] requests `request` (one write each)
/// on one kept-alive connection to `addr`, each answered `want`.
fn kept_alive_p50(addr: &str, request: &[u8], want: u16) -> (Duration, Vec<Duration>) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(ANSWER_DEADLINE))
        .expect("a read timeout");
    let mut w = stream.try_clone().expect("a second handle");
    let mut r = BufReader::new(stream);
    let mut times = Vec::new();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        w.write_all(request).expect("send");
        let (status, _) = read_answer(&mut r);
        times.push(t.elapsed());
        assert_eq!(status, want, "{}", String::from_utf8_lossy(request));
    }
    (median(times.clone()), times)
}

#[test]
fn kept_alive_livez_is_answered_without_a_delayed_ack_stall() {
    let (_node, addr) = serve();
    let (p50, times) = kept_alive_p50(
        &addr,
        b"GET /livez HTTP/1.1\r\nhost: keepalive\r\n\r\n",
        200,
    );
    assert!(
        p50 <= P50_LIMIT,
        "p50 of {REQUESTS} kept-alive GET /livez is {p50:?}, over {P50_LIMIT:?} (times: {times:?})"
    );
}

#[test]
fn kept_alive_peer_posts_are_answered_without_a_delayed_ack_stall() {
    let (_node, addr) = serve();
    // Not a message the core can read: it answers with its refusal (400
    // and the encoded refusal), as fast as it answers anything.
    let body = [0xffu8; 200];
    let mut request = format!(
        "POST /v1/peer/message HTTP/1.1\r\nhost: keepalive\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (p50, times) = kept_alive_p50(&addr, &request, 400);
    assert!(
        p50 <= P50_LIMIT,
        "p50 of {REQUESTS} kept-alive peer POSTs is {p50:?}, over {P50_LIMIT:?} (times: {times:?})"
    );
}
