//! Who we are to edgeHub and how we prove it: the IoT Edge environment with workload-API
//! signing, or a connection string with a shared access key.

mod connection_string;
pub mod encode;
mod env;
pub(crate) mod http;
pub mod sas;
mod workload;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use connection_string::{ConnectionString, ConnectionStringError};
pub use env::{EdgeEnvironment, EnvError};
pub use http::HttpParseError;
pub use sas::{KeyError, SymmetricKey};
pub use workload::{WorkloadClient, WorkloadEndpoint, WorkloadError};

/// The identity an MQTT connection to edgeHub carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubIdentity {
    /// IoT hub host name (`{hub}.azure-devices.net`); goes into the username and token.
    pub hub_hostname: String,
    /// Device id.
    pub device_id: String,
    /// Module id, for a module identity.
    pub module_id: Option<String>,
    /// Host to connect to (edgeHub's host name, or the hub itself).
    pub connect_host: String,
    /// Port to connect to (8883 for MQTT over TLS).
    pub port: u16,
    /// IoT Plug and Play model id announced in the username.
    pub model_id: Option<String>,
}

impl HubIdentity {
    /// `{device}/{module}` or `{device}`: the MQTT client id edgeHub requires.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{}", self.device_id, m),
            None => self.device_id.clone(),
        }
    }

    /// The token audience, `{hub}/devices/{d}[/modules/{m}]`.
    pub fn resource_uri(&self) -> String {
        sas::resource_uri(
            &self.hub_hostname,
            &self.device_id,
            self.module_id.as_deref(),
        )
    }
}

/// Signs tokens for one identity: the workload API (no key on the box) or a local key.
#[derive(Debug, Clone)]
pub enum Signer {
    /// IoT Edge workload API `sign`.
    Workload(WorkloadClient),
    /// A shared access key held locally.
    Key(SymmetricKey),
}

/// Signing a token failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The workload API failed.
    #[error("The workload API could not sign the token.")]
    Workload(#[from] WorkloadError),
}

impl Signer {
    /// A SAS token for `uri`, valid for `lifetime` from now. Returns the token and its expiry.
    pub async fn token(
        &self,
        uri: &str,
        lifetime: Duration,
    ) -> Result<(String, SystemTime), SignError> {
        let now = SystemTime::now();
        let expiry_at = now + lifetime;
        let expiry = expiry_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let encoded = encode::percent_encode_all(uri);
        let to_sign = sas::string_to_sign(&encoded, expiry);
        let signature = match self {
            Signer::Workload(client) => client.sign(to_sign.as_bytes()).await?,
            Signer::Key(key) => key.sign(to_sign.as_bytes()),
        };
        Ok((sas::token(&encoded, &signature, expiry, None), expiry_at))
    }
}

/// Which certificates to trust for the TLS connection.
#[derive(Debug, Clone)]
pub enum TrustRoots {
    /// PEM text (the workload trust bundle or a CA file).
    Pem(String),
    /// The operating system's roots (direct to IoT Hub).
    System,
}

/// Everything needed to open (and re-open) an authenticated session.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Who.
    pub identity: HubIdentity,
    /// How tokens are signed.
    pub signer: Signer,
    /// What to trust.
    pub trust: TrustRoots,
}

/// The hub credentials could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The IoT Edge environment is incomplete.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The workload API failed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The connection string is unusable.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The CA file could not be read.
    #[error("The CA file {path} could not be read.")]
    CaFile {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl Credentials {
    /// Module credentials from the IoT Edge environment: trust bundle fetched once,
    /// tokens signed by the workload API on every (re)connect.
    pub async fn from_edge_environment(
        env: &EdgeEnvironment,
        port: u16,
    ) -> Result<Self, CredentialsError> {
        let endpoint = WorkloadEndpoint::parse(&env.workload_uri)?;
        let client = WorkloadClient::new(
            endpoint,
            &env.module_id,
            &env.generation_id,
            &env.api_version,
        );
        let bundle = client.trust_bundle().await?;
        Ok(Self {
            identity: HubIdentity {
                hub_hostname: env.hub_hostname.clone(),
                device_id: env.device_id.clone(),
                module_id: Some(env.module_id.clone()),
                connect_host: env.gateway_hostname.clone(),
                port,
                model_id: None,
            },
            signer: Signer::Workload(client),
            trust: TrustRoots::Pem(bundle),
        })
    }

    /// Credentials from a connection string, with an optional CA file to trust
    /// (`EdgeModuleCACertificateFile` convention) instead of the system roots.
    pub fn from_connection_string(
        cs: &ConnectionString,
        ca_file: Option<&str>,
        port: u16,
    ) -> Result<Self, CredentialsError> {
        let trust = match ca_file {
            Some(path) => TrustRoots::Pem(std::fs::read_to_string(path).map_err(|source| {
                CredentialsError::CaFile {
                    path: path.into(),
                    source,
                }
            })?),
            None => TrustRoots::System,
        };
        Ok(Self {
            identity: HubIdentity {
                hub_hostname: cs.hub_hostname.clone(),
                device_id: cs.device_id.clone(),
                module_id: cs.module_id.clone(),
                connect_host: cs
                    .gateway_hostname
                    .clone()
                    .unwrap_or_else(|| cs.hub_hostname.clone()),
                port,
                model_id: None,
            },
            signer: Signer::Key(cs.key.clone()),
            trust,
        })
    }
}
