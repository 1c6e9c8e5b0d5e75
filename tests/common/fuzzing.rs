//! The fuzzers' harness: a deterministic, seeded, time-bounded loop
//! ([`fuzz`]) and the byte mutations it feeds targets ([`mutate`]), shared
//! by `tests/fuzz.rs` and `tests/fuzz_http.rs`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use ringsync::core::rng::Rng;

/// Seconds per target when `RINGSYNC_FUZZ_SECS` is not set: long enough
/// for tens of thousands of inputs in a release build, short enough for
/// every CI run.
pub const DEFAULT_SECS: f64 = 5.0;

/// The variable `name` parsed, if set and well formed.
pub fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `f` on seed after seed for the target's budget; on a panic, says
/// how to replay that seed and fails.
pub fn fuzz(binary: &str, target: &str, mut f: impl FnMut(&mut Rng)) {
    let secs: f64 = env("RINGSYNC_FUZZ_SECS").unwrap_or(DEFAULT_SECS);
    let budget = Duration::from_secs_f64(secs.max(0.0));
    let iters: Option<u64> = env("RINGSYNC_FUZZ_ITERS");
    let base: u64 = env("RINGSYNC_FUZZ_SEED").unwrap_or(1);
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let more = match iters {
            Some(n) => i < n,
            None => i == 0 || start.elapsed() < budget,
        };
        if !more {
            break;
        }
        let seed = base.wrapping_add(i);
        let mut rng = Rng::new(seed);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&mut rng))) {
            eprintln!(
                "fuzz target {target} failed on seed {seed}; replay it with:\n  \
                 RINGSYNC_FUZZ_SEED={seed} RINGSYNC_FUZZ_ITERS=1 cargo test --test {binary} {target}"
            );
            resume_unwind(p);
        }
        i += 1;
    }
    eprintln!(
        "fuzz target {target}: {i} inputs in {:.1?} from seed {base}",
        start.elapsed()
    );
}

// ----- mutation ---------------------------------------------------------

/// Bytes that break parsers: zero, the top of signed and unsigned ranges,
/// varint continuation bits.
pub const EDGE_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x20, 0x0a];

/// One to eight mutations of `input`, `other` being a second corpus entry
/// to splice from.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = b.len() as u64;
        let at = |rng: &mut Rng| rng.below(len.max(1)) as usize;
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = at(rng);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = at(rng);
                b[i] = EDGE_BYTES[rng.below(EDGE_BYTES.len() as u64) as usize];
            }
            2 if !b.is_empty() => {
                let i = at(rng);
                b[i] = rng.next_u64() as u8;
            }
            3 => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let n = 1 + rng.below(8) as usize;
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, junk);
            }
            4 if !b.is_empty() => {
                let i = at(rng);
                let n = (1 + rng.below(16) as usize).min(b.len() - i);
                b.drain(i..i + n);
            }
            5 => {
                let keep = rng.below(len + 1) as usize;
                b.truncate(keep);
            }
            6 if !b.is_empty() => {
                let i = at(rng);
                let n = (1 + rng.below(32) as usize).min(b.len() - i);
                let copy = b[i..i + n].to_vec();
                let j = at(rng);
                b.splice(j..j, copy);
            }
            7 if !other.is_empty() => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let j = rng.below(other.len() as u64) as usize;
                let n = (1 + rng.below(64) as usize).min(other.len() - j);
                b.splice(i..(i + n).min(b.len()), other[j..j + n].iter().copied());
            }
            // A run of 0xff: a huge varint length or count.
            _ => {
                let i = if b.is_empty() { 0 } else { at(rng) };
                let n = 1 + rng.below(10) as usize;
                b.splice(i..i, std::iter::repeat_n(0xff, n));
            }
        }
    }
    b
}

/// One of `items`, drawn by `rng`.
pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}
