//! Fuzzing of the listener's HTTP framing, with the harness of
//! `tests/common/fuzzing.rs` (see `tests/fuzz.rs` for how inputs are made,
//! seeded and replayed): pipelined HTTP/1.1 requests through
//! `http::framing::Framer`, in pieces of random size. Nothing may panic;
//! what it hands on is the input, in order, with nothing left out or made
//! up; every head it hands on ends at the first blank line and at no
//! other, every body is as long as its head said, no head passes the
//! budget, and how the bytes were split changes none of it.

mod common;

use common::fuzzing::{fuzz, mutate, pick};
use ringsync::core::rng::Rng;
use ringsync::http::framing::{FrameError, Framer, Phase};

/// The framer's head budget in this target: small, so that mutations
/// reach it.
const FUZZ_HEAD_BUDGET: usize = 512;

fn framing_corpus() -> Vec<Vec<u8>> {
    let get = "GET /livez HTTP/1.1\r\nhost: x\r\n\r\n";
    let put = "PUT /v1/kv/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    let chunked = "POST /v1/peer/message HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let empty = "POST /v1/sync HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    [
        get.repeat(3),
        format!("{put}{get}{put}"),
        format!("{get}{chunked}{get}"),
        format!("{empty}{put}\r\n\r\n{get}"),
        format!("{get}\r\r\n\n{put}"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// What a reader of the framed stream takes for a head's body, as async-h1
/// does: a Content-Length, or no framing when a Transfer-Encoding is there.
fn body_of(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let mut len = Some(0);
    for line in text.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            len = Some(v.trim().parse().unwrap_or(0));
        }
        if line.starts_with("transfer-encoding:") {
            return None;
        }
    }
    len
}

/// One framed part of a stream: a head, a body, or unframed bytes.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Head(Vec<u8>),
    Body(Vec<u8>),
    Rest(Vec<u8>),
}

/// Feeds `input` to a framer in pieces whose sizes `rng` picks, as the
/// listener does; returns the parts handed on and the error that stopped
/// it, if one did.
fn frame_all(input: &[u8], rng: &mut Rng) -> (Vec<Part>, Option<FrameError>) {
    let mut f = Framer::new(FUZZ_HEAD_BUDGET);
    let mut parts: Vec<Part> = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let piece = 1 + rng.below(64) as usize;
        let avail = &input[at..(at + piece).min(input.len())];
        let before = f.phase();
        let n = match f.take(avail) {
            Ok(n) => n,
            Err(e) => return (parts, Some(e)),
        };
        assert!(n <= avail.len(), "handed on {n} of {} bytes", avail.len());
        assert!(
            n > 0,
            "nothing handed on from {before:?} with bytes waiting"
        );
        let bytes = avail[..n].to_vec();
        at += n;
        let open = match (before, parts.last_mut()) {
            (Phase::Head { len, .. }, Some(Part::Head(h))) if len > 0 => Some(h),
            (Phase::Body(_), Some(Part::Body(b))) => Some(b),
            (Phase::Unframed, Some(Part::Rest(r))) => Some(r),
            _ => None,
        };
        match open {
            Some(p) => p.extend_from_slice(&bytes),
            None => parts.push(match before {
                Phase::Head { .. } => Part::Head(bytes),
                Phase::Body(_) => Part::Body(bytes),
                _ => Part::Rest(bytes),
            }),
        }
        if f.phase() == Phase::Parsed {
            let Some(Part::Head(h)) = parts.last() else {
                panic!("a head ended that was not handed on as one");
            };
            f.body(body_of(h));
        }
    }
    (parts, None)
}

fn framing_one(input: &[u8], rng: &mut Rng) {
    let (parts, err) = frame_all(input, rng);
    let handed: Vec<u8> = parts
        .iter()
        .flat_map(|p| match p {
            Part::Head(b) | Part::Body(b) | Part::Rest(b) => b.clone(),
        })
        .collect();
    assert!(
        input.starts_with(&handed),
        "what was handed on is not the input"
    );
    if err.is_none() {
        assert_eq!(handed.len(), input.len(), "bytes were left out");
    }
    let mut body_due: Option<u64> = None;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match p {
            Part::Head(h) => {
                assert!(h.len() <= FUZZ_HEAD_BUDGET, "a head of {} bytes", h.len());
                let end = h.windows(4).position(|w| w == b"\r\n\r\n");
                match end {
                    Some(e) => assert_eq!(e + 4, h.len(), "a head went past its blank line"),
                    None => assert!(last, "a head was cut before its blank line"),
                }
                if end.is_some() {
                    body_due = body_of(h);
                }
            }
            Part::Body(b) => {
                let due = body_due
                    .take()
                    .unwrap_or_else(|| panic!("a body after no head"));
                if last {
                    assert!(b.len() as u64 <= due, "a body longer than its head said");
                } else {
                    assert_eq!(b.len() as u64, due, "a body not as long as its head said");
                }
            }
            Part::Rest(_) => {
                assert_eq!(body_due, None, "unframed bytes after a framed head");
                assert!(last, "anything after unframed bytes");
            }
        }
    }
    if err == Some(FrameError::HeadTooLong) {
        assert!(
            matches!(parts.last(), Some(Part::Head(h)) if h.len() == FUZZ_HEAD_BUDGET),
            "the head budget was hit before the budget"
        );
    }
    assert_ne!(err, Some(FrameError::NotFramed), "the driver always frames");
    // Another split of the same bytes frames them the same.
    let mut other = Rng::new(rng.next_u64());
    let (again, err_again) = frame_all(input, &mut other);
    assert_eq!(
        (shape(&again), err_again),
        (shape(&parts), err),
        "the split changed the framing"
    );
}

/// The shape of a framing: each part's kind and length (the pieces of
/// one part are already joined by [`frame_all`]).
fn shape(parts: &[Part]) -> Vec<(u8, usize)> {
    parts
        .iter()
        .map(|p| match p {
            Part::Head(b) => (0, b.len()),
            Part::Body(b) => (1, b.len()),
            Part::Rest(b) => (2, b.len()),
        })
        .collect()
}

const REGRESSIONS_FRAMING: &[&str] = &[];

#[test]
fn http_framing() {
    for text in REGRESSIONS_FRAMING {
        framing_one(text.as_bytes(), &mut Rng::new(0));
    }
    let corpus = framing_corpus();
    fuzz("fuzz_http", "http_framing", |rng| {
        let a = pick(rng, &corpus).clone();
        let b = pick(rng, &corpus).clone();
        let input = if rng.chance(0.1) {
            a
        } else {
            mutate(rng, &a, &b)
        };
        framing_one(&input, rng);
    });
}
