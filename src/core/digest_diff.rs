//! A digest as the changes against an earlier one the receiver holds, so
//! that the digest a fixed partner gets every cycle costs a few dozen bytes
//! whatever N is (DESIGN §4): its fingerprint, the diff, and its checked
//! application.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use super::digest::{BucketRun, Digest};
use super::entry::{Origin, Version};
use super::membership::News;
use super::wire_caps;

/// A digest sent to a fixed partner: whole, or as changes against one the
/// receiver holds; with which of the receiver's digests the sender holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coded {
    /// [`fingerprint`] of the newest digest of the receiver's that the
    /// sender keeps as a base for what the receiver sends it next (0:
    /// none): the receiver may send its next digest against it.
    #[serde(with = "fixed64")]
    pub have: u64,
    /// The sender's digest.
    pub digest: Form,
}

/// A digest whole, or as changes against a base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Form {
    /// The whole digest: first contact, or no base in common.
    Full(Digest),
    /// The changes against a base the receiver holds.
    Delta(DigestDelta),
}

/// A digest as the changes against a base digest, named by its
/// fingerprint. Fields that did not change cost a byte each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDelta {
    /// [`fingerprint`] of the base: a digest of the sender's that the
    /// receiver told it it holds.
    #[serde(with = "fixed64")]
    pub base: u64,
    /// Hints that changed, in origin order: the new mark, or None for a
    /// hint dropped (a wipe drops them all).
    #[serde(deserialize_with = "wire_caps::changes")]
    pub hints: Vec<(Origin, Option<Mark>)>,
    /// GC floors that changed, as `hints`.
    #[serde(deserialize_with = "wire_caps::changes")]
    pub gc_floors: Vec<(Origin, Option<Mark>)>,
    /// The root, if it changed.
    pub root: Option<u64>,
    /// The count of values, if it changed.
    pub keys: Option<u64>,
    /// The count of tombstones, if it changed.
    pub tombstones: Option<u64>,
    /// As the digest's.
    pub quiet: bool,
    /// As the digest's.
    pub resyncing: bool,
    /// The membership news whole, if it changed.
    #[serde(deserialize_with = "wire_caps::some_news")]
    pub news: Option<Vec<News>>,
    /// As the digest's: runs are never part of a base.
    pub runs: Vec<BucketRun>,
}

/// A version without its origin, which the map's key already names.
pub type Mark = (u64, u32);

/// A fingerprint as its 8 bytes: as a varint, a hash takes 9 or 10.
mod fixed64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        v.to_le_bytes().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        <[u8; 8]>::deserialize(d).map(u64::from_le_bytes)
    }
}

/// The fingerprint of a digest as a base: XXH3-64 of its encoding without
/// the agreement runs, which belong to one message only. Never 0, which
/// says "no base".
pub fn fingerprint(d: &Digest) -> u64 {
    let bare = Digest {
        runs: Vec::new(),
        ..d.clone()
    };
    // Serializing plain owned data into a Vec cannot fail.
    let bytes = postcard::to_stdvec(&bare).unwrap_or_default();
    XxHash3_64::oneshot(&bytes).max(1)
}

/// The changes that take `base` (whose fingerprint is `base_fp`) to `new`.
pub fn diff(base: &Digest, base_fp: u64, new: &Digest) -> DigestDelta {
    let changed = |old: Option<u64>, new: u64| (old != Some(new)).then_some(new);
    DigestDelta {
        base: base_fp,
        hints: changes(&base.hints, &new.hints),
        gc_floors: changes(&base.gc_floors, &new.gc_floors),
        root: changed(Some(base.root), new.root),
        keys: changed(Some(base.keys), new.keys),
        tombstones: changed(Some(base.tombstones), new.tombstones),
        quiet: new.quiet,
        resyncing: new.resyncing,
        news: (base.news != new.news).then(|| new.news.clone()),
        runs: new.runs.clone(),
    }
}

/// The digest `delta` describes, over `base`; refused with the reason if
/// the delta does not fit it (changes out of order or named twice, a
/// dropped origin the base lacks, more origins than a digest may hold).
/// The caller has checked that `base` is the digest `delta.base` names.
pub fn apply(base: &Digest, delta: &DigestDelta) -> Result<Digest, String> {
    Ok(Digest {
        hints: applied(&base.hints, &delta.hints, "hints")?,
        gc_floors: applied(&base.gc_floors, &delta.gc_floors, "GC floors")?,
        root: delta.root.unwrap_or(base.root),
        keys: delta.keys.unwrap_or(base.keys),
        tombstones: delta.tombstones.unwrap_or(base.tombstones),
        quiet: delta.quiet,
        resyncing: delta.resyncing,
        news: delta.news.clone().unwrap_or_else(|| base.news.clone()),
        runs: delta.runs.clone(),
    })
}

/// Each origin whose version differs between `old` and `new`, in order.
fn changes(
    old: &BTreeMap<Origin, Version>,
    new: &BTreeMap<Origin, Version>,
) -> Vec<(Origin, Option<Mark>)> {
    let mut out: Vec<(Origin, Option<Mark>)> = new
        .iter()
        .filter(|(o, v)| old.get(o) != Some(v))
        .map(|(&o, v)| (o, Some((v.ms, v.counter))))
        .collect();
    out.extend(
        old.keys()
            .filter(|o| !new.contains_key(o))
            .map(|&o| (o, None)),
    );
    out.sort_unstable_by_key(|(o, _)| *o);
    out
}

/// `base` with `changes` made, or why they do not fit it.
fn applied(
    base: &BTreeMap<Origin, Version>,
    changes: &[(Origin, Option<Mark>)],
    what: &str,
) -> Result<BTreeMap<Origin, Version>, String> {
    let mut out = base.clone();
    let mut last: Option<Origin> = None;
    for &(origin, mark) in changes {
        if last.is_some_and(|l| l >= origin) {
            return Err(format!(
                "digest delta: {what} changes out of order or twice at origin {origin}"
            ));
        }
        last = Some(origin);
        match mark {
            Some((ms, counter)) => {
                out.insert(
                    origin,
                    Version {
                        ms,
                        counter,
                        origin,
                    },
                );
            }
            None => {
                if out.remove(&origin).is_none() {
                    return Err(format!(
                        "digest delta: drops {what} of origin {origin}, which the base lacks"
                    ));
                }
            }
        }
    }
    if out.len() > wire_caps::MAX_ORIGINS {
        return Err(format!(
            "digest delta: {} origins in its {what}, at most {} are accepted",
            out.len(),
            wire_caps::MAX_ORIGINS
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::membership::State;

    fn v(ms: u64, origin: Origin) -> Version {
        Version {
            ms,
            counter: 0,
            origin,
        }
    }

    /// A digest of `n` origins that each wrote once.
    fn digest(n: u32) -> Digest {
        Digest {
            hints: (0..n).map(|o| (o, v(1000 + u64::from(o), o))).collect(),
            gc_floors: (0..n / 2).map(|o| (o, v(500, o))).collect(),
            root: 77,
            keys: u64::from(n),
            tombstones: 3,
            quiet: true,
            ..Digest::default()
        }
    }

    fn encoded_len(d: &DigestDelta) -> usize {
        postcard::to_stdvec(d)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn an_unchanged_digest_costs_the_same_whatever_n() {
        let sizes: Vec<usize> = [8, 64, 1000]
            .iter()
            .map(|&n| {
                let d = digest(n);
                let delta = diff(&d, fingerprint(&d), &d);
                assert_eq!(apply(&d, &delta), Ok(d));
                encoded_len(&delta)
            })
            .collect();
        assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
        assert!(sizes[0] <= 24, "{sizes:?}");
    }

    #[test]
    fn every_kind_of_change_round_trips() {
        let base = digest(10);
        let mut new = base.clone();
        new.hints.insert(3, v(5000, 3));
        new.hints.insert(42, v(7, 42));
        new.hints.remove(&0);
        new.gc_floors.clear();
        new.root = 1;
        new.keys += 1;
        new.quiet = false;
        new.resyncing = true;
        new.news = vec![(4, 2, State::Suspect)];
        new.runs = vec![BucketRun {
            bucket: 1,
            hash: 2,
            run: 3,
            proof: None,
        }];
        let delta = diff(&base, fingerprint(&base), &new);
        assert_eq!(delta.hints.len(), 3);
        assert_eq!(delta.gc_floors.len(), 5);
        assert_eq!(delta.tombstones, None);
        assert_eq!(apply(&base, &delta), Ok(new.clone()));
        // A wipe: everything goes.
        let wiped = Digest::default();
        assert_eq!(
            apply(&base, &diff(&base, fingerprint(&base), &wiped)),
            Ok(wiped)
        );
    }

    #[test]
    fn runs_are_not_part_of_a_fingerprint_and_zero_is_never_one() {
        let d = digest(4);
        let mut with_runs = d.clone();
        with_runs.runs.push(BucketRun {
            bucket: 0,
            hash: 0,
            run: 1,
            proof: None,
        });
        assert_eq!(fingerprint(&d), fingerprint(&with_runs));
        assert_ne!(fingerprint(&d), fingerprint(&digest(5)));
        assert_ne!(fingerprint(&Digest::default()), 0);
    }

    #[test]
    fn a_delta_claiming_more_origins_than_its_cap_does_not_decode() {
        use crate::core::message::{decode, encode, Body, Message, PushKind};
        let push = |changes: usize| Message {
            cluster: 9,
            name: 9,
            epoch: 0,
            from: 2,
            body: Body::PartnerPush {
                kind: PushKind::Cycle,
                digest: Coded {
                    have: 5,
                    digest: Form::Delta(DigestDelta {
                        base: 7,
                        gc_floors: (0..changes as u32).map(|o| (o, None)).collect(),
                        news: Some(Vec::new()),
                        ..DigestDelta::default()
                    }),
                },
                entries: Vec::new(),
                complete: true,
            },
        };
        let at = push(wire_caps::MAX_ORIGINS);
        assert_eq!(decode(&encode(&at)), Ok(at));
        let e = decode(&encode(&push(wire_caps::MAX_ORIGINS + 1))).unwrap_err();
        assert!(e.contains("origins in a digest"), "{e}");
    }

    #[test]
    fn a_delta_that_does_not_fit_its_base_is_refused_by_name() {
        let base = digest(4);
        let mut delta = diff(&base, fingerprint(&base), &base);
        delta.hints = vec![(2, Some((1, 0))), (1, Some((1, 0)))];
        let e = apply(&base, &delta).unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        delta.hints = vec![(2, Some((1, 0))), (2, None)];
        assert!(apply(&base, &delta).is_err());
        delta.hints = vec![(9, None)];
        let e = apply(&base, &delta).unwrap_err();
        assert!(e.contains("base lacks"), "{e}");
        delta.hints = Vec::new();
        delta.gc_floors = (100..100 + wire_caps::MAX_ORIGINS as u32)
            .map(|o| (o, Some((1, 0))))
            .collect();
        let e = apply(&base, &delta).unwrap_err();
        assert!(e.contains("origins"), "{e}");
    }
}
