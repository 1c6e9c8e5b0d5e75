//! The signer's side of a signed request: the headers, the canonical text
//! the MAC is taken over, and [`Signer`], which makes them.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::crypto::{b64url, hex, hmac_sha256, random_bytes, untoken};
use super::secrets::Keyring;

/// The signer's id: a ring member's, or [`OPERATOR_ID`].
pub const HEADER_NODE: &str = "x-ringsync-node";
/// The id of the node the request is for.
pub const HEADER_TO: &str = "x-ringsync-to";
/// Unix time in seconds at signing.
pub const HEADER_TIME: &str = "x-ringsync-time";
/// A random value used once: 16 bytes, unpadded base64url (22 characters;
/// 16 to 64 hex digits from older builds are accepted too).
pub const HEADER_NONCE: &str = "x-ringsync-nonce";
/// The MAC: 32 bytes, unpadded base64url (43 characters; 64 hex digits
/// from older builds are accepted too).
pub const HEADER_SIGNATURE: &str = "x-ringsync-signature";
/// On a reply to a signed request: the responder's MAC over
/// [`canonical_reply`], as [`HEADER_SIGNATURE`] is written.
pub const HEADER_REPLY_SIGNATURE: &str = "x-ringsync-reply-signature";

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

/// What of a signed request its reply is bound to: the request as its
/// signer sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestSeal {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// The id that signed the request (the one the reply is for).
    pub signer: String,
    /// Its nonce, as sent.
    pub nonce: String,
    /// Its MAC, as sent: binds the reply to everything the request's
    /// MAC covered, its body included.
    pub signature: String,
}

/// The text a reply's MAC is taken over: the request it answers (route,
/// signer, nonce and MAC), the responder's id, the status, the protocol
/// refusal header (empty without one) and the SHA-256 of the body. Its
/// first line differs from [`canonical`]'s, so a reply's MAC is never a
/// request's.
pub fn canonical_reply(
    request: &RequestSeal,
    responder: &str,
    status: u16,
    refused: &str,
    body: &[u8],
) -> String {
    format!(
        "RINGSYNC-REPLY-HMAC-SHA256\n{}\n{}\n{}\n{responder}\n{}\n{}\n{status}\n{refused}\n{}",
        request.method.to_ascii_uppercase(),
        request.path,
        request.signer,
        request.nonce,
        request.signature,
        hex(&Sha256::digest(body))
    )
}

/// Signs requests as one id with the first key of a keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        let nonce = b64url(nonce);
        let text = canonical(method, path, query, &self.id, to, &time, &nonce, body);
        let mac = hmac_sha256(self.keyring.signing_key(), text.as_bytes());
        vec![
            (HEADER_NODE, self.id.clone()),
            (HEADER_TO, to.to_string()),
            (HEADER_TIME, time),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, b64url(&mac)),
        ]
    }

    /// The MAC (base64url) of a reply this signer sends, as the responder, to
    /// `request`.
    pub fn sign_reply(
        &self,
        request: &RequestSeal,
        status: u16,
        refused: &str,
        body: &[u8],
    ) -> String {
        let text = canonical_reply(request, &self.id, status, refused, body);
        b64url(&hmac_sha256(self.keyring.signing_key(), text.as_bytes()))
    }

    /// Whether `signature` (base64url, or hex from an older build) is `responder`'s MAC, under any key of the
    /// keyring, of this reply to `request`.
    pub fn accepts_reply(
        &self,
        request: &RequestSeal,
        responder: &str,
        status: u16,
        refused: &str,
        body: &[u8],
        signature: &str,
    ) -> bool {
        let Some(mac) = untoken(signature, 64..=64).filter(|m| m.len() == 32) else {
            return false;
        };
        let text = canonical_reply(request, responder, status, refused, body);
        self.keyring.accepts(&text, &mac)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_mac_binds_request_responder_status_and_body() {
        let key = b"a-cluster-secret-for-tests";
        let a = Signer::new("a", Keyring::single(key));
        let b = Signer::new("b", Keyring::single(key));
        let seal = RequestSeal {
            method: "POST".into(),
            path: "/v1/peer/message".into(),
            signer: "a".into(),
            nonce: "00".repeat(16),
            signature: "11".repeat(32),
        };
        let mac = b.sign_reply(&seal, 200, "", b"reply");
        assert!(a.accepts_reply(&seal, "b", 200, "", b"reply", &mac));
        assert!(!a.accepts_reply(&seal, "b", 200, "", b"replY", &mac));
        assert!(!a.accepts_reply(&seal, "b", 409, "", b"reply", &mac));
        assert!(!a.accepts_reply(&seal, "b", 200, "stale_sender", b"reply", &mac));
        assert!(!a.accepts_reply(&seal, "c", 200, "", b"reply", &mac));
        assert!(!a.accepts_reply(&seal, "b", 200, "", b"reply", "zz"));
        let other = RequestSeal {
            nonce: "22".repeat(16),
            ..seal.clone()
        };
        assert!(!a.accepts_reply(&other, "b", 200, "", b"reply", &mac));
        // Another secret's MAC is not ours.
        let stranger = Signer::new("b", Keyring::single(b"another-secret-entirely"));
        let forged = stranger.sign_reply(&seal, 200, "", b"reply");
        assert!(!a.accepts_reply(&seal, "b", 200, "", b"reply", &forged));
        // A request's MAC of the same fields is never a reply's.
        assert_ne!(
            canonical_reply(&seal, "b", 200, "", b"reply")
                .lines()
                .next(),
            canonical("POST", "/", "", "a", "b", "0", "00", b"")
                .lines()
                .next()
        );
    }
}
