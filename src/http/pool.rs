//! The HTTP client's connections: kept alive between requests to a peer,
//! and given back for another request only once a response was read to
//! its end.
//!
//! Why not surf's default client: its pool takes a connection back however
//! the request ended. A request abandoned at its deadline leaves the late
//! answer in the socket, and the next request on that connection reads it
//! (or, after the pool's check swallowed its first four bytes, fails with
//! "invalid HTTP version"), and so on for every request after: one timeout
//! and every later call to that peer failed, a join of 10^7 keys stood
//! still. Here a connection whose response was not read to its end (a
//! deadline, an error, a reply refused unread) is closed, never reused.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use async_std::io::{BufReader, Read};
use async_std::net::TcpStream;
use surf::http::{Body, Request, Response};
use surf::StatusCode;

/// Idle connections kept per peer address; more are closed.
const IDLE_PER_PEER: usize = 16;

/// An HTTP/1.1 client over plain TCP with `TCP_NODELAY` and a pool of
/// kept-alive connections that only a finished exchange returns to.
#[derive(Debug, Default, Clone)]
pub struct PooledClient {
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<TcpStream>>>>,
}

impl PooledClient {
    /// An idle connection to `addr` still open and with nothing unread.
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.get_mut(&addr)?;
        while let Some(c) = conns.pop() {
            if quiet(&c) {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, addr: SocketAddr, conn: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.entry(addr).or_default();
        if conns.len() < IDLE_PER_PEER {
            conns.push(conn);
        }
    }

    /// Idle connections kept, all peers together.
    #[cfg(test)]
    fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    async fn exchange(&self, req: Request) -> Result<Response, surf::Error> {
        let url = req.url().clone();
        if url.scheme() != "http" {
            return Err(surf::Error::from_str(
                StatusCode::BadRequest,
                format!("{url}: only http:// is supported"),
            ));
        }
        let addr = url
            .socket_addrs(|| Some(80))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                surf::Error::from_str(StatusCode::BadRequest, format!("{url}: no address"))
            })?;
        let conn = match self.take(addr) {
            Some(c) => c,
            None => {
                let c = TcpStream::connect(addr).await?;
                c.set_nodelay(true)?;
                c
            }
        };
        let mut res = async_h1::client::connect(conn.clone(), req).await?;
        let close = res
            .header("connection")
            .is_some_and(|v| v.as_str().eq_ignore_ascii_case("close"));
        let len = res.len();
        let body = res.take_body().into_reader();
        let back = (!close).then(|| (self.clone(), addr, conn));
        res.set_body(Body::from_reader(
            BufReader::new(GiveBack {
                body,
                left: len.map(|n| n as u64),
                back,
            }),
            len,
        ));
        Ok(res)
    }
}

/// Whether an idle connection is as it was left: not closed by the peer,
/// and nothing in it to read (an answer nobody asked for would be read as
/// the next one's).
fn quiet(conn: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut c = conn;
    matches!(
        Pin::new(&mut c).poll_read(&mut cx, &mut byte),
        Poll::Pending
    )
}

/// A response body that gives its connection back to the pool when it is
/// read to its end (its length read, or the end of a body of no stated
/// length); dropped before that, it lets the connection close.
struct GiveBack {
    body: Box<dyn async_std::io::BufRead + Unpin + Send + Sync + 'static>,
    /// Bytes of a body of stated length still to be read.
    left: Option<u64>,
    back: Option<(PooledClient, SocketAddr, TcpStream)>,
}

impl GiveBack {
    fn done(&mut self) {
        if let Some((pool, addr, conn)) = self.back.take() {
            pool.give_back(addr, conn);
        }
    }
}

impl Read for GiveBack {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let read = Pin::new(&mut self.body).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(0)) if !buf.is_empty() => self.done(),
            Poll::Ready(Ok(n)) => {
                if let Some(left) = &mut self.left {
                    *left = left.saturating_sub(n as u64);
                    if *left == 0 {
                        self.done();
                    }
                }
            }
            _ => {}
        }
        read
    }
}

impl surf::HttpClient for PooledClient {
    fn send<'life0, 'async_trait>(
        &'life0 self,
        req: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, surf::Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.exchange(req))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader as StdBufReader, Write as _};
    use std::net::TcpListener;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::Duration;

    use super::*;

    /// A server that answers each request with its path as the body, at
    /// once, except `/late`, answered only when told to (and says when it
    /// has); it reports each connection it accepts.
    fn server(release: Receiver<()>, written: Sender<()>, accepted: Sender<()>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let _ = accepted.send(());
                let mut reader = StdBufReader::new(conn.try_clone().expect("clone"));
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    // The rest of the head: these requests have no body.
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    if path == "/late" && release.recv_timeout(Duration::from_secs(10)).is_err() {
                        return;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                        path.len()
                    );
                    if conn.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                    if path == "/late" {
                        let _ = written.send(());
                    }
                }
            }
        });
        addr
    }

    async fn get(client: &surf::Client, addr: SocketAddr, path: &str) -> Result<String, String> {
        let mut res = client
            .get(format!("http://{addr}{path}"))
            .await
            .map_err(|e| e.to_string())?;
        res.body_string().await.map_err(|e| e.to_string())
    }

    #[test]
    fn an_answer_that_came_too_late_is_never_read_as_the_next_one() {
        let (release_tx, release) = channel();
        let (written, written_rx) = channel();
        let (accepted, accepted_rx) = channel();
        let addr = server(release, written, accepted);
        let pool = PooledClient::default();
        let client = surf::Client::with_http_client(pool.clone());
        async_std::task::block_on(async {
            // A kept-alive exchange gives its connection back, and the next
            // request takes it.
            assert_eq!(get(&client, addr, "/one").await.as_deref(), Ok("/one"));
            assert_eq!(pool.idle(), 1);
            assert_eq!(get(&client, addr, "/two").await.as_deref(), Ok("/two"));
            // A request abandoned at its deadline; its answer comes after.
            let late =
                async_std::future::timeout(Duration::from_millis(50), get(&client, addr, "/late"));
            assert!(late.await.is_err(), "the late request timed out");
            release_tx.send(()).expect("release");
            written_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the late answer was written");
            // The next request must get its own answer, not that one.
            assert_eq!(get(&client, addr, "/three").await.as_deref(), Ok("/three"));
        });
        let connections = accepted_rx.try_iter().count();
        assert_eq!(
            connections, 2,
            "one reused connection, then a new one after the abandoned exchange"
        );
    }
}
