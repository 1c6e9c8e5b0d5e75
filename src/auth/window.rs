//! The replay window: how far a signed request's time may be from ours,
//! and how long and how many of its nonces are remembered.

/// How far a signed request's time may be from ours, either way. NTP keeps
/// LAN hosts within milliseconds; 30 s tolerates a host whose NTP is off
/// for a while and still bounds how long a captured request stays good.
pub const MAX_SKEW_S: u64 = 30;

/// How long a nonce is remembered. A request stamped up to MAX_SKEW_S
/// ahead of us, first seen then, stays within the window until 2 ×
/// MAX_SKEW_S later; remembering its nonce that long refuses every replay.
pub const NONCE_TTL_MS: u64 = 2 * MAX_SKEW_S * 1000;

/// Nonces remembered per sender, at most. Only requests whose MAC checked
/// out are remembered, so only a key holder can fill it: 100,000 in 60 s is
/// over 1,600 signed requests a second from one sender, far beyond what a
/// node sends (a few per cycle, plus relays). Beyond it, requests are
/// refused (503) rather than let an old nonce be forgotten early.
pub const MAX_NONCES_PER_SENDER: usize = 100_000;
