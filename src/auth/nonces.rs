//! The nonces a node has accepted, by sender, as long as a request could
//! be replayed; and their text form, which a clean stop saves so that the
//! next start still refuses those replays.

use std::collections::HashMap;

use super::crypto::{hex, unhex};
use super::refusal::Denied;
use super::window::{MAX_NONCES_PER_SENDER, NONCE_TTL_MS};

/// The first line of a saved nonce book: what it is, and its format.
const SAVED_HEADER: &str = "ringsync nonce book 1";

/// Nonces seen from one sender, with when each may be forgotten.
#[derive(Default)]
pub(super) struct NonceBook {
    pub(super) seen: HashMap<Vec<u8>, u64>,
    /// The earliest expiry in `seen`: nothing to sweep before then.
    next_sweep_ms: u64,
}

impl NonceBook {
    /// Records `nonce` until `expires_ms`; an error if it is already there
    /// or the book is full.
    pub(super) fn insert_until(
        &mut self,
        nonce: Vec<u8>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), Denied> {
        if now_ms >= self.next_sweep_ms && !self.seen.is_empty() {
            self.seen.retain(|_, exp| *exp > now_ms);
            self.next_sweep_ms = self.seen.values().copied().min().unwrap_or(0);
        }
        if self.seen.contains_key(&nonce) {
            return Err(Denied::ReplayedNonce);
        }
        if self.seen.len() >= MAX_NONCES_PER_SENDER {
            return Err(Denied::NonceBookFull);
        }
        if self.seen.is_empty() || expires_ms < self.next_sweep_ms {
            self.next_sweep_ms = expires_ms;
        }
        self.seen.insert(nonce, expires_ms);
        Ok(())
    }

    /// Records `nonce`, seen now; false if it is already there.
    pub(super) fn insert(&mut self, nonce: Vec<u8>, now_ms: u64) -> Result<(), Denied> {
        self.insert_until(nonce, now_ms, now_ms + NONCE_TTL_MS)
    }
}

/// Every sender's book.
#[derive(Default)]
pub(super) struct NonceBooks(pub(super) HashMap<String, NonceBook>);

impl NonceBooks {
    /// The nonces still remembered at `now_ms`, as text: a header line,
    /// then `sender nonce-hex expiry-ms` per nonce.
    pub(super) fn export(&self, now_ms: u64) -> String {
        let mut out = format!("{SAVED_HEADER}\n");
        for (sender, book) in &self.0 {
            for (nonce, exp) in &book.seen {
                if *exp > now_ms {
                    out.push_str(&format!("{sender} {} {exp}\n", hex(nonce)));
                }
            }
        }
        out
    }

    /// Adds the nonces of an [`NonceBooks::export`] that are still to be
    /// remembered at `now_ms`; returns how many. Text that is not such an
    /// export adds nothing and says what is wrong.
    pub(super) fn import(&mut self, text: &str, now_ms: u64) -> Result<usize, String> {
        let mut lines = text.lines();
        if lines.next() != Some(SAVED_HEADER) {
            return Err(format!("it does not start with {SAVED_HEADER:?}"));
        }
        let mut parsed = Vec::new();
        for (i, line) in lines.enumerate() {
            let mut f = line.split(' ');
            let entry = match (f.next(), f.next(), f.next(), f.next()) {
                (Some(s), Some(n), Some(e), None) if !s.is_empty() => {
                    unhex(n).zip(e.parse::<u64>().ok()).map(|(n, e)| (s, n, e))
                }
                _ => None,
            };
            let Some(entry) = entry else {
                return Err(format!("line {} is not `sender nonce expiry`", i + 2));
            };
            parsed.push(entry);
        }
        let mut added = 0;
        for (sender, nonce, exp) in parsed {
            // Nothing is remembered longer than a nonce's lifetime, whatever
            // the file says.
            let exp = exp.min(now_ms + NONCE_TTL_MS);
            if exp > now_ms {
                let book = self.0.entry(sender.to_string()).or_default();
                if book.insert_until(nonce, now_ms, exp).is_ok() {
                    added += 1;
                }
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn nonces_are_forgotten_after_their_ttl() {
        let mut book = NonceBook::default();
        assert!(book.insert(vec![1], NOW).is_ok());
        assert_eq!(book.insert(vec![1], NOW + 1), Err(Denied::ReplayedNonce));
        assert!(book.insert(vec![2], NOW + NONCE_TTL_MS - 1).is_ok());
        assert!(book.insert(vec![1], NOW + NONCE_TTL_MS + 1).is_ok());
        assert_eq!(book.seen.len(), 2, "the expired entry was swept");
    }

    #[test]
    fn a_saved_book_is_read_back_without_what_expired() {
        let mut books = NonceBooks::default();
        let book = books.0.entry("a".into()).or_default();
        book.insert(vec![1; 16], NOW).unwrap();
        book.insert(vec![2; 16], NOW + 30_000).unwrap();
        let text = books.export(NOW + 1);
        let mut back = NonceBooks::default();
        // At NOW + TTL + 1 the first has expired, the second has not.
        assert_eq!(back.import(&text, NOW + NONCE_TTL_MS + 1), Ok(1));
        let a = back.0.get_mut("a").unwrap();
        assert_eq!(
            a.insert(vec![2; 16], NOW + NONCE_TTL_MS + 2),
            Err(Denied::ReplayedNonce)
        );
        assert!(a.insert(vec![1; 16], NOW + NONCE_TTL_MS + 2).is_ok());
        for bad in ["", "something else\n", "ringsync nonce book 1\na zz 5\n"] {
            assert!(NonceBooks::default().import(bad, NOW).is_err(), "{bad:?}");
        }
    }
}
