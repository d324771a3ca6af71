//! One task owns each bus (a TCP connection, a serial port, an RTU-over-TCP link) and
//! serialises every request on it; devices hold a cheap [`BusHandle`]. Every request has
//! a timeout. Connection failures back off exponentially; exceptions never reconnect.

pub mod ascii;
pub mod pdu;
pub mod queue;
pub mod rtu;
pub mod tcp;

use std::net::SocketAddr;
use std::time::Duration;

use bridge_core::backoff::Backoff;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::{Connection, Parity};
use crate::map::Table;
use ascii::AsciiTransport;
use rtu::RtuTransport;
use tcp::TcpTransport;

/// One Modbus operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read `count` registers or bits from `table` at `address`.
    Read(Table, u16, u16),
    /// FC5.
    WriteCoil(u16, bool),
    /// FC6.
    WriteRegister(u16, u16),
    /// FC15.
    WriteCoils(u16, Vec<bool>),
    /// FC16.
    WriteRegisters(u16, Vec<u16>),
    /// FC43/14 read device identification: read code (1 basic, 2 regular) and the first
    /// object id.
    ReadDeviceId(u8, u8),
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Coils / discrete inputs.
    Bits(Vec<bool>),
    /// Registers.
    Registers(Vec<u16>),
    /// A write was confirmed.
    Written,
    /// FC43/14: one response of device identification.
    DeviceId(pdu::DeviceId),
}

/// A request failed. "The device said no" (`Exception`) is kept apart from "could not
/// talk to the device" (everything else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Could not connect or open the port.
    #[error("Cannot connect: {0}")]
    Connect(String),
    /// The connection broke.
    #[error("I/O error: {0}")]
    Io(String),
    /// No answer in time.
    #[error("No response within {0:?}.")]
    Timeout(Duration),
    /// The device answered with a Modbus exception.
    #[error("Modbus exception {0} ({name}).", name = exception_name(*.0))]
    Exception(u8),
    /// The bus task has stopped.
    #[error("The bus has stopped.")]
    Closed,
}

/// Standard exception names.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

struct Job {
    due: Instant,
    unit: u8,
    op: Op,
    timeout: Duration,
    reply: oneshot::Sender<Result<OpResult, BusError>>,
}

/// Cheap handle to a bus task.
#[derive(Debug, Clone)]
pub struct BusHandle {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job(unit {}, {:?})", self.unit, self.op)
    }
}

impl BusHandle {
    /// Runs one operation on the bus.
    pub async fn call(&self, unit: u8, op: Op, timeout: Duration) -> Result<OpResult, BusError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                due: queue::current_due(),
                unit,
                op,
                timeout,
                reply,
            })
            .await
            .map_err(|_| BusError::Closed)?;
        rx.await.map_err(|_| BusError::Closed)?
    }

    /// Completes once the bus task has ended (after its shutdown token was cancelled), so
    /// its port or connection is closed: a serial port is locked while open.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

enum Link {
    Tcp(TcpTransport<TcpStream>),
    Rtu(RtuTransport<Box<dyn Stream>>),
    Ascii(AsciiTransport<Box<dyn Stream>>),
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Starts the task that owns a bus. `address` overrides where a simulated device listens.
pub fn spawn_bus(
    connection: Connection,
    sim_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> BusHandle {
    let (tx, mut rx) = mpsc::channel::<Job>(256);
    let task = tokio::spawn(async move {
        let mut link: Option<Link> = None;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut retry_at = Instant::now();
        let mut last_frame = Instant::now();
        // RTU transports time their own gap from the last byte received.
        let gap = match connection {
            Connection::Tcp { .. } => connection.frame_gap(),
            _ => Duration::ZERO,
        };
        let mut queue = queue::DeadlineQueue::default();
        loop {
            let Some(job) = queue.next(&mut rx, |j: &Job| j.due).await else {
                return;
            };
            if job.reply.is_closed() {
                continue;
            }
            if link.is_none() {
                if Instant::now() < retry_at {
                    let wait = retry_at - Instant::now();
                    let _ignored = job.reply.send(Err(BusError::Connect(format!(
                        "reconnecting in {} ms",
                        wait.as_millis()
                    ))));
                    continue;
                }
                match tokio::time::timeout(
                    job.timeout.max(Duration::from_secs(1)),
                    open(&connection, sim_addr),
                )
                .await
                {
                    Ok(Ok(l)) => {
                        info!(bus = %connection.bus_key(""), "Bus connected.");
                        backoff.reset();
                        link = Some(l);
                    }
                    Ok(Err(e)) => {
                        retry_at = Instant::now() + backoff.next_delay();
                        let _ignored = job.reply.send(Err(BusError::Connect(e)));
                        continue;
                    }
                    Err(_) => {
                        retry_at = Instant::now() + backoff.next_delay();
                        let _ignored = job
                            .reply
                            .send(Err(BusError::Connect("connect timed out".into())));
                        continue;
                    }
                }
            }
            let since = last_frame.elapsed();
            if !gap.is_zero() && since < gap {
                tokio::time::sleep(gap - since).await;
            }
            let result = match link.as_mut() {
                Some(Link::Tcp(t)) => t.call(job.unit, &job.op, job.timeout).await,
                Some(Link::Rtu(t)) => t.call(job.unit, &job.op, job.timeout).await,
                Some(Link::Ascii(t)) => t.call(job.unit, &job.op, job.timeout).await,
                None => Err(BusError::Closed),
            };
            last_frame = Instant::now();
            match &result {
                // TCP drops late replies by transaction id, so one silent unit id does not
                // cost its neighbours the connection; two silent timeouts in a row with
                // nothing received at all mean the link itself is dead.
                Err(BusError::Timeout(_)) if matches!(&link, Some(Link::Tcp(t)) if t.silent_timeouts >= 2) =>
                {
                    link = None;
                }
                Err(BusError::Io(e)) => {
                    debug!(error = %e, "Bus I/O error; reconnecting on the next request.");
                    link = None;
                }
                _ => {}
            }
            let _ignored = job.reply.send(result);
        }
    });
    // Stopped by aborting the task, so the request loop never polls the token itself.
    tokio::spawn(async move {
        shutdown.cancelled().await;
        task.abort();
    });
    BusHandle { tx }
}

/// Resolves a host name and connects to the first address that answers.
async fn connect_host(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ignored = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

async fn open(connection: &Connection, sim_addr: Option<SocketAddr>) -> Result<Link, String> {
    match connection {
        Connection::Tcp { host, port, .. } => Ok(Link::Tcp(TcpTransport::new(
            connect_host(host, *port).await?,
        ))),
        Connection::Simulated {} => {
            let addr = sim_addr.ok_or("the simulated device is not running")?;
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let _ignored = stream.set_nodelay(true);
            Ok(Link::Tcp(TcpTransport::new(stream)))
        }
        Connection::RtuOverTcp { host, port, .. } => Ok(Link::Rtu(RtuTransport::new(
            Box::new(connect_host(host, *port).await?),
            connection.frame_gap(),
        ))),
        Connection::Rtu {
            port,
            baud_rate,
            parity,
            data_bits,
            stop_bits,
            ..
        }
        | Connection::Ascii {
            port,
            baud_rate,
            parity,
            data_bits,
            stop_bits,
            ..
        } => {
            let builder = tokio_serial::new(port, *baud_rate)
                .parity(match parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(if *data_bits == 7 {
                    tokio_serial::DataBits::Seven
                } else {
                    tokio_serial::DataBits::Eight
                })
                .stop_bits(if *stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let stream =
                tokio_serial::SerialStream::open(&builder).map_err(|e| format!("{port}: {e}"))?;
            Ok(if matches!(connection, Connection::Ascii { .. }) {
                Link::Ascii(AsciiTransport::new(Box::new(stream)))
            } else {
                Link::Rtu(RtuTransport::new(Box::new(stream), connection.frame_gap()))
            })
        }
    }
}
