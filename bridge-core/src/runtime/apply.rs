//! Turning desired documents into applied configuration, pure: all-or-nothing, the last
//! good configuration kept on rejection, and the reported properties that say so
//! (a `configStatus` section plus Plug and Play acknowledgements per top-level key).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::config_source::Candidate;
use crate::config::ConfigErrors;
use crate::hub::twin::pnp_ack;

/// Last good configuration and the document it came from.
#[derive(Debug)]
pub struct ConfigTracker<C> {
    good: Option<(Arc<C>, Value, u64)>,
}

impl<C> Default for ConfigTracker<C> {
    fn default() -> Self {
        Self { good: None }
    }
}

/// The outcome of offering a document.
#[derive(Debug)]
pub struct Applied<C> {
    /// The new configuration, when it is valid and differs from the running one.
    pub config: Option<Arc<C>>,
    /// Reported-properties patch describing the outcome.
    pub reported: Value,
    /// The problems, when rejected.
    pub errors: Option<ConfigErrors>,
}

impl<C: PartialEq> ConfigTracker<C> {
    /// The running configuration's version.
    pub fn applied_version(&self) -> Option<u64> {
        self.good.as_ref().map(|(_, _, v)| *v)
    }

    /// Offers a candidate with its parse result.
    pub fn offer(&mut self, candidate: &Candidate, parsed: Result<C, ConfigErrors>) -> Applied<C> {
        let doc = candidate.doc.as_ref().ok().cloned().unwrap_or(Value::Null);
        let keys: Vec<String> = doc
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut reported = Map::new();
        match parsed {
            Ok(config) => {
                let changed = self.good.as_ref().is_none_or(|(c, _, _)| **c != config);
                let config = Arc::new(config);
                for key in &keys {
                    reported.insert(
                        key.clone(),
                        pnp_ack(&doc[key], 200, candidate.version, "applied"),
                    );
                }
                reported.insert(
                    "configStatus".into(),
                    json!({"status": "applied", "desiredVersion": candidate.version, "appliedVersion": candidate.version, "errors": [], "at": crate::time::rfc3339_now()}),
                );
                self.good = Some((config.clone(), doc, candidate.version));
                Applied {
                    config: changed.then_some(config),
                    reported: Value::Object(reported),
                    errors: None,
                }
            }
            Err(errors) => {
                let last_doc = self
                    .good
                    .as_ref()
                    .map(|(_, d, _)| d.clone())
                    .unwrap_or(Value::Null);
                for key in &keys {
                    let mine: Vec<String> = errors
                        .0
                        .iter()
                        .filter(|i| {
                            i.path == *key
                                || i.path.starts_with(&format!("{key}."))
                                || i.path.starts_with(&format!("{key}["))
                        })
                        .map(ToString::to_string)
                        .collect();
                    let reason = if mine.is_empty() {
                        "not applied: another property is invalid".to_owned()
                    } else {
                        mine.join("; ")
                    };
                    let in_use = last_doc.get(key).cloned().unwrap_or(Value::Null);
                    reported.insert(
                        key.clone(),
                        pnp_ack(&in_use, 400, candidate.version, &reason),
                    );
                }
                reported.insert(
                    "configStatus".into(),
                    json!({
                        "status": "rejected",
                        "desiredVersion": candidate.version,
                        "appliedVersion": self.applied_version(),
                        "errors": errors.0,
                        "at": crate::time::rfc3339_now(),
                    }),
                );
                Applied {
                    config: None,
                    reported: Value::Object(reported),
                    errors: Some(errors),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(doc: Value, version: u64) -> Candidate {
        Candidate {
            doc: Ok(doc),
            version,
        }
    }

    #[test]
    fn rejection_keeps_the_last_good_config_and_says_why() {
        let mut t = ConfigTracker::<u32>::default();
        let ok = t.offer(&cand(json!({"interval": 5}), 2), Ok(5));
        assert_eq!(ok.config.as_deref(), Some(&5));
        assert_eq!(
            ok.reported["interval"],
            json!({"value": 5, "ac": 200, "av": 2, "ad": "applied"})
        );
        assert_eq!(ok.reported["configStatus"]["status"], "applied");

        let bad = t.offer(
            &cand(json!({"interval": "x", "other": 1}), 3),
            Err(ConfigErrors::one("interval", "Must be a number.")),
        );
        assert!(bad.config.is_none());
        assert_eq!(bad.reported["interval"]["ac"], 400);
        assert_eq!(
            bad.reported["interval"]["value"], 5,
            "reports the value in use"
        );
        assert_eq!(
            bad.reported["interval"]["ad"],
            "interval: Must be a number."
        );
        assert_eq!(
            bad.reported["other"]["ad"],
            "not applied: another property is invalid"
        );
        assert_eq!(bad.reported["configStatus"]["appliedVersion"], 2);
        assert_eq!(
            bad.reported["configStatus"]["errors"][0]["path"],
            "interval"
        );
        assert_eq!(t.applied_version(), Some(2));

        let same = t.offer(&cand(json!({"interval": 5}), 4), Ok(5));
        assert!(
            same.config.is_none(),
            "an identical config does not restart anything"
        );
        assert_eq!(same.reported["configStatus"]["appliedVersion"], 4);
    }

    #[test]
    fn unreadable_documents_are_rejected_at_the_root() {
        let mut t = ConfigTracker::<u32>::default();
        let c = Candidate {
            doc: Err("x.json is not valid JSON".into()),
            version: 1,
        };
        let out = t.offer(&c, Err(ConfigErrors::one(".", "x.json is not valid JSON")));
        assert_eq!(out.reported["configStatus"]["status"], "rejected");
        assert!(out.reported["configStatus"]["appliedVersion"].is_null());
    }
}
