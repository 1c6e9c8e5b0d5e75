//! Requests on a kept-alive connection are answered at once (issue 15):
//! a response written in two pieces without `TCP_NODELAY` waits for the
//! client's delayed ACK (about 40 ms on Linux) before its second piece
//! leaves, and a request sent by a client in two pieces waits for the
//! server's. The node is served from this process, over memory, so that
//! no fsync is timed.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_ports, wait_until, READY_DEADLINE};
use ringsync::auth::Secrets;
use ringsync::bench::put::{KeptAlive, LIVEZ};
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

/// The median time of [`REQUESTS`] requests `request` on one kept-alive
/// connection to `addr`, each answered `want`; and all the times.
fn kept_alive_p50(addr: &str, request: &[u8], want: u16) -> (Duration, Vec<Duration>) {
    let mut conn = KeptAlive::connect(addr).expect("connect");
    let mut times = Vec::new();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let (status, _) = conn.call(request).expect("an answer");
        times.push(t.elapsed());
        assert_eq!(status, want, "{}", String::from_utf8_lossy(request));
    }
    (median(times.clone()), times)
}

#[test]
fn kept_alive_livez_is_answered_without_a_delayed_ack_stall() {
    let (_node, addr) = serve();
    let (p50, times) = kept_alive_p50(&addr, LIVEZ, 200);
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
