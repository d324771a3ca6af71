//! The IoT Edge environment (`IOTEDGE_*`), read in exactly one place.

/// Variables edgeAgent gives every module container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeEnvironment {
    /// `IOTEDGE_IOTHUBHOSTNAME`, e.g. `myhub.azure-devices.net`.
    pub hub_hostname: String,
    /// `IOTEDGE_GATEWAYHOSTNAME`: where edgeHub listens.
    pub gateway_hostname: String,
    /// `IOTEDGE_DEVICEID`.
    pub device_id: String,
    /// `IOTEDGE_MODULEID`.
    pub module_id: String,
    /// `IOTEDGE_MODULEGENERATIONID`.
    pub generation_id: String,
    /// `IOTEDGE_WORKLOADURI`, `unix:///…` (or `http://host:port`).
    pub workload_uri: String,
    /// `IOTEDGE_APIVERSION`; edgeAgent copies its own, default `2019-01-30`.
    pub api_version: String,
}

/// The IoT Edge environment is incomplete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A required variable is missing or empty.
    #[error("The IoT Edge variable {0} is not set.")]
    Missing(&'static str),
    /// `IOTEDGE_AUTHSCHEME` names a scheme other than SAS tokens.
    #[error("IOTEDGE_AUTHSCHEME is '{0}'; only 'sasToken' is supported.")]
    AuthScheme(String),
}

impl EdgeEnvironment {
    /// True when the process looks like it runs under IoT Edge (`IOTEDGE_MODULEID` set).
    pub fn present(var: impl Fn(&str) -> Option<String>) -> bool {
        var("IOTEDGE_MODULEID").is_some_and(|v| !v.is_empty())
    }

    /// Reads the environment through `var` (pass `|k| std::env::var(k).ok()`), so tests
    /// never touch the process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &'static str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or(EnvError::Missing(name))
        };
        if let Some(scheme) = var("IOTEDGE_AUTHSCHEME").filter(|s| !s.is_empty())
            && !scheme.eq_ignore_ascii_case("sasToken")
        {
            return Err(EnvError::AuthScheme(scheme));
        }
        Ok(Self {
            hub_hostname: get("IOTEDGE_IOTHUBHOSTNAME")?,
            gateway_hostname: get("IOTEDGE_GATEWAYHOSTNAME")?,
            device_id: get("IOTEDGE_DEVICEID")?,
            module_id: get("IOTEDGE_MODULEID")?,
            generation_id: get("IOTEDGE_MODULEGENERATIONID")?,
            workload_uri: get("IOTEDGE_WORKLOADURI")?,
            api_version: var("IOTEDGE_APIVERSION")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "2019-01-30".into()),
        })
    }

    /// Reads the real process environment.
    pub fn from_process() -> Result<Self, EnvError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        (
            "IOTEDGE_WORKLOADURI",
            "unix:///var/run/iotedge/workload.sock",
        ),
        ("IOTEDGE_DEVICEID", "dev1"),
        ("IOTEDGE_MODULEID", "mod1"),
        ("IOTEDGE_MODULEGENERATIONID", "637000000000000001"),
        ("IOTEDGE_IOTHUBHOSTNAME", "myhub.azure-devices.net"),
        ("IOTEDGE_GATEWAYHOSTNAME", "localhost"),
        ("IOTEDGE_AUTHSCHEME", "sasToken"),
        ("IOTEDGE_APIVERSION", "2022-08-03"),
    ];

    #[test]
    fn reads_the_full_environment() {
        let env = EdgeEnvironment::from_vars(vars(FULL)).unwrap();
        assert_eq!(env.module_id, "mod1");
        assert_eq!(env.api_version, "2022-08-03");
        assert!(EdgeEnvironment::present(vars(FULL)));
    }

    #[test]
    fn names_the_missing_variable() {
        let partial: Vec<_> = FULL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "IOTEDGE_DEVICEID")
            .collect();
        assert_eq!(
            EdgeEnvironment::from_vars(vars(&partial)),
            Err(EnvError::Missing("IOTEDGE_DEVICEID"))
        );
        let mut x509: Vec<_> = FULL.to_vec();
        x509.push(("IOTEDGE_AUTHSCHEME", "x509"));
        let x509: Vec<_> = x509
            .into_iter()
            .filter(|(k, v)| *k != "IOTEDGE_AUTHSCHEME" || *v == "x509")
            .collect();
        assert!(matches!(
            EdgeEnvironment::from_vars(vars(&x509)),
            Err(EnvError::AuthScheme(_))
        ));
        assert!(!EdgeEnvironment::present(vars(&[])));
    }
}
