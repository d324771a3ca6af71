//! The last applied configuration, kept next to the spool, so a module restarted while
//! edgeHub is unreachable polls at once instead of waiting for the twin.
//!
//! The file holds exactly the desired-properties document as it came from the twin,
//! with its `$version`: never keys from mounted files or the workload API, which do not
//! travel in desired properties. It is written atomically (temporary file, fsync,
//! rename) with mode 0600: readable by the module user only. When the hub answers, the
//! twin's full GET replaces it as usual.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::config_source::Candidate;

const FILE: &str = "last-config.json";

/// The kept configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeptConfigError {
    /// File system trouble.
    #[error("The kept configuration {path} could not be {action}.")]
    Io {
        /// Which file.
        path: PathBuf,
        /// `read` or `written`.
        action: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not what this module writes.
    #[error("The kept configuration {0} is damaged; ignoring it.")]
    Damaged(PathBuf),
}

/// The kept configuration of one module, in its spool directory.
#[derive(Debug, Clone)]
pub struct KeptConfig {
    path: PathBuf,
    /// Version last written, to skip rewriting an unchanged document.
    last: Option<(u64, Value)>,
}

impl KeptConfig {
    /// The kept configuration in `spool_dir`.
    pub fn in_dir(spool_dir: &Path) -> Self {
        Self {
            path: spool_dir.join(FILE),
            last: None,
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the kept document; `Ok(None)` when there is none.
    pub fn load(&mut self) -> Result<Option<Candidate>, KeptConfigError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeptConfigError::Io {
                    path: self.path.clone(),
                    action: "read",
                    source,
                });
            }
        };
        let damaged = || KeptConfigError::Damaged(self.path.clone());
        let value: Value = serde_json::from_str(&text).map_err(|_| damaged())?;
        let version = value["version"].as_u64().ok_or_else(damaged)?;
        let desired = value
            .get("desired")
            .filter(|d| d.is_object())
            .ok_or_else(damaged)?;
        self.last = Some((version, desired.clone()));
        Ok(Some(Candidate {
            doc: Ok(desired.clone()),
            version,
        }))
    }

    /// Keeps `candidate`'s document (only documents, never errors). Unchanged documents
    /// are not rewritten.
    pub fn store(&mut self, candidate: &Candidate) -> Result<(), KeptConfigError> {
        let Ok(doc) = &candidate.doc else {
            return Ok(());
        };
        if self
            .last
            .as_ref()
            .is_some_and(|(v, d)| *v == candidate.version && d == doc)
        {
            return Ok(());
        }
        let io = |source| KeptConfigError::Io {
            path: self.path.clone(),
            action: "written",
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let text = json!({"version": candidate.version, "desired": doc}).to_string();
        let _stale = fs::remove_file(&tmp);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        self.last = Some((candidate.version, doc.clone()));
        Ok(())
    }
}

/// At start, under a hub: queues the kept configuration (if any) ahead of the twin's,
/// and returns the store to keep applied ones in. `None` without a spool directory.
pub(crate) fn start(
    spool_dir: Option<&Path>,
    candidates: &tokio::sync::mpsc::Sender<Candidate>,
) -> Option<KeptConfig> {
    let mut kept = KeptConfig::in_dir(spool_dir?);
    match kept.load() {
        Ok(Some(candidate)) => {
            tracing::info!(
                version = candidate.version,
                path = %kept.path().display(),
                "Starting from the kept configuration until the hub's twin answers."
            );
            let _ignored = candidates.try_send(candidate);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %crate::mqtt::error_chain(&e), "No kept configuration to start from.")
        }
    }
    Some(kept)
}

/// After a candidate was offered: keeps it when it is the one now applied.
pub(crate) fn keep<C: PartialEq>(
    kept: Option<&mut KeptConfig>,
    tracker: &super::ConfigTracker<C>,
    candidate: &Candidate,
) {
    if let Some(kept) = kept
        && tracker.applied_version() == Some(candidate.version)
        && let Err(e) = kept.store(candidate)
    {
        tracing::warn!(error = %crate::mqtt::error_chain(&e), "Could not keep the applied configuration for the next start.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_document_and_version_private_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = KeptConfig::in_dir(dir.path());
        assert!(kept.load().unwrap().is_none());
        let doc = json!({"devices": {"m": {"map": "eastron-sdm120"}}});
        kept.store(&Candidate {
            doc: Ok(doc.clone()),
            version: 7,
        })
        .unwrap();
        // Errors are never kept.
        kept.store(&Candidate {
            doc: Err("bad".into()),
            version: 8,
        })
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(kept.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut again = KeptConfig::in_dir(dir.path());
        assert_eq!(
            again.load().unwrap(),
            Some(Candidate {
                doc: Ok(doc),
                version: 7
            })
        );
        fs::write(kept.path(), "[1,2]").unwrap();
        assert!(matches!(again.load(), Err(KeptConfigError::Damaged(_))));
    }
}
