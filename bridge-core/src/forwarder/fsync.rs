//! When the spool is made durable: `--spool-fsync interval:500ms|batch|never`.
//!
//! Independent of this setting every burst of messages is written (`write(2)`) to the
//! segment file before the next burst is taken, so a killed module loses at most the
//! burst in progress. `fsync` decides what a power loss may take: with `interval:D`
//! up to D of messages (plus the device's write cache), with `batch` nothing that
//! was taken into the spool, with `never` whatever the kernel had not written back
//! (on Linux up to ~30 s with default dirty-page settings).

use std::str::FromStr;
use std::time::Duration;

/// The spool's fsync policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fsync` every interval (default 500 ms).
    Interval(Duration),
    /// `fsync` after every burst of messages (costly on flash; no power-loss window).
    Batch,
    /// Never `fsync` (the kernel writes back on its own schedule).
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_millis(500))
    }
}

/// The `--spool-fsync` value is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--spool-fsync must be interval:<N>ms, interval:<N>s, batch or never (e.g. interval:500ms), not '{0}'."
)]
pub struct FsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = FsyncPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || FsyncPolicyError(text.to_owned());
        match text.trim() {
            "batch" => Ok(Self::Batch),
            "never" => Ok(Self::Never),
            other => {
                let period = other.strip_prefix("interval:").ok_or_else(bad)?;
                let (digits, scale) = if let Some(ms) = period.strip_suffix("ms") {
                    (ms, 1)
                } else if let Some(s) = period.strip_suffix('s') {
                    (s, 1000)
                } else {
                    return Err(bad());
                };
                let n: u64 = digits.parse().map_err(|_| bad())?;
                let ms = n.checked_mul(scale).ok_or_else(bad)?;
                // Below 1 ms is "batch"; above an hour is surely a typo.
                if !(1..=3_600_000).contains(&ms) {
                    return Err(bad());
                }
                Ok(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Interval(d) => write!(f, "interval:{}ms", d.as_millis()),
            Self::Batch => f.write_str("batch"),
            Self::Never => f.write_str("never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_the_rest() {
        let ms = |n| FsyncPolicy::Interval(Duration::from_millis(n));
        assert_eq!("interval:500ms".parse(), Ok(ms(500)));
        assert_eq!("interval:2s".parse(), Ok(ms(2000)));
        assert_eq!("batch".parse(), Ok(FsyncPolicy::Batch));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        for bad in [
            "",
            "always",
            "interval:",
            "interval:0ms",
            "interval:5m",
            "interval:-1s",
            "interval:99999999999999999999s",
            "interval:2h",
        ] {
            assert!(bad.parse::<FsyncPolicy>().is_err(), "{bad}");
        }
        assert_eq!(ms(250).to_string(), "interval:250ms");
        assert_eq!(
            FsyncPolicy::Batch.to_string().parse(),
            Ok(FsyncPolicy::Batch)
        );
    }
}
