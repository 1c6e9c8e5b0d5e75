//! Who may call what: requests signed with the cluster secret between
//! members (and operators who hold it), bearer tokens for the client API.
//!
//! Plain code, with no HTTP library and no clock: the server's gate
//! (`http/server.rs`) and the client (`http/client.rs`) hand it a request's
//! parts and the time. `crypto` holds the primitives, `secrets` the keyring
//! and where secrets are read from, `tokens` the client tokens, `sign` the
//! signer's side, `verify` the server's [`Guard`], and `refusal` the reasons
//! a request is refused and their log.
//!
//! **Signed requests.** The signer sends five headers: its id
//! ([`HEADER_NODE`]), the id of the node it calls ([`HEADER_TO`]), the unix
//! time in seconds ([`HEADER_TIME`]), a fresh random nonce
//! ([`HEADER_NONCE`]) and [`HEADER_SIGNATURE`], the HMAC-SHA256 under
//! the first key of the keyring of [`canonical`]: method, path, query, both
//! ids, time, nonce and the SHA-256 of the body. The receiver accepts a
//! request whose time is within [`MAX_SKEW_S`] of its own clock, whose MAC
//! matches under any key of its keyring (compared in constant time), and
//! whose nonce it has not seen from that sender; it remembers the nonce for
//! [`NONCE_TTL_MS`], which is as long as the request could be replayed.
//! Naming the receiver keeps a request captured on its way to one node from
//! being replayed to another, whose nonce book has not seen it.
//!
//! **Across a restart.** A clean stop saves the nonce book and the next
//! start reads it back ([`Guard::saved_nonces`], [`Guard::restore_nonces`]).
//! A start that finds none (after a crash) refuses every request signed at
//! or before it started ([`Guard::refuse_signed_before`]).
//!
//! **Signed replies.** A node answers every signed peer request with
//! [`HEADER_REPLY_SIGNATURE`], its MAC under the first key of its keyring
//! of [`canonical_reply`]: the request's route, signer, nonce and MAC, the
//! responder's id, the status, the protocol refusal and the SHA-256 of the
//! body. The caller checks it under any key of its keyring before the
//! body goes further, so that no one on the path can answer for a peer.

mod crypto;
mod nonces;
mod refusal;
mod secrets;
mod sign;
mod tokens;
mod verify;
mod window;

pub use crypto::{ct_eq, hex, hmac_sha256, random_bytes};
pub use refusal::{Denied, RefusalLog, Refused};
pub use secrets::{secret_new, Keyring, Secrets, MIN_KEY_BYTES};
pub use sign::{
    canonical, canonical_reply, RequestSeal, SignedParts, Signer, HEADER_NODE, HEADER_NONCE,
    HEADER_REPLY_SIGNATURE, HEADER_SIGNATURE, HEADER_TIME, HEADER_TO, OPERATOR_ID,
};
pub use tokens::{Access, Tokens, MIN_TOKEN_BYTES};
pub use verify::{Guard, Signers};
pub use window::{MAX_NONCES_PER_SENDER, MAX_SKEW_S, NONCE_TTL_MS};
