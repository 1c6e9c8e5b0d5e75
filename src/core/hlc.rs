//! Hybrid logical clock (Kulkarni et al. 2014, "Logical Physical Clocks").
//!
//! The clock never reads time: callers pass the physical milliseconds in.

use super::entry::{Origin, Version};

/// A hybrid logical clock owned by one node.
#[derive(Debug, Clone)]
pub struct Hlc {
    last: Version,
}

impl Hlc {
    /// A clock for `origin` that has seen nothing yet.
    pub fn new(origin: Origin) -> Self {
        Hlc {
            last: Version::zero(origin),
        }
    }

    /// The version for a new local write at physical time `now_ms`: strictly
    /// above every version this clock has issued or observed.
    pub fn tick(&mut self, now_ms: u64) -> Version {
        let origin = self.last.origin;
        self.last = if now_ms > self.last.ms {
            Version {
                ms: now_ms,
                counter: 0,
                origin,
            }
        } else if self.last.counter == u32::MAX {
            Version {
                ms: self.last.ms + 1,
                counter: 0,
                origin,
            }
        } else {
            Version {
                ms: self.last.ms,
                counter: self.last.counter + 1,
                origin,
            }
        };
        self.last
    }

    /// Takes note of a version seen from elsewhere, so that later local
    /// writes order after it. The caller has already refused versions too
    /// far in the future.
    pub fn observe(&mut self, seen: Version) {
        if (seen.ms, seen.counter) > (self.last.ms, self.last.counter) {
            self.last.ms = seen.ms;
            self.last.counter = seen.counter;
        }
    }

    /// The last version issued or observed.
    pub fn last(&self) -> Version {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_even_when_time_stands_still_or_goes_back() {
        let mut c = Hlc::new(3);
        let a = c.tick(1000);
        let b = c.tick(1000);
        let d = c.tick(900);
        assert!(a < b && b < d, "{a} {b} {d}");
        assert_eq!(d.ms, 1000);
    }

    #[test]
    fn observing_a_later_version_moves_the_clock_past_it() {
        let mut c = Hlc::new(1);
        c.observe(Version {
            ms: 5000,
            counter: 7,
            origin: 2,
        });
        let v = c.tick(4000);
        assert_eq!((v.ms, v.counter, v.origin), (5000, 8, 1));
    }
}
