//! Listeners: MQTT over TLS and plain TCP, the workload API socket, the control API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::certs::{self, SimCerts};
use crate::state::{Hub, HubInfo};
use crate::{control, http, mqtt, workload};

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// IoT hub host name in tokens and usernames.
    pub hub_hostname: String,
    /// The edge device id (modules are `{edge}/{module}`).
    pub edge_device_id: String,
    /// Address to listen on.
    pub bind: IpAddr,
    /// MQTT over TLS port; 0 picks a free one.
    pub tls_port: u16,
    /// Plain MQTT port, if wanted; 0 picks a free one.
    pub plain_port: Option<u16>,
    /// Extra names for the server certificate (localhost and the bind address are always in).
    pub server_names: Vec<String>,
    /// Serve the workload API on this unix socket.
    pub workload_socket: Option<PathBuf>,
    /// Serve the control API on this port (0 = free one).
    pub control_port: Option<u16>,
    /// Clock skew allowed on token expiry.
    pub token_skew: Duration,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Keep the CA and server certificate, identities and twins here across restarts.
    pub state_dir: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            hub_hostname: "myhub.azure-devices.net".into(),
            edge_device_id: "edge-gw".into(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls_port: 0,
            plain_port: None,
            server_names: Vec::new(),
            workload_socket: None,
            control_port: None,
            token_skew: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            state_dir: None,
        }
    }
}

/// A running emulator. Dropping it stops every listener and connection.
#[derive(Debug)]
pub struct Sim {
    /// The hub state and its API.
    pub hub: Arc<Hub>,
    /// TLS listener address.
    pub tls_addr: SocketAddr,
    /// Plain listener address.
    pub plain_addr: Option<SocketAddr>,
    /// Control API address.
    pub control_addr: Option<SocketAddr>,
    /// Certificates (the CA is what clients trust).
    pub certs: SimCerts,
    accepting: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _keeper: Option<crate::persist::Keeper>,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not bind.
    #[error("Could not listen on {what}.")]
    Bind {
        /// Which listener.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("Could not generate certificates.")]
    Certs(#[from] rcgen::Error),
    /// TLS setup failed.
    #[error("TLS setup failed.")]
    Tls(#[from] rustls::Error),
    /// The state directory could not be used.
    #[error("State directory: {0}")]
    State(#[from] crate::persist::PersistError),
}

impl Sim {
    /// Starts listening.
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            options.bind.to_string(),
        ];
        names.extend(options.server_names.iter().cloned());
        names.dedup();
        let certs = match &options.state_dir {
            Some(dir) => crate::persist::certs(dir, &names, || certs::generate(&names))??,
            None => certs::generate(&names)?,
        };
        let hub = Hub::new(HubInfo {
            hub_hostname: options.hub_hostname.clone(),
            edge_device_id: options.edge_device_id.clone(),
            token_skew: options.token_skew,
            connect_timeout: options.connect_timeout,
        });
        let keeper = match &options.state_dir {
            Some(dir) => Some(crate::persist::keep(hub.clone(), dir)?),
            None => None,
        };
        let (accepting, accepting_rx) = watch::channel(true);
        let mut tasks = Vec::new();

        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(certs.server_chain_pem.as_bytes())
                .flatten()
                .collect();
        let key = PrivateKeyDer::from_pem_slice(certs.server_key_pem.as_bytes())
            .map_err(|_| rustls::Error::General("server key".into()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let tls_listener = bind(options.bind, options.tls_port, "MQTT/TLS").await?;
        let tls_addr = local(&tls_listener);
        tasks.push(tokio::spawn(accept_mqtt(
            tls_listener,
            hub.clone(),
            Some(acceptor),
            accepting_rx.clone(),
        )));
        let plain_addr = match options.plain_port {
            Some(port) => {
                let listener = bind(options.bind, port, "MQTT").await?;
                let addr = local(&listener);
                tasks.push(tokio::spawn(accept_mqtt(
                    listener,
                    hub.clone(),
                    None,
                    accepting_rx.clone(),
                )));
                Some(addr)
            }
            None => None,
        };
        if let Some(path) = &options.workload_socket {
            let _ignored = std::fs::remove_file(path);
            let listener =
                tokio::net::UnixListener::bind(path).map_err(|source| SimError::Bind {
                    what: path.display().to_string(),
                    source,
                })?;
            let ca = Arc::new(certs.ca_pem.clone());
            let hub = hub.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (hub, ca) = (hub.clone(), ca.clone());
                    tokio::spawn(http::serve(stream, hub.clone(), move |req| {
                        workload::handle(hub.clone(), ca.clone(), req)
                    }));
                }
            }));
        }
        let control_addr = match options.control_port {
            Some(port) => {
                let listener = bind(options.bind, port, "control API").await?;
                let addr = local(&listener);
                let hub = hub.clone();
                tasks.push(tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let hub = hub.clone();
                        tokio::spawn(http::serve(stream, hub.clone(), move |req| {
                            control::handle(hub.clone(), req)
                        }));
                    }
                }));
                Some(addr)
            }
            None => None,
        };
        info!(%tls_addr, ?plain_addr, ?control_addr, "edgehub-sim listening.");
        Ok(Self {
            hub,
            tls_addr,
            plain_addr,
            control_addr,
            certs,
            accepting,
            tasks,
            _keeper: keeper,
        })
    }

    /// Simulates edgeHub going down: every client is dropped and new connections are
    /// closed at once until [`resume`](Self::resume). State (twins, messages) is kept.
    pub fn pause(&self) {
        let _ignored = self.accepting.send(false);
        self.hub.kick_all();
    }

    /// Accepts connections again.
    pub fn resume(&self) {
        let _ignored = self.accepting.send(true);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.hub.kick_all();
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind(ip: IpAddr, port: u16, what: &str) -> Result<TcpListener, SimError> {
    TcpListener::bind((ip, port))
        .await
        .map_err(|source| SimError::Bind {
            what: format!("{what} {ip}:{port}"),
            source,
        })
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

async fn accept_mqtt(
    listener: TcpListener,
    hub: Arc<Hub>,
    tls: Option<TlsAcceptor>,
    accepting: watch::Receiver<bool>,
) {
    while let Ok((stream, peer)) = listener.accept().await {
        if !*accepting.borrow() {
            drop(stream);
            continue;
        }
        let _ignored = stream.set_nodelay(true);
        let hub = hub.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => mqtt::serve(hub, stream).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed."),
                        Err(_) => debug!(%peer, "TLS handshake timed out."),
                    }
                }
                None => mqtt::serve(hub, stream).await,
            }
        });
    }
}
