//! `edgehub-sim`: run an offline edgeHub. See the README for a walkthrough.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bridge_core::identity::SymmetricKey;
use clap::Parser;
use edgehub_sim::routes::Route;
use edgehub_sim::{Sim, SimOptions};

/// An offline IoT Edge hub: MQTT over TLS with SAS auth, twins, methods, routes, DPS,
/// and the workload API. Prints every upstream message as a JSON line on stdout.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// IoT hub host name used in tokens.
    #[arg(long, default_value = "myhub.azure-devices.net")]
    hub_name: String,
    /// Edge device id.
    #[arg(long, default_value = "edge-gw")]
    edge_device: String,
    /// A module of the edge device: `NAME` (random key) or `NAME=BASE64KEY`. Repeatable.
    #[arg(long = "module")]
    modules: Vec<String>,
    /// A child device: `ID=BASE64KEY`. Repeatable.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// A DPS enrollment group: `IDSCOPE=BASE64GROUPKEY`. Repeatable.
    #[arg(long = "dps-group")]
    dps_groups: Vec<String>,
    /// A route, e.g. `FROM /messages/modules/bridge/outputs/* INTO $upstream`. Repeatable.
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// MQTT over TLS port (0 = any free port).
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Also listen for plain MQTT on this port.
    #[arg(long)]
    plain_port: Option<u16>,
    /// Extra host names for the server certificate.
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// Write the CA certificate here (`ca.crt`), for clients to trust.
    #[arg(long, default_value = ".")]
    cert_dir: PathBuf,
    /// Serve the workload API on this unix socket.
    #[arg(long)]
    workload_socket: Option<PathBuf>,
    /// Serve the control API on this port.
    #[arg(long)]
    control_port: Option<u16>,
    /// Allowed clock skew for token expiry, in seconds.
    #[arg(long, default_value_t = 300)]
    token_skew_secs: u64,
    /// Keep the CA, server certificate, identities and twins in this directory across
    /// restarts (as edgeHub's store does).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

fn key_of(spec: &str) -> Result<(String, SymmetricKey)> {
    match spec.split_once('=') {
        Some((name, key)) => Ok((
            name.to_owned(),
            SymmetricKey::from_base64(key).with_context(|| format!("key of {name}"))?,
        )),
        None => {
            use base64::Engine as _;
            let raw: [u8; 32] = rand::random();
            let key = base64::engine::general_purpose::STANDARD.encode(raw);
            Ok((spec.to_owned(), SymmetricKey::from_base64(&key)?))
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let sim = Sim::start(SimOptions {
        hub_hostname: args.hub_name.clone(),
        edge_device_id: args.edge_device.clone(),
        bind: args.bind,
        tls_port: args.port,
        plain_port: args.plain_port,
        server_names: args.server_names.clone(),
        workload_socket: args.workload_socket.clone(),
        control_port: args.control_port,
        token_skew: Duration::from_secs(args.token_skew_secs),
        connect_timeout: Duration::from_secs(10),
        state_dir: args.state_dir.clone(),
    })
    .await?;
    std::fs::create_dir_all(&args.cert_dir)?;
    let ca_path = args.cert_dir.join("ca.crt");
    std::fs::write(&ca_path, &sim.certs.ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    for spec in &args.modules {
        let (name, mut key) = key_of(spec)?;
        if !spec.contains('=')
            && let Some(kept) =
                edgehub_sim::persist::kept_key(&sim.hub, &format!("{}/{name}", args.edge_device))
        {
            // A generated key must not change across restarts with a state directory.
            key = kept;
        }
        sim.hub.add_module(&args.edge_device, &name, key.clone());
        eprintln!(
            "module {name}: HostName={};DeviceId={};ModuleId={name};SharedAccessKey={};GatewayHostName={}",
            args.hub_name,
            args.edge_device,
            key.to_base64(),
            args.bind
        );
    }
    for spec in &args.devices {
        let (id, key) = key_of(spec)?;
        sim.hub.add_device(&id, key);
    }
    for spec in &args.dps_groups {
        let (scope, key) = key_of(spec)?;
        if !spec.contains('=') {
            bail!("--dps-group needs IDSCOPE=BASE64KEY");
        }
        sim.hub.add_dps_group(&scope, key);
    }
    for route in &args.routes {
        sim.hub.add_route(route.parse::<Route>()?);
    }
    eprintln!(
        "edgehub-sim ready: mqtts={} ca={} control={:?}",
        sim.tls_addr,
        ca_path.display(),
        sim.control_addr
    );
    let mut terminated = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut feed = sim.hub.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminated.recv() => break,
            msg = feed.recv() => match msg {
                Ok(m) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", serde_json::to_string(&m)?)?;
                    out.flush()?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("(skipped {n} messages)"),
                Err(_) => break,
            }
        }
    }
    Ok(())
}
