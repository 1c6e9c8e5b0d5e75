//! The signer's side of a signed request: the headers, the canonical text
//! the MAC is taken over, and [`Signer`], which makes them.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::crypto::{hex, hmac_sha256, random_bytes};
use super::secrets::Keyring;

/// The signer's id: a ring member's, or [`OPERATOR_ID`].
pub const HEADER_NODE: &str = "x-ringsync-node";
/// The id of the node the request is for.
pub const HEADER_TO: &str = "x-ringsync-to";
/// Unix time in seconds at signing.
pub const HEADER_TIME: &str = "x-ringsync-time";
/// A random value used once: 32 hex digits.
pub const HEADER_NONCE: &str = "x-ringsync-nonce";
/// The MAC: 64 hex digits.
pub const HEADER_SIGNATURE: &str = "x-ringsync-signature";

/// The id an operator's tool (the CLI, the demo, a test) signs as. It may
/// call the sync and client API with the cluster secret, never the peer
/// routes. It is not a valid node id (those are `[A-Za-z0-9_.-]`), so it
/// cannot clash with one.
pub const OPERATOR_ID: &str = "@operator";

/// The text a request's MAC is taken over. Every field is free of
/// newlines (the URL library escapes them, ids and nonces are checked),
/// so the fields cannot run into each other.
#[allow(clippy::too_many_arguments)]
pub fn canonical(
    method: &str,
    path: &str,
    query: &str,
    from: &str,
    to: &str,
    time: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "RINGSYNC-HMAC-SHA256\n{}\n{path}\n{query}\n{from}\n{to}\n{time}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        hex(&Sha256::digest(body))
    )
}

/// Signs requests as one id with the first key of a keyring.
#[derive(Clone, Debug)]
pub struct Signer {
    id: String,
    keyring: Keyring,
}

impl Signer {
    /// A signer that signs as `id`.
    pub fn new(id: &str, keyring: Keyring) -> Signer {
        Signer {
            id: id.to_string(),
            keyring,
        }
    }

    /// A signer for an operator's tool, from a keyring file.
    pub fn operator_from_file(path: &Path) -> Result<Signer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
        let keyring = Keyring::parse(&text, &path.display().to_string())?
            .ok_or_else(|| format!("the secret file {} holds no key", path.display()))?;
        Ok(Signer::new(OPERATOR_ID, keyring))
    }

    /// The id it signs as.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The headers that sign a request to node `to` at `now_ms`, with
    /// `nonce` (16 random bytes in practice).
    #[allow(clippy::too_many_arguments)]
    pub fn headers_with(
        &self,
        method: &str,
        path: &str,
        query: &str,
        to: &str,
        body: &[u8],
        now_ms: u64,
        nonce: &[u8],
    ) -> Vec<(&'static str, String)> {
        let time = (now_ms / 1000).to_string();
        let nonce = hex(nonce);
        let text = canonical(method, path, query, &self.id, to, &time, &nonce, body);
        let mac = hmac_sha256(self.keyring.signing_key(), text.as_bytes());
        vec![
            (HEADER_NODE, self.id.clone()),
            (HEADER_TO, to.to_string()),
            (HEADER_TIME, time),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, hex(&mac)),
        ]
    }

    /// As [`Signer::headers_with`], with a fresh nonce.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        query: &str,
        to: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Vec<(&'static str, String)>, String> {
        let nonce = random_bytes(16)?;
        Ok(self.headers_with(method, path, query, to, body, now_ms, &nonce))
    }
}

/// The parts of a request that a signature covers, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct SignedParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path, as the server parsed it.
    pub path: &'a str,
    /// URL query without `?`, empty when there is none.
    pub query: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// [`HEADER_NODE`].
    pub node: Option<&'a str>,
    /// [`HEADER_TO`].
    pub to: Option<&'a str>,
    /// [`HEADER_TIME`].
    pub time: Option<&'a str>,
    /// [`HEADER_NONCE`].
    pub nonce: Option<&'a str>,
    /// [`HEADER_SIGNATURE`].
    pub signature: Option<&'a str>,
}

impl SignedParts<'_> {
    /// Whether any of the five signature headers came: a request with none
    /// is unsigned, one with some is a signature to check.
    pub(super) fn any_signature_header(&self) -> bool {
        self.node.is_some()
            || self.to.is_some()
            || self.time.is_some()
            || self.nonce.is_some()
            || self.signature.is_some()
    }
}
