//! The client API's bearer tokens: reading a tokens file and looking a
//! token up. Only hashes are kept, and lookups take constant time.

use sha2::{Digest, Sha256};

use super::crypto::ct_eq;

/// Shortest bearer token accepted in a tokens file.
pub const MIN_TOKEN_BYTES: usize = 16;

/// What a bearer token may do on `/v1/kv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET only.
    Read,
    /// GET, PUT and DELETE.
    Write,
}

/// The client API's bearer tokens. Only their SHA-256 is kept, and a
/// lookup compares against every one in constant time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    hashed: Vec<([u8; 32], Access)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({})", self.hashed.len())
    }
}

impl Tokens {
    /// Reads a tokens file: `TOKEN read` or `TOKEN write` per line; blank
    /// lines and `#` comments are skipped. `Ok(None)` when it holds no
    /// token (an empty file, or systemd's lone newline).
    pub fn parse(text: &str, source: &str) -> Result<Option<Tokens>, String> {
        let mut hashed: Vec<([u8; 32], Access)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |m: String| format!("{source}:{}: {m}", i + 1);
            let mut words = line.split_whitespace();
            let (Some(token), Some(access), None) = (words.next(), words.next(), words.next())
            else {
                return Err(at(
                    "write each line as `TOKEN read` or `TOKEN write`".to_string()
                ));
            };
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                other => {
                    return Err(at(format!(
                        "access {other:?} is neither `read` nor `write`"
                    )))
                }
            };
            if token.len() < MIN_TOKEN_BYTES {
                return Err(at(format!(
                    "this token is {} bytes; a token needs at least {MIN_TOKEN_BYTES} (make one with `ringsync secret new`)",
                    token.len()
                )));
            }
            let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if hashed.iter().any(|(x, _)| *x == h) {
                return Err(at("this token is listed twice".to_string()));
            }
            hashed.push((h, access));
        }
        Ok((!hashed.is_empty()).then_some(Tokens { hashed }))
    }

    /// What `token` may do, if it is one of ours.
    pub fn lookup(&self, token: &str) -> Option<Access> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.hashed.iter().fold(
            None,
            |found, (x, access)| {
                if ct_eq(x, &h) {
                    Some(*access)
                } else {
                    found
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parsing_and_lookup() {
        assert_eq!(Tokens::parse("\n", "t"), Ok(None));
        let t = Tokens::parse(
            "# clients\nreader-token-0123456 read\nwriter-token-0123456   write\n",
            "t",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.lookup("reader-token-0123456"), Some(Access::Read));
        assert_eq!(t.lookup("writer-token-0123456"), Some(Access::Write));
        assert_eq!(t.lookup("writer-token-0123457"), None);
        assert_eq!(t.lookup(""), None);
        for (bad, says) in [
            ("tok-tok-tok-tok-tok", "`TOKEN read`"),
            ("tok-tok-tok-tok-tok admin", "neither"),
            ("short read", "at least 16"),
            ("tok-tok-tok-tok-tok read extra", "`TOKEN read`"),
            (
                "tok-tok-tok-tok-tok read\ntok-tok-tok-tok-tok write",
                "twice",
            ),
        ] {
            let e = Tokens::parse(bad, "t").unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(e.starts_with("t:"), "{e}");
        }
    }
}
