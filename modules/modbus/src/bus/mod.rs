//! One task owns each bus (a TCP connection, a serial port, an RTU-over-TCP link) and
//! serialises every request on it; devices hold a cheap [`BusHandle`]. Every request has
//! a timeout. A disconnected bus probes for its device (connect, or open the serial path)
//! at most every 1-2 s, whatever the outage's length; exceptions never reconnect.

pub mod ascii;
pub mod pdu;
pub mod queue;
pub mod rtu;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bridge_core::watchdog::{self, Policy};
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
    /// Requests the bus has finished (its progress epoch, for the watchdog).
    pub done: Arc<AtomicU64>,
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
    let done = Arc::new(AtomicU64::new(0));
    let jobs_done = done.clone();
    // Every request and probe has a timeout, so a unit of work that overruns its limit
    // is a bug the bus cannot heal in place: the watchdog makes the module exit.
    let beat = watchdog::global()
        .heartbeat(format!("bus {}", connection.bus_key("")), Policy::Exit)
        .heartbeat();
    let task = tokio::spawn(async move {
        let mut link: Option<Link> = None;
        let mut probes = Probes::new(probe_cap(&connection));
        let mut last_frame = Instant::now();
        // RTU transports time their own gap from the last byte received.
        let gap = match connection {
            Connection::Tcp { .. } => connection.frame_gap(),
            _ => Duration::ZERO,
        };
        let bus = connection.bus_key("");
        let mut queue = queue::DeadlineQueue::default();
        loop {
            // While disconnected, the bus probes on its own (a connect or an open of the
            // path), so a device that comes back is found within one probe period rather
            // than after a long blind backoff that only a poll could end.
            beat.idle();
            let job = if link.is_none() {
                tokio::select! {
                    biased;
                    job = queue.next(&mut rx, |j: &Job| j.due) => job,
                    _ = tokio::time::sleep_until(probes.due) => {
                        beat.beat(PROBE_TIMEOUT + WORK_MARGIN);
                        link = probe(&connection, sim_addr, &mut probes, &bus).await;
                        continue;
                    }
                }
            } else {
                queue.next(&mut rx, |j: &Job| j.due).await
            };
            let Some(job) = job else { return };
            // A request: the probe, the frame gap, the RTU drain after a timeout (up to
            // 15 s) and the exchange itself.
            beat.beat(PROBE_TIMEOUT + job.timeout * 3 + gap + WORK_MARGIN);
            if job.reply.is_closed() {
                continue;
            }
            if link.is_none() {
                if Instant::now() < probes.due {
                    let _ignored = job
                        .reply
                        .send(Err(BusError::Connect(probes.last_error.clone())));
                    continue;
                }
                link = probe(&connection, sim_addr, &mut probes, &bus).await;
                if link.is_none() {
                    let _ignored = job
                        .reply
                        .send(Err(BusError::Connect(probes.last_error.clone())));
                    continue;
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
                    info!(bus = %bus, "Two silent timeouts: the link is dead; reconnecting.");
                    link = None;
                    probes.lost("no answer on the connection".into());
                }
                Err(BusError::Io(e)) => {
                    debug!(error = %e, "Bus I/O error; reconnecting.");
                    link = None;
                    probes.lost(e.clone());
                }
                _ => {}
            }
            jobs_done.fetch_add(1, Ordering::Relaxed);
            let _ignored = job.reply.send(result);
        }
    });
    // Stopped by aborting the task, so the request loop never polls the token itself.
    tokio::spawn(async move {
        shutdown.cancelled().await;
        task.abort();
    });
    BusHandle { tx, done }
}

/// Longest pause between two reachability probes of a disconnected bus: a TCP connect or
/// the open of a serial path is cheap, so a device that comes back is found within this.
fn probe_cap(connection: &Connection) -> Duration {
    match connection {
        Connection::Rtu { .. } | Connection::Ascii { .. } => Duration::from_secs(1),
        _ => Duration::from_secs(2),
    }
}

/// How long a probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Slack on top of a unit of work's own timeouts before the watchdog calls it stalled
/// (covers the RTU drain after a timeout, up to 15 s, and a busy machine).
const WORK_MARGIN: Duration = Duration::from_secs(20);

/// When the next reachability probe of a disconnected bus is due, pure: the first retry
/// after 200 ms, doubling up to `cap` so a dead device costs one cheap probe per `cap`,
/// and never more than `cap`, so a device that is back waits at most that long.
#[derive(Debug, Clone)]
pub struct Probes {
    /// When the next probe may run.
    pub due: Instant,
    /// Probes failed in a row.
    pub failures: u32,
    /// Why the last one failed (or why the link was lost).
    pub last_error: String,
    cap: Duration,
}

impl Probes {
    /// The first probe is due now.
    pub fn new(cap: Duration) -> Self {
        Self {
            due: Instant::now(),
            failures: 0,
            last_error: "not connected yet".into(),
            cap,
        }
    }

    /// The delay after `failures` failed probes.
    pub fn delay(&self, failures: u32) -> Duration {
        let first = Duration::from_millis(200);
        first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.cap)
    }

    /// A probe failed at `now`.
    pub fn failed(&mut self, now: Instant, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.due = now + self.delay(self.failures);
        self.last_error = error;
    }

    /// A link that worked was lost: probe again at once (the device may have just
    /// restarted), then back off.
    pub fn lost(&mut self, error: String) {
        self.failures = 0;
        self.due = Instant::now();
        self.last_error = error;
    }

    /// Connected.
    pub fn connected(&mut self) {
        self.failures = 0;
    }
}

async fn probe(
    connection: &Connection,
    sim_addr: Option<SocketAddr>,
    probes: &mut Probes,
    bus: &str,
) -> Option<Link> {
    match tokio::time::timeout(PROBE_TIMEOUT, open(connection, sim_addr)).await {
        Ok(Ok(l)) => {
            info!(bus = %bus, after_failed_probes = probes.failures, "Bus connected.");
            probes.connected();
            Some(l)
        }
        Ok(Err(e)) => {
            if probes.failures == 0 {
                info!(bus = %bus, error = %e, "Bus unreachable; probing.");
            }
            probes.failed(Instant::now(), e);
            None
        }
        Err(_) => {
            probes.failed(Instant::now(), "connect timed out".into());
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_but_never_beyond_the_cap() {
        let mut p = Probes::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let delays: Vec<u128> = (1..=8).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 2000, 2000, 2000, 2000]);
        for _ in 0..10_000 {
            p.failed(t0, "refused".into());
        }
        assert_eq!(
            p.due,
            t0 + Duration::from_secs(2),
            "an outage of any length"
        );
        p.lost("closed".into());
        assert!(
            p.due <= Instant::now(),
            "a lost link is probed again at once"
        );
        assert_eq!(p.failures, 0);
        let rtu = Connection::Rtu {
            port: "/dev/ttyUSB0".into(),
            baud_rate: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            frame_gap_ms: None,
        };
        assert_eq!(probe_cap(&rtu), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_device_that_comes_back_is_reconnected_without_a_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let token = CancellationToken::new();
        let bus = spawn_bus(Connection::Simulated {}, Some(addr), token.clone());
        let op = Op::Read(Table::Holding, 0, 1);
        let t = Duration::from_millis(300);
        // Refused for a while: long enough for the probe delay to reach its cap.
        for _ in 0..5 {
            assert!(matches!(
                bus.call(1, op.clone(), t).await,
                Err(BusError::Connect(_))
            ));
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        // No request is made: the bus's own probe connects.
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(accepted.is_ok(), "the bus did not probe within 5 s");
        token.cancel();
    }
}
