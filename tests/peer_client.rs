//! The peer client after a timeout: a request cut by its timeout must not
//! leave its answer for the next request on the same kept-alive
//! connection to read as its own.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw::read_request;
use ringsync::http::client::post_peer;
use ringsync::service::transport::Call;

/// How long the server holds its answer to a request whose body is
/// `slow`: well past the first call's timeout.
const HOLD: Duration = Duration::from_millis(1500);

/// Answers each request on `s` with its own body, holding the answer to
/// `slow` for [`HOLD`].
fn echo(mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    while let Some(request) = read_request(&mut s, stop) {
        let body = match request.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => request[end + 4..].to_vec(),
            None => return,
        };
        if body == b"slow" {
            std::thread::sleep(HOLD);
        }
        let mut answer =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(&body);
        if s.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Stops the server's threads when the test ends, also on failure.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_request_cut_by_its_timeout_leaves_no_answer_for_the_next() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Stop(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&stop.0);
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || echo(s, &flag));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let call = |timeout| Call {
        addr: &addr,
        to: "n1",
        timeout,
        signer: None,
        max_reply: 1 << 20,
        reply_keys: Default::default(),
    };
    async_std::task::block_on(async {
        // A warm connection first, so that the pool has one to hand out.
        let warm = post_peer(call(Duration::from_secs(5)), b"warm".to_vec()).await;
        assert_eq!(warm.expect("an answer"), b"warm");
        let cut = post_peer(call(Duration::from_millis(200)), b"slow".to_vec()).await;
        assert!(cut.is_err(), "answered within its timeout: {cut:?}");
        for i in 0..3 {
            let body = format!("fast {i}").into_bytes();
            let got = post_peer(call(Duration::from_secs(5)), body.clone()).await;
            assert_eq!(
                got.as_deref().map(String::from_utf8_lossy),
                Ok(String::from_utf8_lossy(&body)),
                "request {i} after the cut one read another's answer"
            );
        }
    });
}
