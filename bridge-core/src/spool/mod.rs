//! The telemetry spool: every message waits here until the upstream acknowledged it.
//!
//! Bounded by bytes; past the bound the oldest messages are dropped and counted.
//! With a directory the spool is an append-only log of segment files plus an ack
//! watermark, so a module restart or an edgeHub outage loses nothing within the bound.
//! Delivery is at-least-once: after a crash, messages acked but not yet recorded in the
//! watermark are sent again.

mod log;

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use crate::message::Message;
pub use log::{LogError, SegmentLog};

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Directory for the log; `None` keeps the spool in memory only.
    pub dir: Option<PathBuf>,
    /// Largest total size of waiting messages, in bytes.
    pub max_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Counters for health reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoolStats {
    /// Messages waiting (not yet acknowledged).
    pub pending: u64,
    /// Their total size.
    pub pending_bytes: u64,
    /// Messages dropped because the spool was full.
    pub dropped: u64,
    /// Messages recovered from disk at start.
    pub recovered: u64,
    /// Damaged records skipped while recovering.
    pub corrupt: u64,
}

/// The spool. Synchronous and owned by the forwarder task.
#[derive(Debug)]
pub struct Spool {
    entries: VecDeque<Entry>,
    /// Acked sequence numbers above the contiguous watermark (acks may come out of order).
    acked_above: BTreeSet<u64>,
    next_seq: u64,
    bytes: u64,
    max_bytes: u64,
    stats: SpoolStats,
    log: Option<SegmentLog>,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    size: u64,
    message: Arc<Message>,
}

impl Spool {
    /// Opens (and recovers) the spool.
    pub fn open(options: &SpoolOptions) -> Result<Self, LogError> {
        let mut spool = Self {
            entries: VecDeque::new(),
            acked_above: BTreeSet::new(),
            next_seq: 1,
            bytes: 0,
            max_bytes: options.max_bytes.max(1),
            stats: SpoolStats::default(),
            log: None,
        };
        if let Some(dir) = &options.dir {
            let (log, recovered) = SegmentLog::open(dir)?;
            spool.stats.corrupt = recovered.corrupt;
            spool.next_seq = recovered.next_seq;
            for (seq, message) in recovered.messages {
                let size = message.size() as u64;
                spool.bytes += size;
                spool.entries.push_back(Entry {
                    seq,
                    size,
                    message: Arc::new(message),
                });
            }
            spool.stats.recovered = spool.entries.len() as u64;
            spool.log = Some(log);
            spool.enforce_bound();
        }
        Ok(spool)
    }

    /// Appends a message; returns its sequence number. May drop the oldest messages.
    /// A failed disk write is returned as an error, but the message is still queued.
    pub fn push(&mut self, message: Message) -> Result<u64, LogError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Disk trouble must not lose the message: it is kept in memory either way.
        let logged = match &mut self.log {
            Some(log) => log.append(seq, &message),
            None => Ok(()),
        };
        let size = message.size() as u64;
        self.bytes += size;
        self.entries.push_back(Entry {
            seq,
            size,
            message: Arc::new(message),
        });
        self.enforce_bound();
        logged.map(|()| seq)
    }

    fn enforce_bound(&mut self) {
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size;
                self.stats.dropped += 1;
                self.acked_above.remove(&e.seq);
            }
        }
        self.advance_watermark();
    }

    /// Marks `seq` delivered. Unknown or repeated numbers are ignored.
    pub fn ack(&mut self, seq: u64) {
        if self.entries.front().is_some_and(|e| seq >= e.seq) && seq < self.next_seq {
            self.acked_above.insert(seq);
            self.advance_watermark();
        }
    }

    fn advance_watermark(&mut self) {
        while let Some(front) = self.entries.front() {
            if !self.acked_above.remove(&front.seq) {
                break;
            }
            self.bytes -= front.size;
            self.entries.pop_front();
        }
        let first_pending = self.entries.front().map_or(self.next_seq, |e| e.seq);
        if let Some(log) = &mut self.log {
            log.set_watermark(first_pending);
        }
    }

    /// The first waiting message with a sequence number ≥ `from` that is not yet acked.
    pub fn next_from(&self, from: u64) -> Option<(u64, Arc<Message>)> {
        let start = self.entries.partition_point(|e| e.seq < from);
        self.entries
            .range(start..)
            .find(|e| !self.acked_above.contains(&e.seq))
            .map(|e| (e.seq, e.message.clone()))
    }

    /// Sequence number of the oldest waiting message.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            pending: self.entries.len() as u64,
            pending_bytes: self.bytes,
            ..self.stats
        }
    }

    /// Makes everything written so far durable (fsync) and records the watermark.
    pub fn sync(&mut self) -> Result<(), LogError> {
        match &mut self.log {
            Some(log) => log.sync(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
