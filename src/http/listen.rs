//! The listener: accepts connections and serves each with async-h1, with
//! the limits tide's own listener lacks.
//!
//! - **Connections**: at most [`MAX_CONNECTIONS`] at once, and at most
//!   [`MAX_CONNECTIONS_PER_IP`] from one address other than loopback (a
//!   node's peers and its local tools all come from 127.0.0.1 in a test,
//!   and the total still bounds them). At the total, the connection that
//!   has waited longest in the middle of a head is closed to let the new
//!   one in (`slow_head_evicted`): a slowloris holds its places with heads
//!   that never end, which no well-behaved client sends. Past that, or the
//!   per-address limit, a connection is closed at once, and counted as
//!   `too_many_connections` ([`super::limits`]).
//! - **Time**: a client has `request_timeout` (topology, default 10 s) from
//!   the end of one answer to send the whole head of its next request, idle
//!   time included; past it the connection is closed, with a 408 if part of
//!   a head had come. Bodies get the same time in the gate (`server.rs`).
//!   async-h1 would otherwise wait 60 s for a head, and forever for the
//!   rest of a body it discards.
//! - **Head size**: async-h1 checks a head's length only at each line's
//!   end, so one endless line would grow its buffer without bound; reading
//!   stops past [`HEAD_BUDGET`] bytes of a head, and the client gets 431.
//! - **Pipelining**: the socket is read here, and async-h1 is handed no
//!   byte past the request it reads ([`super::framing`]), since it drops
//!   its buffer after each request with whatever it held of the next.
//!
//! - **Writes**: every socket has `TCP_NODELAY`, and an answer's head and
//!   body leave in one write ([`super::outbox`]): a kept-alive client
//!   otherwise waited for its own delayed ACK, 40 ms, on every answer.
//!
//! A request whose answer says `connection: close` (the gate's refusals,
//! made before a body is read) ends the connection at once: the rest of
//! its body is not read.
//!
//! The bytes of peer connections are counted as they cross the socket
//! ([`super::edge::PeerWire`]). A connection is a peer's when its first
//! request is to `/v1/peer/`: a node's peer client sends nothing else on
//! its connections, and operators' tools nothing of the kind.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::{TcpListener, TcpStream};

use super::edge::{Edge, PeerWire};
use super::framing::{FrameError, Framer, Phase};
use super::limits::{Entered, HeadState, Limits};
pub use super::limits::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP};
use super::outbox::Outbox;
use crate::service::now_ms;

/// Bytes of a head handed to async-h1 before it must be complete: more
/// than the 8 KiB async-h1 allows, so that its own check (at a line's end)
/// answers first when it can.
pub const HEAD_BUDGET: usize = 16 << 10;

/// Bytes read from the socket at once, ahead of async-h1.
const READ_CHUNK: usize = 8 << 10;

/// Time given to a refused request's answer to be written before the
/// connection closes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Longest the watchdog sleeps between looks at a connection's deadline.
const WATCH_TICK: Duration = Duration::from_secs(1);

/// Bytes, and time, spent reading what a client still sends after it was
/// refused, so that the close does not reset the connection before the
/// client has read the answer.
const LINGER_BYTES: usize = 64 << 10;
const LINGER: Duration = Duration::from_secs(1);

/// Binds `addr`, calls `on_bound` once bound, then serves `app` until the
/// process ends.
pub async fn serve(
    app: tide::Server<Arc<Edge>>,
    edge: Arc<Edge>,
    addr: &str,
    on_bound: impl FnOnce(),
) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    on_bound();
    let limits = Arc::new(Limits::default());
    let timeout = edge.node.topology().cluster.request_timeout;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, mostly: wait for some to be freed.
                log::warn!("accepting a connection failed: {e}; pausing 100 ms");
                async_std::task::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::new(State::new(timeout));
        let head: Arc<dyn HeadState> = state.clone();
        let entered = Limits::admit(&limits, peer.ip(), &head, &stream).await;
        let slot = match entered {
            Entered::Yes(slot) => slot,
            Entered::Evicting(slot, victim) => {
                edge.refusals.note(
                    "slow_head_evicted",
                    &format!("{victim}: closed at the limit of {MAX_CONNECTIONS} connections to let {peer} in: it had sent part of a head and nothing more for longest"),
                    now_ms(),
                );
                slot
            }
            Entered::No(why) => {
                edge.refusals.note(
                    "too_many_connections",
                    &format!("a connection from {peer} (at the limit of {MAX_CONNECTIONS} in all, {MAX_CONNECTIONS_PER_IP} per address): {why}"),
                    now_ms(),
                );
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
        };
        let app = app.clone();
        let edge = Arc::clone(&edge);
        async_std::task::spawn(async move {
            connection(app, edge, stream, state, peer, timeout).await;
            drop(slot);
        });
    }
}

/// What a connection's bytes count as, known from its first request.
const UNSEEN: u8 = 0;
const PEER: u8 = 1;
const OTHER: u8 = 2;

/// Where a connection is: between requests (reading a head, or idle) with
/// a deadline, or inside a request (the gate and handler time themselves);
/// and whose it is, for the count of its bytes.
pub(super) struct State {
    in_request: AtomicBool,
    head_bytes: AtomicUsize,
    /// The connection is to end: a refusal's answer, or closed to make room.
    pub(super) closing: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    class: AtomicU8,
    /// Bytes read and written before the first request showed the class.
    unseen: [AtomicU64; 2],
    /// What came from the socket and was not handed to async-h1 yet, and
    /// where its requests end.
    inbox: Mutex<Inbox>,
    /// What async-h1 wrote of the answer and was not sent yet.
    outbox: Mutex<Outbox>,
}

/// Bytes read from the socket ahead of async-h1, handed on as the
/// [`Framer`] allows.
struct Inbox {
    framer: Framer,
    /// [`READ_CHUNK`] bytes, zeroed once: a read fills it from the front.
    buf: Vec<u8>,
    start: usize,
    /// Where what the last read brought ends.
    end: usize,
}

impl State {
    pub(super) fn new(timeout: Duration) -> State {
        State {
            in_request: AtomicBool::new(false),
            head_bytes: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            deadline: Mutex::new(Some(Instant::now() + timeout)),
            class: AtomicU8::new(UNSEEN),
            unseen: [AtomicU64::new(0), AtomicU64::new(0)],
            inbox: Mutex::new(Inbox {
                framer: Framer::new(HEAD_BUDGET),
                buf: vec![0; READ_CHUNK],
                start: 0,
                end: 0,
            }),
            outbox: Mutex::new(Outbox::default()),
        }
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `n` bytes read (`written` false) or written: to `wire` on a
    /// peer connection, held while the class is not known yet. async-h1
    /// reads, calls the handler and writes from one task per connection,
    /// so no count runs while the class is being set.
    fn count(&self, wire: &PeerWire, n: usize, written: bool) {
        let n = n as u64;
        match self.class.load(Ordering::SeqCst) {
            PEER if written => wire.sent.fetch_add(n, Ordering::Relaxed),
            PEER => wire.received.fetch_add(n, Ordering::Relaxed),
            OTHER => 0,
            _ => self.unseen[usize::from(written)].fetch_add(n, Ordering::Relaxed),
        };
    }

    /// The first request's path decides the class; a peer connection's
    /// bytes so far are counted then.
    fn class_by(&self, wire: &PeerWire, path: &str) {
        let class = if path.starts_with("/v1/peer/") {
            PEER
        } else {
            OTHER
        };
        let first = self
            .class
            .compare_exchange(UNSEEN, class, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first && class == PEER {
            let read = self.unseen[0].swap(0, Ordering::Relaxed);
            let written = self.unseen[1].swap(0, Ordering::Relaxed);
            wire.received.fetch_add(read, Ordering::Relaxed);
            wire.sent.fetch_add(written, Ordering::Relaxed);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_deadline(&self, d: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// async-h1 has parsed a head whose body is `len` bytes long (`None`:
    /// chunked): from here the framer hands on that body, then the next
    /// head.
    fn begin_request(&self, len: Option<u64>) {
        self.inbox().framer.body(len);
        self.head_bytes.store(0, Ordering::SeqCst);
        self.set_deadline(None);
        self.in_request.store(true, Ordering::SeqCst);
    }

    /// Whether the connection must end after this request (a body the
    /// framer cannot find the end of).
    fn must_close(&self) -> bool {
        self.inbox().framer.ends_connection()
    }

    fn end_request(&self, close: bool, timeout: Duration) {
        self.closing.store(close, Ordering::SeqCst);
        self.in_request.store(false, Ordering::SeqCst);
        self.set_deadline(Some(
            Instant::now() + if close { CLOSE_GRACE } else { timeout },
        ));
    }

    /// A head had begun to arrive, and no request is being served.
    fn mid_head(&self) -> bool {
        if self.in_request.load(Ordering::SeqCst) {
            return false;
        }
        let inbox = self.inbox();
        match inbox.framer.phase() {
            Phase::Head { len, .. } => len > 0 || inbox.start < inbox.end,
            // A head async-h1 could not take.
            Phase::Parsed => true,
            Phase::Body(_) | Phase::Unframed => false,
        }
    }

    /// Test only: the first byte of a head has come and been read.
    #[cfg(test)]
    pub(super) fn head_begun(&self) {
        let mut inbox = self.inbox();
        inbox.buf[0] = b'G';
        inbox.end = 1;
    }
}

impl HeadState for State {
    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn mid_head(&self) -> bool {
        State::mid_head(self)
    }

    fn deadline(&self) -> Option<Instant> {
        State::deadline(self)
    }
}

/// The socket as async-h1 sees it: hands on no byte past the request being
/// read (see [`Framer`]), refuses to read an endless head, reads nothing
/// more once the answer says close, and counts a peer connection's bytes.
#[derive(Clone)]
struct Conn {
    stream: TcpStream,
    state: Arc<State>,
    edge: Arc<Edge>,
}

impl async_std::io::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.closing.load(Ordering::SeqCst) || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inbox = this.state.inbox();
        if inbox.start == inbox.end {
            let Inbox { buf: mine, .. } = &mut *inbox;
            match Pin::new(&mut this.stream).poll_read(cx, mine) {
                Poll::Ready(Ok(n)) => {
                    inbox.end = n;
                    inbox.start = 0;
                    this.state.count(&this.edge.peer_wire, n, false);
                    if n == 0 {
                        return Poll::Ready(Ok(0));
                    }
                }
                other => {
                    inbox.end = 0;
                    inbox.start = 0;
                    return other;
                }
            }
        }
        let Inbox {
            framer,
            buf: mine,
            start,
            end,
        } = &mut *inbox;
        let avail = &mine[*start..*end];
        let avail = &avail[..avail.len().min(buf.len())];
        let n = match framer.take(avail) {
            Ok(n) => n,
            Err(FrameError::HeadTooLong) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too long",
                )))
            }
            Err(FrameError::NotFramed) => {
                return Poll::Ready(Err(io::Error::other(
                    "a read before the request's body length was known",
                )))
            }
        };
        buf[..n].copy_from_slice(&avail[..n]);
        *start += n;
        let head = framer.head_len();
        drop(inbox);
        this.state.head_bytes.store(head, Ordering::SeqCst);
        Poll::Ready(Ok(n))
    }
}

impl async_std::io::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let (state, wire) = (&this.state, &this.edge.peer_wire);
        let mut out = state.outbox.lock().unwrap_or_else(|p| p.into_inner());
        out.poll_write(&mut this.stream, cx, buf, &mut |n| {
            state.count(wire, n, true)
        })
    }

    // async-h1 flushes once an answer is written whole: it leaves then.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (state, wire) = (&this.state, &this.edge.peer_wire);
        let mut out = state.outbox.lock().unwrap_or_else(|p| p.into_inner());
        std::task::ready!(out.poll_send(&mut this.stream, cx, &mut |n| state.count(wire, n, true)))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// Resolves when the connection's deadline passes.
async fn watchdog(state: Arc<State>) {
    loop {
        let wait = match state.deadline() {
            None => WATCH_TICK,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return;
                }
                (d - now).min(WATCH_TICK)
            }
        };
        async_std::task::sleep(wait).await;
    }
}

/// Runs `a` and `b` together: `Some(a's output)` if `a` ends first,
/// `None` if `b` does (and `a` is dropped).
async fn first<T>(a: impl Future<Output = T>, b: impl Future<Output = ()>) -> Option<T> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if b.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The request's Transfer-Encoding when it is anything but `chunked` alone:
/// the one coding HTTP/1.1 requires and this server reads. async-h1 would
/// take another (`gzip, chunked`, `identity`) for no body at all, and then
/// read the body's bytes as the next request.
fn unsupported_coding(req: &tide::http::Request) -> Option<String> {
    let te = req.header("transfer-encoding")?;
    let all = te.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
    if all.trim().eq_ignore_ascii_case("chunked") {
        None
    } else {
        Some(all)
    }
}

async fn connection(
    app: tide::Server<Arc<Edge>>,
    edge: Arc<Edge>,
    stream: TcpStream,
    state: Arc<State>,
    peer: SocketAddr,
    timeout: Duration,
) {
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY on the connection from {peer}: {e}");
    }
    let conn = Conn {
        stream: stream.clone(),
        state: Arc::clone(&state),
        edge: Arc::clone(&edge),
    };
    let local = stream.local_addr().ok();
    let st = Arc::clone(&state);
    let counted = Arc::clone(&edge);
    let serve = async_h1::accept(conn, move |mut req| {
        let app = app.clone();
        let st = Arc::clone(&st);
        st.class_by(&counted.peer_wire, req.url().path());
        // async-h1 calls this as soon as it has parsed the head, before it
        // reads any of the body: the framer learns the body's length here.
        st.begin_request(req.len().map(|n| n as u64));
        let counted = Arc::clone(&counted);
        async move {
            req.set_peer_addr(Some(peer));
            req.set_local_addr(local);
            let res: tide::http::Result<tide::http::Response> = match unsupported_coding(&req) {
                // Answered before any body byte is read, and the connection
                // closed: what follows the head cannot be framed, so it must
                // never be parsed as the next request.
                Some(coding) => {
                    let message = format!(
                        "Transfer-Encoding {coding:?} is not supported: send the body with Content-Length, or chunked alone"
                    );
                    counted.refusals.note(
                        "unsupported_transfer_encoding",
                        &format!("{peer}: {message}"),
                        now_ms(),
                    );
                    let mut res: tide::Response = super::edge::error(
                        tide::StatusCode::NotImplemented,
                        "unsupported_transfer_encoding",
                        message,
                    );
                    res.insert_header("connection", "close");
                    Ok(res.into())
                }
                None => app.respond(req).await,
            };
            let mut res = res;
            if st.must_close() {
                if let Ok(r) = res.as_mut() {
                    r.insert_header("connection", "close");
                }
            }
            let close = res.as_ref().map_or(true, |r| {
                r.header("connection")
                    .is_some_and(|c| c.as_str().eq_ignore_ascii_case("close"))
            });
            st.end_request(close, timeout);
            res
        }
    });
    let refuse = match first(serve, watchdog(Arc::clone(&state))).await {
        Some(Ok(())) => None,
        Some(Err(e)) if state.mid_head() => {
            let too_long = state.head_bytes.load(Ordering::SeqCst) >= HEAD_BUDGET
                || e.to_string().contains("8kb");
            Some(if too_long {
                (
                    431,
                    "Request Header Fields Too Large",
                    "head_too_large",
                    "the request head is longer than 8 KiB (a key in the path is at most 1 KiB)"
                        .to_string(),
                )
            } else {
                (
                    400,
                    "Bad Request",
                    "bad_request",
                    format!("the request could not be read as HTTP/1.1: {e}"),
                )
            })
        }
        Some(Err(e)) => {
            log::debug!("connection from {peer} ended: {e}");
            None
        }
        None if state.mid_head() => Some((
            408,
            "Request Timeout",
            "head_timeout",
            format!(
                "the request head did not arrive within {}",
                humantime::format_duration(timeout)
            ),
        )),
        // Idle past the deadline, or an answer that was not taken.
        None => None,
    };
    let mut stream = stream;
    if let Some((status, text, reason, message)) = refuse {
        edge.refusals
            .note(reason, &format!("{peer}: {message}"), now_ms());
        let body = serde_json::json!({ "error": message, "reason": reason }).to_string();
        let head = format!(
            "HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\nx-ringsync-reason: {reason}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let answer = head + &body;
        let _ = async_std::future::timeout(CLOSE_GRACE, stream.write_all(answer.as_bytes())).await;
    }
    linger(&mut stream).await;
}

/// Closes our side, then reads (and drops) what the client still sends
/// for a moment, so that it gets our last answer before the socket goes.
async fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut read = 0usize;
    let _ = async_std::future::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_mid_head_from_the_first_byte_of_a_head_until_a_request() {
        let s = State::new(Duration::from_secs(10));
        assert!(!HeadState::mid_head(&s), "a new connection is not mid-head");
        s.head_begun();
        assert!(HeadState::mid_head(&s));
        s.begin_request(Some(0));
        assert!(!HeadState::mid_head(&s), "a request is being served");
        assert!(!HeadState::is_closing(&s));
        HeadState::close(&s);
        assert!(HeadState::is_closing(&s));
    }
}
