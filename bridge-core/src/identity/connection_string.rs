//! IoT Hub connection strings: `HostName=…;DeviceId=…;[ModuleId=…;]SharedAccessKey=…[;GatewayHostName=…]`.

use super::sas::{KeyError, SymmetricKey};

/// A parsed device or module connection string. `Debug` hides the key.
#[derive(Debug, Clone)]
pub struct ConnectionString {
    /// `HostName`: the IoT hub.
    pub hub_hostname: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `ModuleId`, when this is a module identity.
    pub module_id: Option<String>,
    /// `GatewayHostName`: connect here (edgeHub) instead of the hub.
    pub gateway_hostname: Option<String>,
    /// `SharedAccessKey`, decoded.
    pub key: SymmetricKey,
}

/// A connection string could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionStringError {
    /// A `key=value` part has no `=`.
    #[error("The connection string part '{0}' is not of the form Key=Value.")]
    Malformed(String),
    /// A required part is missing.
    #[error("The connection string has no {0}.")]
    Missing(&'static str),
    /// The key is not usable.
    #[error("The connection string's SharedAccessKey is unusable.")]
    Key(#[source] KeyError),
    /// X.509 or shared-access-policy strings are not supported.
    #[error(
        "The connection string part {0} is not supported; use a device or module SharedAccessKey."
    )]
    Unsupported(String),
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (mut host, mut device, mut module, mut gateway, mut key) =
            (None, None, None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            // Keys end in base64 padding, so split at the first '=' only.
            let (k, v) = part.split_once('=').ok_or_else(|| {
                ConnectionStringError::Malformed(part.split('=').next().unwrap_or("").into())
            })?;
            let v = v.trim().to_owned();
            match k.trim() {
                "HostName" => host = Some(v),
                "DeviceId" => device = Some(v),
                "ModuleId" => module = Some(v),
                "GatewayHostName" => gateway = Some(v),
                "SharedAccessKey" => key = Some(v),
                "SharedAccessKeyName" | "x509" | "SharedAccessSignature" => {
                    return Err(ConnectionStringError::Unsupported(k.trim().into()));
                }
                _ => {}
            }
        }
        let key = key.ok_or(ConnectionStringError::Missing("SharedAccessKey"))?;
        Ok(Self {
            hub_hostname: host.ok_or(ConnectionStringError::Missing("HostName"))?,
            device_id: device.ok_or(ConnectionStringError::Missing("DeviceId"))?,
            module_id: module,
            gateway_hostname: gateway,
            key: SymmetricKey::from_base64(&key).map_err(ConnectionStringError::Key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_module_string_with_gateway() {
        let cs: ConnectionString = "HostName=myhub.azure-devices.net;DeviceId=dev1;ModuleId=mod1;SharedAccessKey=Y2FwdHVyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm;GatewayHostName=127.0.0.1"
            .parse()
            .unwrap();
        assert_eq!(cs.module_id.as_deref(), Some("mod1"));
        assert_eq!(cs.gateway_hostname.as_deref(), Some("127.0.0.1"));
        assert!(!format!("{cs:?}").contains("Y2Fw"));
    }

    #[test]
    fn rejects_bad_strings() {
        assert!(matches!(
            "HostName=h;DeviceId=d".parse::<ConnectionString>(),
            Err(ConnectionStringError::Missing("SharedAccessKey"))
        ));
        assert!(matches!(
            "HostName=h;DeviceId=d;SharedAccessKey=!!".parse::<ConnectionString>(),
            Err(ConnectionStringError::Key(_))
        ));
        assert!(matches!(
            "garbage".parse::<ConnectionString>(),
            Err(ConnectionStringError::Malformed(_))
        ));
        assert!(matches!(
            "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=YQ=="
                .parse::<ConnectionString>(),
            Err(ConnectionStringError::Unsupported(_))
        ));
    }
}
