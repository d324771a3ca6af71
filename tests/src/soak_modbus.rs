//! The Modbus half of the soak's accounting: what edgeHub received from bridge-modbus,
//! one message per device per poll, and the gaps in each device's sequence of poll
//! times. Polls go on while edgeHub is away (the spool keeps their messages), so a
//! missing second in a 1 Hz device's sequence is a poll lost or never made; gaps are
//! excused only where the soak changed the device (disabled it, changed its interval).

use std::collections::{BTreeMap, HashSet};

/// What edgeHub received from bridge-modbus.
#[derive(Debug, Default)]
pub struct HubSeen {
    /// Messages (duplicates included).
    pub messages: u64,
    /// Messages the feed skipped (it fell behind): not counted anywhere else.
    pub lagged: u64,
    /// Messages with a (device, poll time) seen before.
    pub duplicates: u64,
    /// Messages without a `dev-N` device id or a creation time.
    pub unparsed: u64,
    /// (device number, creation time in ms): one per delivered poll.
    pub distinct: HashSet<(u32, i64)>,
}

impl HubSeen {
    /// Counts one received message.
    pub fn add(&mut self, m: &edgehub_sim::Recorded) {
        self.messages += 1;
        let key = m
            .properties
            .get("deviceId")
            .and_then(|d| d.strip_prefix("dev-")?.parse::<u32>().ok())
            .zip(
                m.properties
                    .get("iothub-creation-time-utc")
                    .and_then(|t| crate::rfc3339_millis(t)),
            );
        match key {
            Some(k) if !self.distinct.insert(k) => self.duplicates += 1,
            Some(_) => {}
            None => self.unparsed += 1,
        }
    }
}

/// A span (epoch ms) during which the soak changed devices `first..last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excused {
    /// First device number.
    pub first: u32,
    /// One past the last device number.
    pub last: u32,
    /// Start, epoch ms.
    pub from_ms: i64,
    /// End, epoch ms.
    pub to_ms: i64,
}

/// Gaps of two intervals or more between consecutive poll times of a device.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Devices that delivered at least one poll.
    pub devices: usize,
    /// Gaps not explained by a change the soak made.
    pub gaps: u64,
    /// Polls missing in those gaps (gap / interval, rounded, minus one).
    pub missing: u64,
    /// The largest of those gaps, ms.
    pub largest_ms: i64,
    /// Gaps explained by a change the soak made.
    pub excused: u64,
}

/// Gaps in every device's sequence of poll times at `interval_ms`.
pub fn gaps(distinct: &HashSet<(u32, i64)>, interval_ms: i64, excused: &[Excused]) -> Gaps {
    let mut by_device: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for (d, t) in distinct {
        by_device.entry(*d).or_default().push(*t);
    }
    let mut out = Gaps {
        devices: by_device.len(),
        ..Gaps::default()
    };
    for (d, mut times) in by_device {
        times.sort_unstable();
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            if gap * 10 < interval_ms * 19 {
                continue;
            }
            let covered = excused
                .iter()
                .any(|e| (e.first..e.last).contains(&d) && w[0] <= e.to_ms && w[1] >= e.from_ms);
            if covered {
                out.excused += 1;
            } else {
                out.gaps += 1;
                out.missing += ((gap as f64 / interval_ms as f64).round() as u64).saturating_sub(1);
                out.largest_ms = out.largest_ms.max(gap);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_missing_polls_outside_excused_spans() {
        let mut seen = HashSet::new();
        // Device 0: 1 Hz with polls 3 and 4 missing (a 3 s gap) and a late poll (1.6 s
        // gap, not a missing one). Device 1: a 5 s gap while it was disabled.
        for t in [0, 1000, 2000, 5000, 6600, 7600] {
            seen.insert((0, t));
        }
        for t in [0, 1000, 6000, 7000] {
            seen.insert((1, t));
        }
        let excused = [Excused {
            first: 1,
            last: 2,
            from_ms: 1500,
            to_ms: 4500,
        }];
        let g = gaps(&seen, 1000, &excused);
        assert_eq!(
            g,
            Gaps {
                devices: 2,
                gaps: 1,
                missing: 2,
                largest_ms: 3000,
                excused: 1,
            }
        );
    }
}
