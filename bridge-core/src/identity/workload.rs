//! Client of the IoT Edge workload API (`sign`, `trust-bundle`) over its unix socket.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::encode::percent_encode_all;
use super::http::{self, HttpParseError};

/// Where the workload API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadEndpoint {
    /// `unix:///path/to/workload.sock`
    Unix(PathBuf),
    /// `http://host:port`
    Tcp(String),
}

/// A workload API call failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// `IOTEDGE_WORKLOADURI` is neither `unix://` nor `http://`.
    #[error("The workload URI '{0}' is neither unix:// nor http://.")]
    BadUri(String),
    /// The socket could not be reached or the exchange broke off.
    #[error("The workload API at {endpoint} could not be reached.")]
    Io {
        /// Where we tried.
        endpoint: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("The workload API did not answer within {0:?}.")]
    Timeout(Duration),
    /// The answer was not HTTP.
    #[error("The workload API's answer could not be parsed.")]
    Http(#[from] HttpParseError),
    /// The API answered with an error status.
    #[error("The workload API answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its `message`, or the raw body.
        message: String,
    },
    /// The body was not the JSON we expect.
    #[error("The workload API's answer is not the expected JSON.")]
    Json(#[source] serde_json::Error),
}

/// A workload API client bound to one module identity.
#[derive(Debug, Clone)]
pub struct WorkloadClient {
    endpoint: WorkloadEndpoint,
    module_id: String,
    generation_id: String,
    api_version: String,
    timeout: Duration,
}

impl WorkloadEndpoint {
    /// Parses `IOTEDGE_WORKLOADURI`.
    pub fn parse(uri: &str) -> Result<Self, WorkloadError> {
        if let Some(path) = uri.strip_prefix("unix://") {
            Ok(Self::Unix(PathBuf::from(path)))
        } else if let Some(rest) = uri.strip_prefix("http://") {
            Ok(Self::Tcp(rest.trim_end_matches('/').to_owned()))
        } else {
            Err(WorkloadError::BadUri(uri.to_owned()))
        }
    }
}

impl WorkloadClient {
    /// A client for one module (`moduleId`, `generationId` from the IoT Edge environment).
    pub fn new(
        endpoint: WorkloadEndpoint,
        module_id: &str,
        generation_id: &str,
        api_version: &str,
    ) -> Self {
        Self {
            endpoint,
            module_id: module_id.to_owned(),
            generation_id: generation_id.to_owned(),
            api_version: api_version.to_owned(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Changes the per-call timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// HMAC-SHA256 of `data` with the module's primary key, standard base64.
    pub async fn sign(&self, data: &[u8]) -> Result<String, WorkloadError> {
        #[derive(Deserialize)]
        struct SignResponse {
            digest: String,
        }
        let path = format!(
            "/modules/{}/genid/{}/sign?api-version={}",
            percent_encode_all(&self.module_id),
            percent_encode_all(&self.generation_id),
            self.api_version
        );
        let body = serde_json::json!({"keyId": "primary", "algo": "HMACSHA256", "data": STANDARD.encode(data)});
        let raw = self
            .call("POST", &path, Some(body.to_string().as_bytes()))
            .await?;
        let parsed: SignResponse = serde_json::from_slice(&raw).map_err(WorkloadError::Json)?;
        Ok(parsed.digest)
    }

    /// The PEM certificates edgeHub's server certificate chains to.
    pub async fn trust_bundle(&self) -> Result<String, WorkloadError> {
        #[derive(Deserialize)]
        struct TrustBundle {
            certificate: String,
        }
        let path = format!("/trust-bundle?api-version={}", self.api_version);
        let raw = self.call("GET", &path, None).await?;
        let parsed: TrustBundle = serde_json::from_slice(&raw).map_err(WorkloadError::Json)?;
        Ok(parsed.certificate)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, WorkloadError> {
        let request = http::request(method, path, body);
        let exchange = async {
            match &self.endpoint {
                WorkloadEndpoint::Unix(socket) => {
                    let stream = tokio::net::UnixStream::connect(socket).await;
                    exchange(stream, &request).await
                }
                WorkloadEndpoint::Tcp(addr) => {
                    let stream = tokio::net::TcpStream::connect(addr).await;
                    exchange(stream, &request).await
                }
            }
        };
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| WorkloadError::Timeout(self.timeout))?
            .map_err(|source| WorkloadError::Io {
                endpoint: self.endpoint_text(),
                source,
            })?;
        let (status, body) = http::parse_response(&raw)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(WorkloadError::Status { status, message });
        }
        Ok(body)
    }

    fn endpoint_text(&self) -> String {
        match &self.endpoint {
            WorkloadEndpoint::Unix(p) => format!("unix://{}", p.display()),
            WorkloadEndpoint::Tcp(a) => format!("http://{a}"),
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: std::io::Result<S>,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = stream?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    // Stop at EOF or once a Content-Length response is complete (some servers keep the
    // connection open despite `Connection: close`). Responses are small; cap at 1 MiB.
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if http::is_complete(&raw) || raw.len() > 1 << 20 {
            break;
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            WorkloadEndpoint::parse("unix:///var/run/iotedge/workload.sock").unwrap(),
            WorkloadEndpoint::Unix("/var/run/iotedge/workload.sock".into())
        );
        assert_eq!(
            WorkloadEndpoint::parse("http://10.0.0.1:15581/").unwrap(),
            WorkloadEndpoint::Tcp("10.0.0.1:15581".into())
        );
        assert!(matches!(
            WorkloadEndpoint::parse("ftp://x"),
            Err(WorkloadError::BadUri(_))
        ));
    }

    #[tokio::test]
    async fn times_out_and_reports_unreachable_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let client =
            WorkloadClient::new(WorkloadEndpoint::Unix(path.clone()), "m", "g", "2019-01-30");
        assert!(matches!(
            client.sign(b"x").await,
            Err(WorkloadError::Io { .. })
        ));
        // A socket that accepts but never answers.
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let client = client.with_timeout(Duration::from_millis(100));
        assert!(matches!(
            client.trust_bundle().await,
            Err(WorkloadError::Timeout(_))
        ));
    }
}
