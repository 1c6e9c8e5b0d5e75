use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::net::{TcpListener, TcpStream};

use super::{Entered, HeadState, Limits, Slot, EVICTION_SLACK, EVICTION_WAIT, MAX_CONNECTIONS};

/// A connection's state as the limits see it: in the middle of a head or
/// not, and closing once marked so.
struct Head {
    mid: bool,
    closing: AtomicBool,
    deadline: Instant,
}

impl HeadState for Head {
    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn mid_head(&self) -> bool {
        self.mid
    }

    fn deadline(&self) -> Option<Instant> {
        self.mid.then_some(self.deadline)
    }
}

fn head(mid: bool) -> Arc<dyn HeadState> {
    Arc::new(Head {
        mid,
        closing: AtomicBool::new(false),
        deadline: Instant::now() + Duration::from_secs(10),
    })
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// The server's end of a loopback connection, and the client's, which
/// must stay open. Every entry below shares it: `Limits` only shuts a
/// socket down and asks its peer's address.
async fn socket() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (server, client)
}

/// A connection that has sent the first byte of a head and no more.
fn slow_head() -> Arc<dyn HeadState> {
    head(true)
}

/// The limit, filled with slow heads: their slots.
fn full(limits: &Arc<Limits>, server: &TcpStream) -> Vec<Slot> {
    (0..MAX_CONNECTIONS)
        .map(
            |i| match Limits::enter(limits, loopback(), &slow_head(), server) {
                Entered::Yes(slot) => slot,
                _ => panic!("connection {i} of {MAX_CONNECTIONS} was not let in"),
            },
        )
        .collect()
}

/// A burst of new connections at the limit, each closing a slow head whose
/// task has not ended yet: they fill the slack. Returns the closed ones'
/// slots and the rest, and the newcomers'.
async fn burst(
    limits: &Arc<Limits>,
    server: &TcpStream,
    slots: Vec<Slot>,
) -> (Vec<Slot>, Vec<Slot>, Vec<Slot>) {
    let mut newcomers = Vec::new();
    for i in 0..EVICTION_SLACK {
        match Limits::admit(limits, loopback(), &head(false), server).await {
            Entered::Evicting(slot, _) => newcomers.push(slot),
            Entered::Yes(_) => panic!("newcomer {i} let in at the limit without a closing"),
            Entered::No(why) => panic!("newcomer {i} of the slack refused: {why}"),
        }
    }
    let (closed, live): (Vec<Slot>, Vec<Slot>) = slots
        .into_iter()
        .partition(|s| !limits.opened().contains_key(&s.id));
    assert_eq!(closed.len(), EVICTION_SLACK);
    (closed, live, newcomers)
}

#[async_std::test]
async fn past_the_slack_a_newcomer_waits_for_the_closed_connections_to_end() {
    // Found by tests/hostile_slowloris.rs under load: the attack reconnects
    // what was closed in bursts of about 90, the accept loop took the
    // whole burst before any closed connection's task ran, and a /livez
    // that came with it was refused though slow heads were there to close.
    let (server, _client) = socket().await;
    let limits = Arc::new(Limits::default());
    let slots = full(&limits, &server);
    let (closed, _live, _newcomers) = burst(&limits, &server, slots).await;
    // The closed connections' tasks run a moment later.
    let ending = async_std::task::spawn(async move {
        async_std::task::sleep(Duration::from_millis(50)).await;
        drop(closed);
    });
    let started = Instant::now();
    let entered = Limits::admit(&limits, loopback(), &slow_head(), &server).await;
    ending.await;
    match entered {
        Entered::Evicting(..) => {}
        Entered::Yes(_) => panic!("let in at the limit without a closing"),
        Entered::No(why) => panic!("refused: {why}"),
    }
    assert!(started.elapsed() < EVICTION_WAIT, "{:?}", started.elapsed());
}

#[async_std::test]
async fn the_wait_is_bounded_when_closed_connections_never_end() {
    let (server, _client) = socket().await;
    let limits = Arc::new(Limits::default());
    let slots = full(&limits, &server);
    let (_closed, _live, _newcomers) = burst(&limits, &server, slots).await;
    let started = Instant::now();
    let entered = Limits::admit(&limits, loopback(), &slow_head(), &server).await;
    assert!(
        matches!(entered, Entered::No(_)),
        "let in past the slack with every closed connection still open"
    );
    let waited = started.elapsed();
    assert!(
        waited >= EVICTION_WAIT && waited < EVICTION_WAIT * 5,
        "{waited:?}"
    );
}
