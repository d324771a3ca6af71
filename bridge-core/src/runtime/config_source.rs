//! Where desired-property documents come from: the module twin, a file (polled for
//! changes), or the built-in demo. Each yields `(document, version)`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::hub::Desired;

/// A document to validate, with a version for acknowledgements.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Desired properties (no `$` keys), or why none could be read.
    pub doc: Result<Value, String>,
    /// Twin `$version`, or a counter for files.
    pub version: u64,
}

/// Forwards twin desired documents.
pub(crate) fn from_twin(
    mut desired: watch::Receiver<Option<Desired>>,
    tx: mpsc::Sender<Candidate>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let current = desired.borrow_and_update().clone();
            if let Some(d) = current
                && tx
                    .send(Candidate {
                        doc: Ok(d.doc),
                        version: d.version,
                    })
                    .await
                    .is_err()
            {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = desired.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Reads the file now and again whenever its modification time or size changes.
pub(crate) fn from_file(path: PathBuf, tx: mpsc::Sender<Candidate>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut last: Option<(SystemTime, u64)> = None;
        let mut version = 0;
        loop {
            let stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            if stamp != last || last.is_none() {
                last = stamp;
                version += 1;
                if tx
                    .send(Candidate {
                        doc: read_doc(&path),
                        version,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Reads a configuration file as JSON; errors are sentences naming the file.
pub fn read_doc(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Cannot read {}: {e}.", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}.", path.display()))?;
    Ok(crate::hub::twin::strip_metadata(&value))
}
