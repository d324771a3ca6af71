//! Fault injection for end-to-end tests and the recovery script: a TCP relay that can
//! freeze (half-open: sockets stay open, nothing passes), cut (every connection closed,
//! new ones closed at once) and resume; a serial adapter unplugged and plugged back at
//! the same path (the socat pty link removed and recreated); and counters over the
//! emulator's recorded telemetry (gaps, losses, duplicates).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PyModbus;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Bytes pass both ways.
    Open,
    /// Connections stay open (and new ones are accepted) but nothing passes: a peer that
    /// hangs without a reset, or a link that silently drops everything.
    Frozen,
    /// Every connection is closed and new ones are closed at once.
    Cut,
}

/// A loopback TCP relay in front of `target`.
#[derive(Debug)]
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: watch::Sender<RelayState>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, rx) = watch::channel(RelayState::Open);
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == RelayState::Cut {
                    drop(client);
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ignored = client.set_nodelay(true);
                    let _ignored = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, rx.clone()) => {}
                        _ = pump(sr, cw, rx.clone()) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accepted,
            task,
        })
    }

    /// Sets the relay's behaviour.
    pub fn set(&self, state: RelayState) {
        let _ignored = self.state.send(state);
    }

    /// Connections accepted so far (not counting those closed while cut).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.set(RelayState::Cut);
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding bytes while frozen and ending when cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<RelayState>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // While frozen nothing is read, so the peer's writes pile up in kernel buffers
        // exactly as with a hung process.
        loop {
            let now = *state.borrow_and_update();
            match now {
                RelayState::Open => break,
                RelayState::Cut => return,
                RelayState::Frozen => {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // Bytes read just before a freeze are held until the relay opens again.
        loop {
            let now = *state.borrow_and_update();
            match now {
                RelayState::Open => break,
                RelayState::Cut => return,
                RelayState::Frozen => {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl PyModbus {
    /// Unplugs the serial adapter: the socat pty pair is killed, so both links vanish
    /// and the module's open port fails with an I/O error; the server is stopped too.
    pub async fn unplug(&mut self) {
        self.stop().await;
        if let Some(mut socat) = self.socat.take() {
            let _ignored = socat.kill().await;
        }
        for _ in 0..100 {
            if !self.client_tty.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Plugs it back at the same path: a new pty pair, the server restarted on its end,
    /// and only then the module's link renamed into place (atomically), as when an
    /// adapter with a live device behind it is plugged in.
    pub async fn plug(&mut self) -> Result<()> {
        let staging = self.client_tty.with_extension("plugging");
        let socat = tokio::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", self.server_tty.display()))
            .arg(format!("pty,raw,echo=0,link={}", staging.display()))
            .kill_on_drop(true)
            .spawn()
            .context("socat")?;
        for _ in 0..200 {
            if self.server_tty.exists() && staging.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.socat = Some(socat);
        self.restart().await?;
        std::fs::rename(&staging, &self.client_tty).context("moving the pty link into place")?;
        Ok(())
    }

    /// Freezes the server process (SIGSTOP): its socket stays open and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.server.as_ref().and_then(tokio::process::Child::id) {
            let _ignored = std::process::Command::new("kill")
                .arg(sig)
                .arg(pid.to_string())
                .status();
        }
    }
}

/// What a device's telemetry looked like around a fault, from the emulator's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuity {
    /// Telemetry messages of the device.
    pub messages: usize,
    /// Messages with the same creation time as an earlier one (duplicates).
    pub duplicates: usize,
    /// Largest gap between consecutive creation times, ms.
    pub largest_gap_ms: i64,
    /// Creation time (epoch ms) of the first message after `after_ms`, if any.
    pub first_after_ms: Option<i64>,
}

/// Telemetry continuity of `device` in `messages`; `after_ms` is an epoch-ms instant
/// (typically the end of a fault).
pub fn continuity(messages: &[edgehub_sim::Recorded], device: &str, after_ms: i64) -> Continuity {
    let mut times: Vec<i64> = messages
        .iter()
        .filter(|m| {
            m.output.as_deref() == Some("telemetry")
                && m.properties.get("deviceId").map(String::as_str) == Some(device)
        })
        .filter_map(|m| {
            m.properties
                .get("iothub-creation-time-utc")
                .and_then(|t| crate::rfc3339_millis(t))
        })
        .collect();
    let messages = times.len();
    times.sort_unstable();
    let before = times.len();
    times.dedup();
    Continuity {
        messages,
        duplicates: before - times.len(),
        largest_gap_ms: times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
        first_after_ms: times.iter().copied().find(|t| *t >= after_ms),
    }
}

/// Now as epoch milliseconds (wall clock, as creation times are).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Like `Hub::wait_until`, but checks every 250 ms instead of on every message: after a
/// long outage thousands arrive at once, and re-checking (and copying) the whole record
/// on each one costs more than the delivery itself.
pub async fn wait_for_messages(
    hub: &edgehub_sim::Hub,
    timeout: Duration,
    pred: impl Fn(&[edgehub_sim::Recorded]) -> bool,
) -> Result<Vec<edgehub_sim::Recorded>, Vec<edgehub_sim::Recorded>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let messages = hub.messages();
        if pred(&messages) {
            return Ok(messages);
        }
        if std::time::Instant::now() >= deadline {
            return Err(messages);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
