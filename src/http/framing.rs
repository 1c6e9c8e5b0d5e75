//! Where one request ends and the next begins on a connection: the
//! listener hands async-h1 no byte past the end of the request it is
//! reading, so that pipelined requests are not lost in its buffers.
//!
//! async-h1 reads each request through a fresh 8 KiB buffer and drops it
//! afterwards, with whatever it held of the requests behind. [`Framer`]
//! says how many of the bytes that have come may be handed on: in a head,
//! up to and including the first `\r\n\r\n` (where async-h1 ends a head);
//! in a body of known length, up to its end; a chunked body it does not
//! frame, and the connection closes after that request. It is sans-IO, so
//! the fuzz target `http_framing` drives it directly.

/// The end of a head, as async-h1 finds it.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Where the connection is, as far as framing goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading a head, not yet at its closing blank line.
    Head {
        /// Bytes of the head handed on so far.
        len: usize,
        /// How much of `\r\n\r\n` the last bytes matched.
        matched: u8,
    },
    /// The head is complete and async-h1 has not said how long its body
    /// is: nothing more is handed on until [`Framer::body`].
    Parsed,
    /// Reading a body: this many bytes of it are still to come.
    Body(u64),
    /// A body whose end only its own coding shows (chunked): everything
    /// is handed on, and the connection ends with this request.
    Unframed,
}

/// Why bytes cannot be handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The head grew past the budget without ending.
    HeadTooLong,
    /// A read came while the framer waits for the body's length: a bug in
    /// the caller, answered with an error rather than a guess.
    NotFramed,
}

/// The framing state of one connection; see the module docs.
#[derive(Clone, Debug)]
pub struct Framer {
    phase: Phase,
    head_budget: usize,
}

impl Framer {
    /// A framer at the start of a connection, allowing heads of at most
    /// `head_budget` bytes.
    pub fn new(head_budget: usize) -> Framer {
        Framer {
            phase: Phase::Head { len: 0, matched: 0 },
            head_budget,
        }
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes of the current head handed on so far (0 outside a head).
    pub fn head_len(&self) -> usize {
        match self.phase {
            Phase::Head { len, .. } => len,
            _ => 0,
        }
    }

    /// How many bytes at the start of `avail` (what has come and was not
    /// handed on yet) may be handed on now; the framer moves past them.
    /// `Ok(0)` with bytes available means none may go before [`Self::body`].
    pub fn take(&mut self, avail: &[u8]) -> Result<usize, FrameError> {
        match self.phase {
            Phase::Head { len, mut matched } => {
                if len >= self.head_budget {
                    return Err(FrameError::HeadTooLong);
                }
                let room = (self.head_budget - len).min(avail.len());
                for (i, &b) in avail[..room].iter().enumerate() {
                    matched = if b == HEAD_END[usize::from(matched)] {
                        matched + 1
                    } else if b == b'\r' {
                        1
                    } else {
                        0
                    };
                    if usize::from(matched) == HEAD_END.len() {
                        self.phase = Phase::Parsed;
                        return Ok(i + 1);
                    }
                }
                self.phase = Phase::Head {
                    len: len + room,
                    matched,
                };
                Ok(room)
            }
            Phase::Parsed if avail.is_empty() => Ok(0),
            Phase::Parsed => Err(FrameError::NotFramed),
            Phase::Body(left) => {
                let n = left.min(avail.len() as u64);
                self.phase = if n == left {
                    Phase::Head { len: 0, matched: 0 }
                } else {
                    Phase::Body(left - n)
                };
                // n <= avail.len(), a usize.
                Ok(n as usize)
            }
            Phase::Unframed => Ok(avail.len()),
        }
    }

    /// The parsed head's body: `Some(length)` (0 for none), or `None` for
    /// one whose end only its coding shows. Outside [`Phase::Parsed`]
    /// (a head async-h1 took that the framer had not seen end) it frames
    /// nothing more: the connection must then end with this request.
    pub fn body(&mut self, len: Option<u64>) {
        self.phase = match (self.phase, len) {
            (Phase::Parsed, Some(0)) => Phase::Head { len: 0, matched: 0 },
            (Phase::Parsed, Some(n)) => Phase::Body(n),
            _ => Phase::Unframed,
        };
    }

    /// Whether the connection must end after the current request: its
    /// body is not framed, so what follows it cannot be found.
    pub fn ends_connection(&self) -> bool {
        self.phase == Phase::Unframed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands `input` through in pieces of `step`, telling the framer each
    /// head's body length as async-h1 would; returns the pieces handed on.
    fn frames(input: &[u8], step: usize, bodies: &[u64]) -> Vec<Vec<u8>> {
        let mut f = Framer::new(1024);
        let mut out: Vec<Vec<u8>> = vec![Vec::new()];
        let mut bodies = bodies.iter();
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            let n = f.take(&input[at..end]).expect("frames");
            out.last_mut()
                .expect("a frame")
                .extend_from_slice(&input[at..at + n]);
            at += n;
            match f.phase() {
                Phase::Parsed => {
                    f.body(bodies.next().copied());
                    out.push(Vec::new());
                }
                Phase::Head { len: 0, .. } if n > 0 => out.push(Vec::new()),
                _ => {}
            }
        }
        out.retain(|p| !p.is_empty());
        out
    }

    #[test]
    fn pipelined_requests_are_handed_on_one_part_at_a_time() {
        let input = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPUT /b HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET /c HTTP/1.1\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                frames(input, step, &[0, 3, 0]),
                vec![
                    b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
                    b"PUT /b HTTP/1.1\r\ncontent-length: 3\r\n\r\n".to_vec(),
                    b"abc".to_vec(),
                    b"GET /c HTTP/1.1\r\n\r\n".to_vec(),
                ],
                "in steps of {step}"
            );
        }
    }

    #[test]
    fn a_head_ends_at_the_first_blank_line_even_after_stray_returns() {
        let mut f = Framer::new(1024);
        assert_eq!(f.take(b"GET / HTTP/1.1\r\r\n\r\n\r\nX"), Ok(19));
        assert_eq!(f.phase(), Phase::Parsed);
        assert_eq!(f.take(b"X"), Err(FrameError::NotFramed));
    }

    #[test]
    fn an_endless_head_stops_at_the_budget() {
        let mut f = Framer::new(10);
        assert_eq!(f.take(&[b'a'; 6]), Ok(6));
        assert_eq!(f.take(&[b'a'; 6]), Ok(4));
        assert_eq!(f.head_len(), 10);
        assert_eq!(f.take(b"\r\n\r\n"), Err(FrameError::HeadTooLong));
    }

    #[test]
    fn a_chunked_body_hands_everything_on_and_ends_the_connection() {
        let mut f = Framer::new(64);
        assert_eq!(f.take(b"POST / HTTP/1.1\r\n\r\n5\r\nhello"), Ok(19));
        f.body(None);
        assert!(f.ends_connection());
        assert_eq!(f.take(b"5\r\nhello"), Ok(8));
    }
}
