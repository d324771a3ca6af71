//! The telemetry spool: every message waits here until the upstream acknowledged it.
//!
//! Bounded by bytes; past the bound the oldest messages are dropped and counted.
//! With a directory the spool is an append-only log of segment files plus an ack
//! watermark, so a module restart or an edgeHub outage loses nothing within the bound.
//! Delivery is at-least-once: after a crash, messages acked but not yet recorded in the
//! watermark are sent again.
//!
//! Disk trouble (full, read-only, directory removed) never loses a message that is in
//! memory and never stops telemetry: the spool keeps working from memory, says why in
//! [`SpoolStats::error`], and writes every waiting message that is not on disk to a new
//! segment as soon as a retry ([`Spool::sync`]) succeeds.

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

/// Why the spool directory cannot be written (see [`SpoolStats::error`]); reported as
/// its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskFault {
    /// No space left (ENOSPC) or quota exceeded.
    #[error("The spool disk is full; messages are kept in memory only.")]
    Full,
    /// Read-only file system or no permission.
    #[error("The spool directory is read-only; messages are kept in memory only.")]
    ReadOnly,
    /// The directory or a segment file disappeared.
    #[error("The spool directory was removed; messages are kept in memory only.")]
    Missing,
    /// Any other I/O error.
    #[error("The spool directory cannot be written; messages are kept in memory only.")]
    Failed,
}

impl serde::Serialize for DiskFault {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl DiskFault {
    fn of(error: &LogError) -> Self {
        use std::io::ErrorKind as K;
        match error.io_kind() {
            Some(K::StorageFull | K::QuotaExceeded) => Self::Full,
            Some(K::ReadOnlyFilesystem | K::PermissionDenied) => Self::ReadOnly,
            Some(K::NotFound) => Self::Missing,
            _ => Self::Failed,
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
    /// Set while the spool directory cannot be written (messages wait in memory);
    /// `null` once it works again (so the reported property is cleared).
    pub error: Option<DiskFault>,
    /// Failed writes to the spool directory since start.
    pub write_failures: u64,
    /// Messages refused because they were larger than the hub accepts.
    pub oversized: u64,
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
    /// While the disk fails: the first sequence number that may not be on disk.
    unlogged_from: Option<u64>,
    /// The last disk error, in words, for the log.
    last_error: Option<String>,
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
            unlogged_from: None,
            last_error: None,
        };
        if let Some(dir) = &options.dir {
            let (log, recovered) = match SegmentLog::open(dir) {
                Ok(opened) => opened,
                Err(e) => {
                    // Never stay down for the disk: start in memory, keep retrying.
                    tracing::error!(error = %error_text(&e), "Spool directory unusable at start: messages are kept in memory; retrying.");
                    spool.log = Some(SegmentLog::detached(dir));
                    spool.unlogged_from = Some(spool.next_seq);
                    spool.disk_failed(&e);
                    return Ok(spool);
                }
            };
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
    /// A failed disk write is returned as an error, but the message is still queued;
    /// while the disk fails, messages go to memory only (see [`sync`](Self::sync)).
    pub fn push(&mut self, message: Message) -> Result<u64, LogError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Disk trouble must not lose the message: it is kept in memory either way.
        let logged = match &mut self.log {
            Some(log) if self.unlogged_from.is_none() => {
                let unflushed = log.unflushed_from().unwrap_or(seq);
                log.append(seq, &message).inspect_err(|_| {
                    self.unlogged_from = Some(unflushed.min(seq));
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = &logged {
            self.disk_failed(e);
        }
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

    /// Counts a message refused before it entered the spool (too large to send).
    pub fn count_rejected(&mut self) {
        self.stats.oversized += 1;
    }

    fn disk_failed(&mut self, error: &LogError) {
        self.stats.write_failures += 1;
        self.stats.error = Some(DiskFault::of(error));
        self.last_error = Some(error_text(error));
    }

    /// The last disk error in words, while the disk fails.
    pub fn disk_error(&self) -> Option<&str> {
        self.stats.error.and(self.last_error.as_deref())
    }

    /// Hands what was appended to the kernel (`write`, no `fsync`): after this a killed
    /// process loses nothing; a power loss may.
    pub fn flush(&mut self) -> Result<(), LogError> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if self.unlogged_from.is_some() {
            return Ok(());
        }
        let unflushed = log.unflushed_from();
        let result = log.flush();
        if let Err(e) = &result {
            self.unlogged_from = unflushed;
            self.disk_failed(e);
        }
        result
    }

    /// Writes out what is buffered, `fsync`s it when `fsync`, and records the watermark.
    /// While the disk fails, first tries to write every waiting message that is not on
    /// disk to a fresh segment; success ends the failure.
    pub fn sync(&mut self, fsync: bool) -> Result<(), LogError> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if let Some(from) = self.unlogged_from {
            let start = self.entries.partition_point(|e| e.seq < from);
            let records = self
                .entries
                .range(start..)
                .map(|e| (e.seq, e.message.as_ref()));
            if let Err(e) = log.rewrite(records) {
                self.disk_failed(&e);
                return Err(e);
            }
            self.unlogged_from = None;
            self.stats.error = None;
            self.last_error = None;
        }
        let result = log.sync(fsync);
        if let Err(e) = &result {
            self.unlogged_from = Some(self.first_seq().unwrap_or(self.next_seq));
            self.disk_failed(e);
        }
        result
    }
}

/// An error and its sources in one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
