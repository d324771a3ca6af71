//! Capped exponential backoff with jitter, pure apart from the random jitter.

use std::time::Duration;

/// Doubles from `min` to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next delay (with up to 20 % jitter so many devices do not retry in step).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.2);
        (base + jitter).min(self.max)
    }

    /// The un-jittered delay the next call would start from.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Back to `min`.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(120));
        assert!(delays[1] >= Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(500)));
        assert_eq!(b.current(), Duration::from_millis(500));
        b.reset();
        assert_eq!(b.current(), Duration::from_millis(100));
    }
}
