//! `--state-dir`: the emulator keeps its CA and server certificate, identities and twins
//! (desired and reported documents with their versions) across its own restarts, as
//! edgeHub's store does, so a module that trusted the CA and holds a twin version still
//! finds both after a hub restart.
//!
//! Two files, each written atomically (temporary file, then rename): `certs.json` once,
//! and `state.json` whenever the identities or twins changed, checked every 200 ms and
//! on drop. A crash loses at most the last 200 ms of twin changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridge_core::identity::SymmetricKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::certs::SimCerts;
use crate::state::{Hub, Identity, Twin};

/// The state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what we wrote.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertsFile {
    names: Vec<String>,
    ca_pem: String,
    server_chain_pem: String,
    server_key_pem: String,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    device_id: String,
    module_id: Option<String>,
    key: String,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwinFile {
    desired: Value,
    desired_version: u64,
    reported: Value,
    reported_version: u64,
}

/// What `state.json` holds.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    identities: std::collections::BTreeMap<String, IdentityFile>,
    twins: std::collections::BTreeMap<String, TwinFile>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PersistError::Corrupt {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The certificates kept in `dir` when they were made for the same `names`; otherwise
/// new ones from `generate`, saved there.
pub fn certs(
    dir: &Path,
    names: &[String],
    generate: impl FnOnce() -> Result<SimCerts, rcgen::Error>,
) -> Result<Result<SimCerts, rcgen::Error>, PersistError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("certs.json");
    if let Some(kept) = read_json::<CertsFile>(&path)? {
        if kept.names == names {
            info!(dir = %dir.display(), "Certificates kept from the state directory.");
            return Ok(Ok(SimCerts {
                ca_pem: kept.ca_pem,
                server_chain_pem: kept.server_chain_pem,
                server_key_pem: kept.server_key_pem,
            }));
        }
        warn!(dir = %dir.display(), "Server names changed: new certificates (clients must trust the new CA).");
    }
    let fresh = match generate() {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let file = CertsFile {
        names: names.to_vec(),
        ca_pem: fresh.ca_pem.clone(),
        server_chain_pem: fresh.server_chain_pem.clone(),
        server_key_pem: fresh.server_key_pem.clone(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| PersistError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, &text)?;
    Ok(Ok(fresh))
}

/// The hub's identities and twins now.
pub fn snapshot(hub: &Hub) -> Snapshot {
    let state = hub.lock();
    Snapshot {
        identities: state
            .identities
            .iter()
            .map(|(id, i)| {
                (
                    id.clone(),
                    IdentityFile {
                        device_id: i.device_id.clone(),
                        module_id: i.module_id.clone(),
                        key: i.key.to_base64(),
                    },
                )
            })
            .collect(),
        twins: state
            .twins
            .iter()
            .map(|(id, t)| {
                (
                    id.clone(),
                    TwinFile {
                        desired: t.desired.clone(),
                        desired_version: t.desired_version,
                        reported: t.reported.clone(),
                        reported_version: t.reported_version,
                    },
                )
            })
            .collect(),
    }
}

/// The key of `id` if the hub knows it (restored from the state directory).
pub fn kept_key(hub: &Hub, id: &str) -> Option<SymmetricKey> {
    hub.lock().identities.get(id).map(|i| i.key.clone())
}

/// Puts a snapshot's identities and twins into `hub`.
pub fn restore(hub: &Hub, snap: Snapshot) -> Result<(), String> {
    let mut state = hub.lock();
    for (id, i) in snap.identities {
        let key = SymmetricKey::from_base64(&i.key).map_err(|e| format!("identity {id}: {e}"))?;
        state.identities.insert(
            id,
            Identity {
                device_id: i.device_id,
                module_id: i.module_id,
                key,
            },
        );
    }
    for (id, t) in snap.twins {
        state.twins.insert(
            id,
            Twin {
                desired: t.desired,
                desired_version: t.desired_version,
                reported: t.reported,
                reported_version: t.reported_version,
            },
        );
    }
    Ok(())
}

/// Loads `state.json` from `dir` into `hub` (if there is one), then keeps saving it.
/// The task saves a last time when the returned [`Keeper`] is dropped.
pub fn keep(hub: Arc<Hub>, dir: &Path) -> Result<Keeper, PersistError> {
    let path = dir.join("state.json");
    if let Some(snap) = read_json::<Snapshot>(&path)? {
        let (ids, twins) = (snap.identities.len(), snap.twins.len());
        restore(&hub, snap).map_err(|message| PersistError::Corrupt {
            path: path.clone(),
            message,
        })?;
        info!(
            identities = ids,
            twins, "State restored from the state directory."
        );
    }
    let saver = Saver {
        hub,
        path,
        last: None,
    };
    let shared = Arc::new(std::sync::Mutex::new(saver));
    let looping = shared.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            looping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .save_if_changed();
        }
    });
    Ok(Keeper {
        saver: shared,
        task,
    })
}

struct Saver {
    hub: Arc<Hub>,
    path: PathBuf,
    last: Option<Snapshot>,
}

impl Saver {
    fn save_if_changed(&mut self) {
        let now = snapshot(&self.hub);
        if self.last.as_ref() == Some(&now) {
            return;
        }
        match serde_json::to_vec(&now) {
            Ok(bytes) => match write_atomic(&self.path, &bytes) {
                Ok(()) => self.last = Some(now),
                Err(e) => warn!(error = %e, "Could not save the emulator's state."),
            },
            Err(e) => warn!(error = %e, "Could not serialise the emulator's state."),
        }
    }
}

/// Saves the hub's state while it lives, and once more when dropped.
pub struct Keeper {
    saver: Arc<std::sync::Mutex<Saver>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keeper")
    }
}

impl Keeper {
    /// Saves now if anything changed.
    pub fn save(&self) {
        self.saver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save_if_changed();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
        self.save();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::state::HubInfo;
    use serde_json::json;

    fn hub() -> Arc<Hub> {
        Hub::new(HubInfo {
            hub_hostname: "h".into(),
            edge_device_id: "edge-gw".into(),
            token_skew: Duration::ZERO,
            connect_timeout: Duration::from_secs(1),
        })
    }

    #[tokio::test]
    async fn identities_and_twins_with_versions_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            SymmetricKey::from_base64("Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm").unwrap();
        let first = hub();
        let keeper = keep(first.clone(), dir.path()).unwrap();
        first.add_module("edge-gw", "m", key.clone());
        first.set_desired("edge-gw/m", &json!({"a": 1}));
        let v = first.set_desired("edge-gw/m", &json!({"b": {"c": 2}}));
        let before = first.twin("edge-gw/m");
        drop(keeper);
        let second = hub();
        let _keeper = keep(second.clone(), dir.path()).unwrap();
        assert_eq!(second.twin("edge-gw/m"), before);
        assert_eq!(second.twin("edge-gw/m")["desired"]["$version"], json!(v));
        assert_eq!(snapshot(&second), snapshot(&first));
        std::fs::write(dir.path().join("state.json"), b"{trunc").unwrap();
        assert!(matches!(
            keep(hub(), dir.path()),
            Err(PersistError::Corrupt { .. })
        ));
    }

    #[test]
    fn certificates_are_kept_for_the_same_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let a = certs(dir.path(), &names, || crate::certs::generate(&names))
            .unwrap()
            .unwrap();
        let b = certs(dir.path(), &names, || panic!("must not regenerate"))
            .unwrap()
            .unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        let other = vec!["otherhost".to_owned()];
        let c = certs(dir.path(), &other, || crate::certs::generate(&other))
            .unwrap()
            .unwrap();
        assert_ne!(a.ca_pem, c.ca_pem);
    }
}
