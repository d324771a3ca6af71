//! The on-disk form of the spool: segment files of checksummed records and a
//! watermark file (first sequence number not yet acknowledged).
//!
//! Record: `0xA5`, seq u64 LE, length u32 LE, CRC-32 of the payload u32 LE, payload
//! (the message as JSON). A torn write at the tail (crash) fails its length or CRC
//! check and is skipped on recovery; so is anything after it in that segment.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::message::Message;

const MAGIC: u8 = 0xA5;
const HEADER: usize = 1 + 8 + 4 + 4;
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Larger than any message edgeHub accepts; a longer length means corruption.
const MAX_RECORD: u32 = 4 * 1024 * 1024;

/// The spool directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// File system trouble.
    #[error("Spool file {path} failed.")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A message could not be serialised.
    #[error("A message could not be serialised for the spool.")]
    Encode(#[from] serde_json::Error),
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Unacknowledged messages, in order.
    pub messages: Vec<(u64, Message)>,
    /// Next sequence number to use.
    pub next_seq: u64,
    /// Damaged records skipped.
    pub corrupt: u64,
}

/// Append-only segment log.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    /// (first seq, path) of every segment, oldest first; the last is being written.
    segments: Vec<(u64, PathBuf)>,
    writer: Option<BufWriter<File>>,
    written: u64,
    watermark: u64,
    watermark_dirty: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.log")
}

impl SegmentLog {
    /// Opens `dir` (created if needed) and reads back what was not acknowledged.
    pub fn open(dir: &Path) -> Result<(Self, Recovered), LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let wm_path = dir.join("watermark");
        let watermark = fs::read_to_string(&wm_path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let seq = name
                    .strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((seq, e.path()))
            })
            .collect();
        segments.sort();
        let mut recovered = Recovered {
            next_seq: watermark,
            ..Recovered::default()
        };
        for (_, path) in &segments {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(path))?;
            read_records(&bytes, watermark, &mut recovered);
        }
        let mut log = Self {
            dir: dir.to_owned(),
            segments,
            writer: None,
            written: 0,
            watermark,
            watermark_dirty: false,
        };
        // Never append to a possibly torn segment: start a fresh one.
        log.remove_acked_segments();
        Ok((log, recovered))
    }

    /// Appends one record (buffered; see [`sync`](Self::sync)).
    pub fn append(&mut self, seq: u64, message: &Message) -> Result<(), LogError> {
        if self.writer.is_none() || self.written >= SEGMENT_BYTES {
            self.roll(seq)?;
        }
        let payload = serde_json::to_vec(message)?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.push(MAGIC);
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let path = self.current_path();
        if let Some(w) = &mut self.writer {
            w.write_all(&record).map_err(io_err(&path))?;
        }
        self.written += record.len() as u64;
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), LogError> {
        if let Some(mut w) = self.writer.take() {
            let path = self.current_path();
            w.flush().map_err(io_err(&path))?;
            w.get_ref().sync_data().map_err(io_err(&path))?;
        }
        let path = self.dir.join(segment_name(first_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.segments.push((first_seq, path));
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        self.written = 0;
        Ok(())
    }

    /// Records that every sequence number below `first_pending` is acknowledged.
    pub fn set_watermark(&mut self, first_pending: u64) {
        if first_pending > self.watermark {
            self.watermark = first_pending;
            self.watermark_dirty = true;
        }
    }

    /// Flushes and fsyncs the current segment, writes the watermark, deletes segments
    /// that hold only acknowledged records.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let path = self.current_path();
        if let Some(w) = &mut self.writer {
            w.flush().map_err(io_err(&path))?;
            w.get_ref().sync_data().map_err(io_err(&path))?;
        }
        if self.watermark_dirty {
            let tmp = self.dir.join("watermark.tmp");
            let target = self.dir.join("watermark");
            fs::write(&tmp, self.watermark.to_string()).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &target).map_err(io_err(&target))?;
            self.watermark_dirty = false;
            self.remove_acked_segments();
        }
        Ok(())
    }

    fn remove_acked_segments(&mut self) {
        // Segment i holds seqs below the first seq of segment i + 1.
        while self.segments.len() > 1 && self.segments[1].0 <= self.watermark {
            let (_, path) = self.segments.remove(0);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "Could not delete an acknowledged spool segment.");
            }
        }
        // A recovered last segment that is fully acknowledged (nothing being written to it).
        if self.writer.is_none()
            && let Some((_, path)) = self.segments.last()
            && self.watermark > 1
        {
            let keep = fs::read(path).map(|b| {
                let mut r = Recovered::default();
                read_records(&b, self.watermark, &mut r);
                !r.messages.is_empty()
            });
            if let Ok(false) = keep
                && fs::remove_file(path).is_ok()
            {
                self.segments.pop();
            }
        }
    }
}

/// Decodes records from one segment, keeping those with seq ≥ `watermark`.
fn read_records(mut bytes: &[u8], watermark: u64, out: &mut Recovered) {
    while !bytes.is_empty() {
        let Some(header) = bytes.get(..HEADER) else {
            out.corrupt += 1;
            return;
        };
        let seq = u64::from_le_bytes(header[1..9].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(header[9..13].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(header[13..17].try_into().unwrap_or_default());
        if header[0] != MAGIC || len > MAX_RECORD {
            out.corrupt += 1;
            return;
        }
        let Some(payload) = bytes.get(HEADER..HEADER + len as usize) else {
            out.corrupt += 1;
            return;
        };
        if crc32fast::hash(payload) != crc {
            out.corrupt += 1;
            return;
        }
        out.next_seq = out.next_seq.max(seq + 1);
        if seq >= watermark {
            match serde_json::from_slice::<Message>(payload) {
                Ok(m) => out.messages.push((seq, m)),
                Err(_) => out.corrupt += 1,
            }
        }
        bytes = &bytes[HEADER + len as usize..];
    }
}
