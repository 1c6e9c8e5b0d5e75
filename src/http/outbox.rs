//! An answer's writes gathered into one: async-h1 writes a head and its
//! body in two calls, and the second small segment of an answer would wait
//! for the client's delayed ACK (about 40 ms on Linux) wherever Nagle's
//! algorithm still applies; one write per answer also halves the packets.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_std::io::Write;

/// Bytes gathered before they are sent without waiting for the flush: an
/// answer up to this size leaves in one write, a larger one in pieces of
/// at least this size.
pub const OUT_CHUNK: usize = 64 << 10;

/// Capacity kept between answers, so that an idle connection does not
/// hold a large answer's buffer.
const KEEP: usize = 8 << 10;

/// What was written and not sent yet.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    sent: usize,
}

impl Outbox {
    /// Takes `data`, sending first what is held when `data` would take
    /// the held bytes past [`OUT_CHUNK`]; `sent` is told of every byte
    /// that reaches `w`.
    pub fn poll_write<W: Write + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
        sent: &mut impl FnMut(usize),
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + data.len() > OUT_CHUNK {
            ready!(self.poll_send(w, cx, sent))?;
            if data.len() >= OUT_CHUNK {
                let n = ready!(Pin::new(w).poll_write(cx, data))?;
                sent(n);
                return Poll::Ready(Ok(n));
            }
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    /// Sends everything held.
    pub fn poll_send<W: Write + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        sent: &mut impl FnMut(usize),
    ) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            sent(n);
            self.sent += n;
        }
        self.buf.clear();
        self.buf.shrink_to(KEEP);
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(o: &mut Outbox, w: &mut Writes, data: &[u8], total: &mut usize) {
        let got = async_std::task::block_on(std::future::poll_fn(|cx| {
            o.poll_write(w, cx, data, &mut |n| *total += n)
        }));
        assert_eq!(got.ok(), Some(data.len()));
    }

    fn send(o: &mut Outbox, w: &mut Writes, total: &mut usize) {
        let got = async_std::task::block_on(std::future::poll_fn(|cx| {
            o.poll_send(w, cx, &mut |n| *total += n)
        }));
        assert!(got.is_ok());
    }

    #[test]
    fn a_head_and_a_small_body_leave_in_one_write() {
        let (mut o, mut w, mut total) = (Outbox::default(), Writes::default(), 0);
        write(&mut o, &mut w, b"HTTP/1.1 200 OK\r\n\r\n", &mut total);
        write(&mut o, &mut w, b"ok", &mut total);
        assert!(w.0.is_empty(), "nothing leaves before the flush");
        send(&mut o, &mut w, &mut total);
        assert_eq!(w.0, vec![b"HTTP/1.1 200 OK\r\n\r\nok".to_vec()]);
        assert_eq!(total, 21);
    }

    #[test]
    fn a_large_body_goes_out_in_large_pieces_and_in_order() {
        let (mut o, mut w, mut total) = (Outbox::default(), Writes::default(), 0);
        let big = vec![7u8; OUT_CHUNK * 2];
        write(&mut o, &mut w, b"head", &mut total);
        write(&mut o, &mut w, &big, &mut total);
        write(&mut o, &mut w, b"tail", &mut total);
        send(&mut o, &mut w, &mut total);
        let lens: Vec<usize> = w.0.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![4, OUT_CHUNK * 2, 4]);
        assert_eq!(w.0.concat().len(), total);
    }
}
