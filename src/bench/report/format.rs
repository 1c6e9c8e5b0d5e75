//! How the report writes numbers: thousands, bytes, durations, ratios,
//! verdicts and the join's settings.

use crate::bench::join;

/// 1234567 as "1,234,567".
pub(super) fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, KiB or MiB.
pub(super) fn bytes(n: f64) -> String {
    if n < 1024.0 {
        format!("{n:.0} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Seconds as "40 s" or "7.5 minutes".
pub(super) fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.1} minutes", secs / 60.0)
    }
}

/// A ratio as a percentage, with a decimal when it is small.
pub(super) fn pct(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// "default peer_timeout (500 ms)" or "peer_timeout 5000 ms".
pub(super) fn join_settings(j: &join::Join) -> String {
    if j.default_peer_timeout {
        format!("default peer_timeout ({} ms)", j.peer_timeout_ms)
    } else {
        format!("peer_timeout {} ms", j.peer_timeout_ms)
    }
}

/// " (n unfinished)" after a count of writes, or nothing.
pub(super) fn unfinished(n: u64) -> String {
    if n > 0 {
        format!(" ({n} unfinished)")
    } else {
        String::new()
    }
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(999), "999");
        assert_eq!(bytes(150.0), "150 B");
        assert_eq!(bytes(2.5 * 1024.0 * 1024.0), "2.5 MiB");
        assert_eq!(pct(0.0012), "0.1%");
        assert_eq!(pct(0.46), "46%");
    }
}
