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
                        doc: within_twin_limit(d.doc),
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

/// How long applying one desired document may take (parse, validate, hand over, keep a
/// copy on disk) before the config follower counts as stalled: it is synchronous work
/// of milliseconds, so only a wedge (a hung disk, a bug) overruns it.
pub(crate) const APPLY_LIMIT: Duration = Duration::from_secs(30);

/// The desired version a test wedged (0: none); see [`wedge_apply_of_version`].
static WEDGE_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Test hook, inert unless a test in the module's own process calls it (not reachable
/// from configuration, the command line or the environment): applying desired version
/// `version` hangs forever, as an apply that never returns would.
#[doc(hidden)]
pub fn wedge_apply_of_version(version: u64) {
    WEDGE_VERSION.store(version, std::sync::atomic::Ordering::Relaxed);
}

/// Hangs when a test wedged the apply of `version`.
pub(crate) async fn applying(version: u64) {
    if version != 0 && WEDGE_VERSION.load(std::sync::atomic::Ordering::Relaxed) == version {
        tracing::warn!(
            version,
            "Test hook: applying this desired version wedges now."
        );
        std::future::pending::<()>().await;
    }
}

/// IoT Hub's limit for the desired-properties section.
pub const MAX_DESIRED_BYTES: usize = 32 * 1024;

/// A desired document larger than IoT Hub allows is refused, not applied: only a
/// misbehaving hub sends one, and echoing it in acknowledgements would break the link.
fn within_twin_limit(doc: Value) -> Result<Value, String> {
    let size = doc.to_string().len();
    if size > MAX_DESIRED_BYTES {
        return Err(format!(
            "The desired properties are {size} bytes; IoT Hub allows at most {MAX_DESIRED_BYTES}. Not applied."
        ));
    }
    Ok(doc)
}

/// Reads a configuration file as JSON; errors are sentences naming the file. A UTF-8
/// byte order mark (some Windows editors write one) is ignored.
pub fn read_doc(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Cannot read {}: {e}.", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("{} is not valid JSON: {e}.", path.display()))?;
    Ok(crate::hub::twin::strip_metadata(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_ignored_and_other_encodings_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let bom = dir.path().join("bom.json");
        std::fs::write(&bom, b"\xEF\xBB\xBF{\"devices\": {}}").unwrap();
        assert_eq!(read_doc(&bom), Ok(serde_json::json!({"devices": {}})));
        let utf16 = dir.path().join("utf16.json");
        std::fs::write(&utf16, b"\xFF\xFE{\x00}\x00").unwrap();
        let e = read_doc(&utf16).unwrap_err();
        assert!(e.contains("utf16.json"), "{e}");
    }

    #[test]
    fn a_desired_document_over_the_twin_limit_is_refused() {
        let big = serde_json::json!({"devices": {"x": "y".repeat(MAX_DESIRED_BYTES)}});
        assert!(
            within_twin_limit(big)
                .unwrap_err()
                .contains("IoT Hub allows at most")
        );
        assert!(within_twin_limit(serde_json::json!({"devices": {}})).is_ok());
    }
}
