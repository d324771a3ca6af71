//! Back-pressure, pure: when advertisements arrive faster than they are forwarded, the
//! newest reading per device wins. Each device has at most one pending slot (the
//! device's latest state lives in the cache, so the slot is just a flag) and a ready
//! queue holds each pending device once: memory is bounded by the number of devices,
//! not by the arrival rate. A reading replaced before it was forwarded is counted.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Devices waiting to be forwarded, oldest first.
#[derive(Debug)]
pub struct Coalescer<K> {
    /// Pending devices: does the slot hold a new reading (not only an RSSI update)?
    pending: HashMap<K, bool>,
    ready: VecDeque<K>,
    superseded: u64,
}

impl<K> Default for Coalescer<K> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            ready: VecDeque::new(),
            superseded: 0,
        }
    }
}

impl<K: Eq + Hash + Clone> Coalescer<K> {
    /// A device has something new (`reading`: new data, not only RSSI). True when it
    /// was not already waiting.
    pub fn offer(&mut self, key: &K, reading: bool) -> bool {
        if let Some(slot) = self.pending.get_mut(key) {
            if reading && *slot {
                // The waiting reading is replaced by a newer one before anyone saw it.
                self.superseded += 1;
            }
            *slot |= reading;
            return false;
        }
        self.pending.insert(key.clone(), reading);
        self.ready.push_back(key.clone());
        true
    }

    /// The device waiting longest; its slot is free again.
    pub fn take(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.pending.remove(&key);
        Some(key)
    }

    /// Forgets a device (removed by BlueZ).
    pub fn forget<Q: Eq + Hash + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if self.pending.remove(key).is_some() {
            self.ready.retain(|k| k.borrow() != key);
        }
    }

    /// Forgets every device (BlueZ restarted).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.ready.clear();
    }

    /// Devices waiting.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Readings replaced by newer ones before they were forwarded, ever.
    pub fn superseded(&self) -> u64 {
        self.superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_reading_per_device_wins_and_superseded_ones_are_counted() {
        let mut c = Coalescer::default();
        assert!(c.offer(&"a", true));
        assert!(c.offer(&"b", false));
        assert!(!c.offer(&"a", false), "RSSI merges into the waiting slot");
        assert_eq!(c.superseded(), 0);
        assert!(!c.offer(&"a", true));
        assert!(!c.offer(&"a", true));
        assert_eq!(c.superseded(), 2, "two readings of a replaced");
        assert!(!c.offer(&"b", true), "b's RSSI-only slot takes a reading");
        assert_eq!(c.superseded(), 2);
        assert_eq!(c.len(), 2, "each device waits once");
        assert_eq!(c.take(), Some("a"));
        assert!(c.offer(&"a", true), "a taken: waits again, at the back");
        assert_eq!(c.take(), Some("b"));
        assert_eq!(c.take(), Some("a"));
        assert_eq!(c.take(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_devices_not_by_arrivals() {
        let mut c = Coalescer::default();
        for round in 0..1000 {
            for dev in 0..50 {
                c.offer(&dev, true);
            }
            if round % 10 == 0 {
                c.take();
            }
        }
        assert_eq!(c.len(), 50);
        assert_eq!(c.pending.len(), 50);
        c.forget(&7);
        assert_eq!(c.len(), 49);
        c.clear();
        assert!(c.is_empty());
    }
}
